"""Load a model for inference: a merged model, or a base model plus a LoRA adapter (PEFT).

Shared by `serve` and `evaluate`. URIs are resolved with the run config's StorageMap: pvc://,
file:// and relative paths are local directories; hf://ORG/NAME[@REVISION] is a Hugging Face
repository (read from the local cache when HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubetune.api.runconfig import StorageMap

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class ModelLoadError(ValueError):
    """A model location that cannot be loaded; the message says which URI and what to change."""


@dataclass(frozen=True)
class ModelLocation:
    """Where `from_pretrained` reads a model: a local directory or a hub repo id (+ revision)."""

    path: str
    revision: str | None = None
    is_local: bool = True


@dataclass
class LoadedModel:
    model: Any  # transformers PreTrainedModel (PEFT adapters merged)
    tokenizer: Any
    name: str
    device: str


def resolve_location(uri: str, storage: StorageMap | None = None) -> ModelLocation:
    """A model URI -> where to load it from. Remote object stores (s3://, http) are not read here."""
    storage = storage or StorageMap()
    local = storage.local_path(uri)
    if local is not None:
        return ModelLocation(path=str(local))
    parsed = urlparse(uri)
    if parsed.scheme == "hf":
        repo = f"{parsed.netloc}{parsed.path}".strip("/")
        repo, _, revision = repo.partition("@")
        return ModelLocation(path=repo, revision=revision or None, is_local=False)
    raise ModelLoadError(
        f"model URI {uri!r}: scheme {parsed.scheme!r} cannot be loaded by the trainer image; "
        "use hf://ORG/NAME, pvc://CLAIM/PATH, file:///PATH or a local path"
    )


def _check_local(loc: ModelLocation, uri: str) -> None:
    if loc.is_local and not Path(loc.path).is_dir():
        raise ModelLoadError(f"model URI {uri!r}: no model directory at {loc.path}")


def is_adapter(loc: ModelLocation) -> bool:
    return loc.is_local and (Path(loc.path) / ADAPTER_CONFIG).is_file()


def adapter_base(loc: ModelLocation) -> str | None:
    """The base model recorded in a PEFT adapter's config (`base_model_name_or_path`)."""
    cfg = json.loads((Path(loc.path) / ADAPTER_CONFIG).read_text())
    return cfg.get("base_model_name_or_path")


def _has_tokenizer(loc: ModelLocation) -> bool:
    return not loc.is_local or any((Path(loc.path) / f).is_file() for f in TOKENIZER_FILES)


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
) -> LoadedModel:
    """Load `model_uri` ready for generation (eval mode, left padding, a pad token).

    A directory holding `adapter_config.json` is a LoRA adapter: it is applied to `base_model_uri`
    (or the base its config names) and merged, which makes generation as fast as a merged model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    loc = resolve_location(model_uri, storage)
    _check_local(loc, model_uri)

    def _load(location: ModelLocation) -> Any:
        return AutoModelForCausalLM.from_pretrained(location.path, revision=location.revision, dtype=dtype)

    tokenizer_loc = loc
    if is_adapter(loc):
        from peft import PeftModel

        base_uri = base_model_uri or adapter_base(loc)
        if not base_uri:
            raise ModelLoadError(
                f"{model_uri!r} is a LoRA adapter without a base model: set the target's base_model_uri "
                f"or base_model_name_or_path in {ADAPTER_CONFIG}"
            )
        base_loc = resolve_location(base_uri, storage)
        _check_local(base_loc, base_uri)
        log.info("loading base %s with adapter %s", base_uri, model_uri)
        model = PeftModel.from_pretrained(_load(base_loc), loc.path).merge_and_unload()
        if not _has_tokenizer(loc):
            tokenizer_loc = base_loc
    else:
        log.info("loading model %s", model_uri)
        model = _load(loc)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_loc.path, revision=tokenizer_loc.revision)
    prepare_tokenizer(tokenizer)
    model.to(device)
    model.eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model=model, tokenizer=tokenizer, name=name or model_uri, device=device)


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
