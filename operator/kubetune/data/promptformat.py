"""How a model's prompts were formatted in training; evaluation and serving prompt it the same way.

Every checkpoint's kubetune.json records `prompt_format` (and `status.checkpoints[].promptFormat` says it):

- `chat-template`: the model was trained on conversations (chat data, prompt-completion or preference
  data whose prompts are message lists, and every distillation and RFT run, which turn string
  prompts into one user message). A prompt is the tokenizer's chat template with the generation
  prompt, as today.
- `raw-text`: the model was trained on plain strings (prompt-completion or preference data whose
  prompts are strings, plain text). TRL's SFT and DPO trainers join prompt and completion with no
  separator (`prompt + completion`), tokenize that with the tokenizer's own special tokens (a BOS
  for tokenizers that add one: the recorded `prefix`) and end the completion with EOS. A prompt is
  the raw string, tokenized the same way (`add_special_tokens=True`); the answer ends at EOS.

A checkpoint without the record (written before kubetune recorded it) is treated as `chat-template`,
which is how every model was prompted before. A model with no record of its own (a base model used
as an Evaluation's baseline) is prompted like the checkpoints it is compared with.

Chat requests to a raw-text model (`/v1/chat/completions` of the built-in server and of vLLM, and an
evaluation of chat-shaped data): a conversation of exactly one user message is prompted as that
message's text, which is exactly the string prompt kubetune turns into that message everywhere; any
other conversation (a system message, several turns) is refused with `RAW_TEXT_CHAT_RULE`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

CHAT_TEMPLATE = "chat-template"
RAW_TEXT = "raw-text"
PROMPT_FORMATS = (CHAT_TEMPLATE, RAW_TEXT)
META_KEY = "prompt_format"  # the key in kubetune.json

RAW_TEXT_CHAT_RULE = (
    "this model was trained on raw text prompts (string prompt-completion data), not on a chat template: "
    "send exactly one user message, whose text is the prompt, or use /v1/completions with the prompt"
)


class RawPromptError(ValueError):
    """A conversation that has no raw-text form (see RAW_TEXT_CHAT_RULE)."""


def format_type(record: Mapping[str, Any] | None) -> str | None:
    """`chat-template`, `raw-text`, or None for a model without a (valid) record."""
    if not isinstance(record, Mapping):
        return None
    kind = record.get("type")
    return kind if kind in PROMPT_FORMATS else None


def of_checkpoint(meta: Mapping[str, Any] | None) -> str:
    """The prompt format of a checkpoint from its kubetune.json; `chat-template` when it has no record."""
    return format_type((meta or {}).get(META_KEY)) or CHAT_TEMPLATE


def raw_prompt(messages: Sequence[Mapping[str, Any]]) -> str:
    """The raw-text prompt of a conversation: the text of its one user message (RAW_TEXT_CHAT_RULE)."""
    if len(messages) != 1 or messages[0].get("role") != "user":
        roles = ", ".join(str(m.get("role")) for m in messages) or "none"
        raise RawPromptError(f"{RAW_TEXT_CHAT_RULE} (got messages with roles: {roles})")
    content = messages[0].get("content")
    if not isinstance(content, str):
        raise RawPromptError(f"{RAW_TEXT_CHAT_RULE} (the user message has no text content)")
    return content


def raw_few_shot(prompt: str, shots: Sequence[tuple[str, str]], system_prompt: str | None = None) -> str:
    """A few-shot prompt in raw text: each solved example as prompt + answer (the training join), a blank
    line between examples, then the prompt; a system prompt, if any, first and followed by a blank line."""
    parts = [*([system_prompt] if system_prompt else []), *(p + a for p, a in shots), prompt]
    return "\n\n".join(parts)


def vllm_chat_template(prefix: str = "") -> str:
    """vLLM's `--chat-template` for a raw-text model: RAW_TEXT_CHAT_RULE in Jinja, on one line.

    vLLM tokenizes a rendered chat prompt without adding special tokens, so the template writes the
    tokenizer's `prefix` (e.g. a BOS) itself, as training had it. `/v1/completions` needs nothing:
    vLLM tokenizes its prompt with the special tokens, exactly as training did.
    """
    message = RAW_TEXT_CHAT_RULE.replace("'", "")
    guard = (
        "{%- if messages | length != 1 or messages[0]['role'] != 'user' -%}"
        f"{{{{ raise_exception('{message}') }}}}"
        "{%- endif -%}"
    )
    head = f"{{% raw %}}{prefix}{{% endraw %}}" if prefix else ""
    return guard + head + "{{ messages[0]['content'] }}"
