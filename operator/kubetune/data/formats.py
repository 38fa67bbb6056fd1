"""The dataset formats: how a line is recognised, what it must contain, and its TRL form.

| format            | a line                                                                   | TRL record                       |
|-------------------|--------------------------------------------------------------------------|----------------------------------|
| chat              | {"messages": [... ending with assistant], "tools"?}                      | {"messages", "tools"?}           |
| prompt-completion | {"prompt": str or messages, "completion": str or messages}               | {"prompt", "completion"}         |
| preference        | OpenAI {"input": {"messages"}, "preferred_output", "non_preferred_output"} | {"prompt", "chosen", "rejected"} |
|                   | TRL {"prompt"?, "chosen", "rejected"} (strings or messages)              |                                  |
| text              | {"text": str}                                                            | {"text"}                         |
| reinforcement     | {"messages": [... ending with user/tool], <reference fields>}            | {"prompt", <reference fields>}   |
|                   | or {"prompt": str or messages, <reference fields>} (TRL GRPO form)       |                                  |

Records whose prompt is a list of messages are "conversational" (TRL's word); the rest "standard". A
record mixing the two (a string prompt with message answers) is made conversational.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetune.data.errors import Issues, type_name
from kubetune.data.messages import check_messages, check_tools, messages_text

AUTO = "auto"
CHAT = "chat"
PROMPT_COMPLETION = "prompt-completion"
PREFERENCE = "preference"
TEXT = "text"
REINFORCEMENT = "reinforcement"
FORMATS: tuple[str, ...] = (AUTO, CHAT, PROMPT_COMPLETION, PREFERENCE, TEXT, REINFORCEMENT)
DATA_FORMATS: tuple[str, ...] = FORMATS[1:]

# Keys that belong to a chat line rather than to a reinforcement line's grader references.
CHAT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
PROMPT_KEYS = frozenset({"prompt", "tools"})
EXPECTED_KEYS = (
    "messages (chat), prompt + completion (prompt-completion), input + preferred_output + non_preferred_output "
    "or prompt + chosen + rejected (preference), text (text), messages or prompt plus reference fields (reinforcement)"
)

# Preference forms, for statistics.
FORM_OPENAI = "openai"
FORM_TRL = "trl"
FORM_TRL_IMPLICIT = "trl-implicit-prompt"

W_IDENTICAL_PAIR = "preference pair whose chosen and rejected answers are identical (it teaches nothing)"


def _last_role(messages: Any) -> Any:
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return messages[-1].get("role")
    return None


def is_prompt_only(obj: Any) -> bool:
    """A line that is only a prompt: {"prompt": ...} (plus tools), or messages that end before the answer."""
    if not isinstance(obj, dict):
        return False
    if "messages" in obj:
        return set(obj) <= CHAT_KEYS and _last_role(obj["messages"]) not in ("assistant", None)
    return "prompt" in obj and set(obj) <= PROMPT_KEYS


def has_answer(record: dict[str, Any]) -> bool:
    """Whether a chat or prompt-completion TRL record carries the answer to learn (prompts_only lines do not)."""
    if "messages" in record:
        return _last_role(record["messages"]) == "assistant"
    return "completion" in record


def detect_record_format(obj: Any, prompts_only: bool = False) -> str | None:
    """The format a single JSON line looks like, from its keys; None when it matches none.

    With `prompts_only` (data whose answers someone else writes: endpoint distillation) a prompt alone
    counts as prompt-completion and messages ending with the user's turn as chat.
    """
    if not isinstance(obj, dict):
        return None
    if prompts_only and "prompt" in obj and set(obj) <= PROMPT_KEYS:
        return PROMPT_COMPLETION
    if "messages" in obj:
        has_references = any(k not in CHAT_KEYS for k in obj)
        if has_references and _last_role(obj["messages"]) != "assistant":
            return REINFORCEMENT
        return CHAT
    if "preferred_output" in obj or "non_preferred_output" in obj or isinstance(obj.get("input"), dict):
        return PREFERENCE
    if "chosen" in obj or "rejected" in obj:
        return PREFERENCE
    if "completion" in obj:
        return PROMPT_COMPLETION
    if "prompt" in obj:
        return REINFORCEMENT if any(k not in PROMPT_KEYS for k in obj) else None
    if "text" in obj:
        return TEXT
    return None


def family(fmt: str | None) -> str | None:
    """chat and reinforcement lines differ only by their last turn and extra keys: one family."""
    return "messages" if fmt in (CHAT, REINFORCEMENT) else fmt


def unknown_format_message(obj: dict[str, Any]) -> str:
    keys = ", ".join(sorted(obj)) or "none"
    if set(obj) <= PROMPT_KEYS and "prompt" in obj:
        return (
            "a prompt alone is not a training example: add a completion (prompt-completion), chosen + rejected "
            "(preference) or reference fields for the graders (reinforcement)"
        )
    return f"cannot tell the format from the keys ({keys}); expected {EXPECTED_KEYS}"


def is_conversational(record: dict[str, Any]) -> bool:
    """True when the TRL record holds lists of messages (TRL's conversational format)."""
    for key in ("messages", "prompt", "chosen", "rejected", "completion"):
        if key in record:
            return isinstance(record[key], list)
    return False


def _require(obj: dict[str, Any], key: str, issues: Issues, hint: str = "") -> bool:
    if key in obj:
        return True
    issues.error(key, f"missing required key {key!r}{hint}")
    return False


def _string(value: Any, field: str, issues: Issues) -> str | None:
    if not isinstance(value, str):
        issues.error(field, f"expected a string or a list of messages, got {type_name(value)}")
        return None
    if not value.strip():
        issues.error(field, "empty text")
        return None
    return value


def _text_or_messages(value: Any, field: str, issues: Issues, only_role: str | None = None) -> str | list | None:
    if isinstance(value, list):
        return check_messages(value, field, issues, only_role=only_role)
    return _string(value, field, issues)


def _check_prompt_end(messages: list[dict[str, Any]], field: str, issues: Issues) -> None:
    """A conversational prompt must end where the model can answer: after a user or tool turn."""
    role = messages[-1]["role"]
    if role == "system":
        issues.error(f"{field}[{len(messages) - 1}].role", "the prompt ends with a system message; add the user's turn")
    if all(m["role"] == "system" for m in messages):
        issues.error(field, "the prompt has no user turn")


def _as_user(value: str | list) -> list:
    return value if isinstance(value, list) else [{"role": "user", "content": value}]


def _as_assistant(value: str | list) -> list:
    return value if isinstance(value, list) else [{"role": "assistant", "content": value}]


def _with_tools(record: dict[str, Any], obj: dict[str, Any], field: str, issues: Issues) -> dict[str, Any]:
    if obj.get("tools") is not None:
        tools = check_tools(obj["tools"], field, issues)
        if tools:
            record["tools"] = tools
    return record


# -- one function per format: check a line, return its TRL record (None when it has errors) --------------


def check_prompt_only(obj: dict[str, Any], issues: Issues) -> dict[str, Any] | None:
    """A chat or prompt-completion line without its answer (prompts_only): the TRL record has no answer."""
    key = "messages" if "messages" in obj else "prompt"
    prompt = _text_or_messages(obj[key], key, issues)
    if isinstance(prompt, list):
        _check_prompt_end(prompt, key, issues)
    if issues.errors or prompt is None:
        return None
    record = _with_tools({key: prompt}, obj, "tools", issues)
    return None if issues.errors else record


def check_chat(obj: dict[str, Any], issues: Issues) -> dict[str, Any] | None:
    if not _require(obj, "messages", issues):
        return None
    messages = check_messages(obj["messages"], "messages", issues)
    if messages is not None:
        last = messages[-1]["role"]
        if last != "assistant":
            issues.error(
                f"messages[{len(messages) - 1}].role",
                f"the last message must be the assistant's answer to learn (found {last!r})",
            )
    record = _with_tools({"messages": messages}, obj, "tools", issues)
    return None if issues.errors else record


def check_prompt_completion(obj: dict[str, Any], issues: Issues) -> dict[str, Any] | None:
    ok = _require(obj, "prompt", issues) & _require(obj, "completion", issues)
    if not ok:
        return None
    prompt = _text_or_messages(obj["prompt"], "prompt", issues)
    completion = _text_or_messages(obj["completion"], "completion", issues)
    if isinstance(prompt, list):
        _check_prompt_end(prompt, "prompt", issues)
    if isinstance(completion, list) and completion[-1]["role"] != "assistant":
        issues.error(
            f"completion[{len(completion) - 1}].role",
            f"the completion must end with the assistant's answer (found {completion[-1]['role']!r})",
        )
    if issues.errors or prompt is None or completion is None:
        return None
    if isinstance(prompt, list) or isinstance(completion, list):
        prompt, completion = _as_user(prompt), _as_assistant(completion)
    record = _with_tools({"prompt": prompt, "completion": completion}, obj, "tools", issues)
    return None if issues.errors else record


def preference_form(obj: dict[str, Any]) -> str:
    if "input" in obj or "preferred_output" in obj or "non_preferred_output" in obj:
        return FORM_OPENAI
    return FORM_TRL if "prompt" in obj else FORM_TRL_IMPLICIT


def _split_implicit(chosen: str | list, rejected: str | list) -> tuple[Any, Any, Any]:
    """The shared beginning of chosen and rejected is the prompt (as TRL's extract_prompt does)."""
    n = min(len(chosen), len(rejected))
    idx = next((i for i in range(n) if chosen[i] != rejected[i]), n)
    if isinstance(chosen, list) and idx == len(chosen) == len(rejected):  # identical: the last turn is the answer
        idx -= 1
    if isinstance(chosen, str) and idx > 0 and chosen[idx - 1] == " ":
        idx -= 1
    return chosen[:idx], chosen[idx:], rejected[idx:]


def check_preference(obj: dict[str, Any], issues: Issues) -> dict[str, Any] | None:
    form = preference_form(obj)
    if form == FORM_OPENAI:
        ok = _require(obj, "input", issues) & _require(obj, "preferred_output", issues)
        ok &= _require(obj, "non_preferred_output", issues)
        if not ok:
            return None
        inp = obj["input"]
        if not isinstance(inp, dict):
            issues.error("input", f"expected an object {{messages, tools?}}, got {type_name(inp)}")
            return None
        if "messages" not in inp:
            issues.error("input.messages", "missing required key 'messages'")
            return None
        prompt = check_messages(inp["messages"], "input.messages", issues)
        if prompt is not None:
            _check_prompt_end(prompt, "input.messages", issues)
        chosen = check_messages(obj["preferred_output"], "preferred_output", issues, only_role="assistant")
        rejected = check_messages(obj["non_preferred_output"], "non_preferred_output", issues, only_role="assistant")
        if issues.errors:
            return None
        record: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        _with_tools(record, inp, "input.tools", issues)
    else:
        ok = _require(obj, "chosen", issues) & _require(obj, "rejected", issues)
        if not ok:
            return None
        chosen = _text_or_messages(obj["chosen"], "chosen", issues)
        rejected = _text_or_messages(obj["rejected"], "rejected", issues)
        if form == FORM_TRL:
            prompt = _text_or_messages(obj["prompt"], "prompt", issues)
            if isinstance(prompt, list):
                _check_prompt_end(prompt, "prompt", issues)
        else:
            if issues.errors or chosen is None or rejected is None:  # None comes with an error
                return None
            if isinstance(chosen, list) != isinstance(rejected, list):
                issues.error("rejected", "chosen and rejected must both be strings or both lists of messages")
                return None
            prompt, chosen, rejected = _split_implicit(chosen, rejected)
            if not prompt:
                issues.error(
                    "chosen",
                    "chosen and rejected share no beginning, so there is no prompt; add a 'prompt' key "
                    "or start both with the same user turn",
                )
                return None
        for key, value in (("chosen", chosen), ("rejected", rejected)):
            if isinstance(value, list) and value and value[-1]["role"] != "assistant":
                issues.error(f"{key}[{len(value) - 1}].role", f"{key} must end with the assistant's answer")
        if issues.errors or prompt is None or chosen is None or rejected is None:  # None comes with an error
            return None
        if any(isinstance(v, list) for v in (prompt, chosen, rejected)):
            prompt, chosen, rejected = _as_user(prompt), _as_assistant(chosen), _as_assistant(rejected)
        record = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        _with_tools(record, obj, "tools", issues)
    if record["chosen"] == record["rejected"]:
        issues.warn(W_IDENTICAL_PAIR)
    return None if issues.errors else record


def check_text(obj: dict[str, Any], issues: Issues) -> dict[str, Any] | None:
    if not _require(obj, "text", issues):
        return None
    value = obj["text"]
    if not isinstance(value, str):
        issues.error("text", f"expected a string, got {type_name(value)}")
        return None
    if not value.strip():
        issues.error("text", "empty text")
        return None
    return {"text": value}


def reference_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """A reinforcement line's grader references: every key but the prompt."""
    prompt_keys = CHAT_KEYS if "messages" in obj else PROMPT_KEYS
    return {k: v for k, v in obj.items() if k not in prompt_keys}


def check_reinforcement(obj: dict[str, Any], issues: Issues) -> dict[str, Any] | None:
    key = "messages" if "messages" in obj or "prompt" not in obj else "prompt"
    if not _require(obj, key, issues, " (the prompt: a list of messages ending with the user's turn)"):
        return None
    if key == "prompt" and not isinstance(obj["prompt"], list):
        prompt: str | list | None = _string(obj["prompt"], "prompt", issues)
    else:
        prompt = check_messages(obj[key], key, issues)
        if prompt is not None:
            last = prompt[-1]["role"]
            if last == "assistant":
                issues.error(
                    f"{key}[{len(prompt) - 1}].role",
                    "a reinforcement prompt ends with the user's turn, the model writes the answer "
                    "(found an assistant message last; for supervised examples use the chat format)",
                )
            else:
                _check_prompt_end(prompt, key, issues)
    refs = reference_fields(obj)
    if not refs:
        issues.error(None, 'no reference field for the graders: add one next to the prompt, e.g. "answer": "..."')
    if issues.errors:
        return None
    record: dict[str, Any] = {"prompt": prompt, **refs}
    if obj.get("tools") is not None:
        _with_tools(record, obj, "tools", issues)
    return None if issues.errors else record


CHECKS: dict[str, Callable[[dict[str, Any], Issues], dict[str, Any] | None]] = {
    CHAT: check_chat,
    PROMPT_COMPLETION: check_prompt_completion,
    PREFERENCE: check_preference,
    TEXT: check_text,
    REINFORCEMENT: check_reinforcement,
}

# The keys of a TRL record that hold text the model reads or learns from.
TEXT_KEYS: dict[str, tuple[str, ...]] = {
    CHAT: ("messages",),
    PROMPT_COMPLETION: ("prompt", "completion"),
    PREFERENCE: ("prompt", "chosen", "rejected"),
    TEXT: ("text",),
    REINFORCEMENT: ("prompt",),
}


def record_text(record: dict[str, Any], fmt: str) -> str:
    """The text of a TRL record (all turns, tool-call arguments), for lengths and token counts."""
    parts = []
    for key in TEXT_KEYS[fmt]:
        value = record.get(key)
        parts.append(value if isinstance(value, str) else messages_text(value or []))
    return "\n".join(parts)


def check_record(obj: Any, fmt: str, issues: Issues, prompts_only: bool = False) -> dict[str, Any] | None:
    """Check one parsed line against `fmt`; the TRL record, or None with the problems in `issues`.

    With `prompts_only`, chat and prompt-completion lines may stop before the answer.
    """
    if not isinstance(obj, dict):
        issues.error(None, f"expected a JSON object, got {type_name(obj)}")
        return None
    if prompts_only and fmt in (CHAT, PROMPT_COMPLETION) and is_prompt_only(obj):
        return check_prompt_only(obj, issues)
    return CHECKS[fmt](obj, issues)


def to_trl_record(obj: Any, fmt: str) -> dict[str, Any]:
    """One line in any accepted format -> the record TRL's trainers take. Raises ValueError when invalid.

    `fmt` may be `auto` (detected from the keys).
    """
    if fmt == AUTO:
        detected = detect_record_format(obj)
        if detected is None:
            raise ValueError(unknown_format_message(obj) if isinstance(obj, dict) else "expected a JSON object")
        fmt = detected
    if fmt not in CHECKS:
        raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    issues = Issues()
    record = check_record(obj, fmt, issues)
    if record is None:
        raise ValueError("; ".join(f"{f}: {m}" if f else m for f, m in issues.errors))
    return record
