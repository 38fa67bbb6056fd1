"""Prompts as the model saw them in training: the record written at training time, and its use afterwards.

The rules are in `kubetune.data.promptformat`; this module applies them with a tokenizer: what a run
records in each checkpoint's kubetune.json, reading that record back, and turning a prompt (messages
or a raw string) into the text and token ids a model is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubetune.api.checkpoints import read_meta
from kubetune.data import is_conversational
from kubetune.data.methods import CHAT_ONLY_METHODS  # trainers that always see conversations
from kubetune.data.promptformat import CHAT_TEMPLATE, META_KEY, RAW_TEXT, format_type, raw_prompt

Prompt = str | list[dict[str, str]]  # a raw-text prompt, or the messages of a chat prompt

__all__ = ["Prompt", "encode", "read_recorded", "render", "training_record"]


def _special_prefix(tokenizer: Any) -> str:
    """The special tokens the tokenizer puts before a text of its own accord (e.g. a BOS), as text."""
    probe = "kubetune"
    with_special = list(tokenizer(probe)["input_ids"])
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            return tokenizer.decode(with_special[:start]) if start else ""
    return ""


def training_record(method: str, data_format: str, first_record: Mapping[str, Any], tokenizer: Any) -> dict[str, Any]:
    """What kubetune.json records as `prompt_format` for a run: how TRL formatted its prompts.

    Conversational records go through the chat template. String records (TRL's "standard" format) are
    joined as TRL's SFT/DPO trainers join them: `prompt + completion` with no separator, tokenized with
    the tokenizer's special tokens, EOS appended to the completion.
    """
    if method in CHAT_ONLY_METHODS or data_format == "chat" or is_conversational(dict(first_record)):
        return {"type": CHAT_TEMPLATE, "add_generation_prompt": True, "add_special_tokens": False}
    return {
        "type": RAW_TEXT,
        "separator": "",
        "add_special_tokens": True,
        "prefix": _special_prefix(tokenizer),
        "completion_end": tokenizer.eos_token,
    }


def read_recorded(model_dir: str | Path | None) -> dict[str, Any] | None:
    """The `prompt_format` record of a model directory's kubetune.json; None without one (a base model, or a
    checkpoint written before kubetune recorded it)."""
    if model_dir is None:
        return None
    meta = read_meta(Path(model_dir))
    record = meta.get(META_KEY) if meta is not None else None
    return dict(record) if isinstance(record, Mapping) and format_type(record) else None


def render(tokenizer: Any, prompt: Prompt, fmt: str | None) -> str:
    """The prompt text the model is given: raw text as it is; messages through the chat template, or for a
    raw-text model the text of their one user message (kubetune.data.promptformat.RAW_TEXT_CHAT_RULE)."""
    from kubetune_trainer.serve.loading import render_prompt

    if isinstance(prompt, str):
        return prompt
    if fmt == RAW_TEXT:
        return raw_prompt(prompt)
    return render_prompt(tokenizer, prompt)


def adds_special_tokens(tokenizer: Any, prompt: Prompt, fmt: str | None) -> bool:
    """Whether the tokenizer adds its special tokens: yes for raw text (as TRL did in training); not after a
    chat template, which writes them itself; yes for the `Role: text` transcript of template-less tokenizers."""
    if isinstance(prompt, str) or fmt == RAW_TEXT:
        return True
    return not getattr(tokenizer, "chat_template", None)


def encode(tokenizer: Any, prompt: Prompt, fmt: str | None) -> list[int]:
    """Token ids of one prompt, exactly as training tokenized prompts of this format."""
    text = render(tokenizer, prompt, fmt)
    return list(tokenizer(text, add_special_tokens=adds_special_tokens(tokenizer, prompt, fmt))["input_ids"])


def agreed(formats: Sequence[str | None]) -> str | None:
    """The one format all of `formats` share, or None when they differ or none is known."""
    known = {f for f in formats if f}
    return known.pop() if len(known) == 1 else None
