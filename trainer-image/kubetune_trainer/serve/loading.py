"""Load a model for inference: a merged model, or a base model plus a LoRA adapter (PEFT).

Shared by `serve` and `evaluate`. URIs (hf://, pvc://, file://, s3://, relative paths) become local
directories through `kubetune_trainer.sources.resolve_model`, the one place that knows the schemes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.runconfig import StorageMap
from kubetune.constants import CHECKPOINT_META
from kubetune.data.promptformat import format_type
from kubetune_trainer.prompting import read_recorded
from kubetune_trainer.sources import ModelSourceError, resolve_model

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")

__all__ = ["InferenceModel", "ModelSourceError", "load_for_inference", "prepare_tokenizer", "render_prompt"]


@dataclass
class InferenceModel:
    model: Any  # transformers PreTrainedModel (PEFT adapters merged)
    tokenizer: Any
    name: str
    device: str
    # How the model was prompted in training (kubetune.data.promptformat); None: no record (a base model,
    # an older checkpoint), prompted through the chat template as before.
    prompt_format: str | None = None


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str | None:
    """The base model recorded in a PEFT adapter's config (`base_model_name_or_path`)."""
    cfg = json.loads((Path(path) / ADAPTER_CONFIG).read_text())
    return cfg.get("base_model_name_or_path")


def _has_tokenizer(path: str | Path) -> bool:
    return any((Path(path) / f).is_file() for f in TOKENIZER_FILES)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_for_inference(
    model_uri: str,
    *,
    base_model_uri: str | None = None,
    storage: StorageMap | None = None,
    device: str | None = None,
    name: str | None = None,
) -> InferenceModel:
    """Load `model_uri` ready for generation (eval mode, left padding, a pad token).

    A directory holding `adapter_config.json` is a LoRA adapter: it is applied to `base_model_uri`
    (or the base its config names) and merged, which makes generation as fast as a merged model.
    A model directory without tokenizer files uses the tokenizer of `base_model_uri`. The prompt format
    recorded in the directory's kubetune.json (a kubetune checkpoint) is `prompt_format`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    path = resolve_model(model_uri, storage)
    tokenizer_path = path
    if is_adapter(path):
        from peft import PeftModel

        base_uri = base_model_uri or adapter_base(path)
        if not base_uri:
            raise ModelSourceError(
                f"{model_uri!r} is a LoRA adapter without a base model: set the target's base_model_uri "
                f"or base_model_name_or_path in {ADAPTER_CONFIG}"
            )
        base_path = resolve_model(base_uri, storage)
        log.info("loading base %s with adapter %s", base_uri, model_uri)
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
        model = PeftModel.from_pretrained(base, path).merge_and_unload()
        if not _has_tokenizer(path):
            tokenizer_path = base_path
    else:
        log.info("loading model %s", model_uri)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        if base_model_uri and not _has_tokenizer(path):  # a checkpoint saved without its tokenizer
            tokenizer_path = resolve_model(base_model_uri, storage)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    prepare_tokenizer(tokenizer)
    model.to(device)  # pyright: ignore[reportArgumentType]  # transformers declares PreTrainedModel.to by functools.wraps(Module.to), which loses the bound self
    model.eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    fmt = format_type(read_recorded(path))
    if fmt:
        log.info("%s was trained on %s prompts (its %s)", model_uri, fmt, CHECKPOINT_META)
    return InferenceModel(model=model, tokenizer=tokenizer, name=name or model_uri, device=device, prompt_format=fmt)


def prepare_tokenizer(tokenizer: Any) -> None:
    """Left padding (batched generation continues every row at its end) and a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """Messages -> the prompt text the model sees: the chat template with the generation prompt.

    Tokenizers without a chat template (plain base models) get a minimal `Role: text` transcript.
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join([*lines, "Assistant:"])
