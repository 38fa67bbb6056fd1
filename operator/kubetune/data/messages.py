"""Chat messages in the OpenAI/Azure form: check them and normalise them to what TRL and chat templates take.

Normalised messages have `role` and string `content`; assistant turns keep `tool_calls` (arguments parsed
to objects, as Hugging Face chat templates expect), tool turns keep `tool_call_id`, and `name` is kept.
Text-only content-part lists become one string; per-turn `weight` is dropped (TRL has no per-turn weights);
OpenAI's `developer` role becomes `system`.
"""

from __future__ import annotations

import json
from typing import Any

from kubetune.data.errors import Issues, type_name

ROLES = ("system", "user", "assistant", "tool")
ROLE_LIST = ", ".join(ROLES)
_PLAIN_ROLES = frozenset({"system", "user", "assistant"})  # roles whose plain text turn needs no further check

# Warning kinds (aggregated per file by the report).
W_TOOL_NO_ID = "tool message without tool_call_id although the assistant's tool calls have ids"
W_TOOL_UNKNOWN_ID = "tool message whose tool_call_id matches no earlier tool call"
W_WEIGHT_ZERO = "assistant turn with weight 0: per-turn weights are not supported, every assistant turn is trained on"


def content_text(content: Any, field: str, issues: Issues) -> str | None:
    """The text of a message's content (string or text parts); None when missing or of the wrong type."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for i, part in enumerate(content):
            where = f"{field}[{i}]"
            if isinstance(part, str):
                parts.append(part)
                continue
            if not isinstance(part, dict):
                issues.error(where, f"expected a content part {{type, text}}, got {type_name(part)}")
                continue
            kind = part.get("type", "text")
            if kind != "text":
                issues.error(f"{where}.type", f"content part type {kind!r} is not supported (text only)")
                continue
            text = part.get("text")
            if not isinstance(text, str):
                issues.error(f"{where}.text", f"expected a string, got {type_name(text)}")
                continue
            parts.append(text)
        return "".join(parts)
    issues.error(field, f"expected a string or a list of text parts, got {type_name(content)}")
    return None


def _tool_calls(value: Any, field: str, issues: Issues, ids: set[str]) -> list[dict[str, Any]] | None:
    """Check an assistant turn's tool_calls; returns them normalised (arguments as objects)."""
    if not isinstance(value, list):
        issues.error(field, f"expected a list of tool calls, got {type_name(value)}")
        return None
    if not value:
        return None
    out: list[dict[str, Any]] = []
    for i, call in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(call, dict):
            issues.error(where, f"expected a tool call object, got {type_name(call)}")
            continue
        if call.get("type", "function") != "function":
            issues.error(f"{where}.type", f"unsupported tool call type {call.get('type')!r} (expected 'function')")
            continue
        fn = call.get("function")
        if not isinstance(fn, dict):
            issues.error(f"{where}.function", f"expected an object {{name, arguments}}, got {type_name(fn)}")
            continue
        name = fn.get("name")
        if not isinstance(name, str) or not name.strip():
            issues.error(
                f"{where}.function.name", "missing tool name" if name is None else "expected a non-empty string"
            )
            continue
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError as err:
                issues.error(f"{where}.function.arguments", f"not valid JSON ({err})")
                continue
        if not isinstance(args, dict):
            issues.error(f"{where}.function.arguments", f"expected a JSON object, got {type_name(args)}")
            continue
        norm: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": args}}
        call_id = call.get("id")
        if call_id is not None:
            if not isinstance(call_id, str):
                issues.error(f"{where}.id", f"expected a string, got {type_name(call_id)}")
                continue
            ids.add(call_id)
            norm["id"] = call_id
        out.append(norm)
    return out


def check_messages(  # noqa: PLR0915 - one pass over a conversation: the rules share the roles and index seen so far
    value: Any, field: str, issues: Issues, *, only_role: str | None = None
) -> list[dict[str, Any]] | None:
    """Check a list of chat messages at `field`; returns the normalised list, or None if it is unusable.

    `only_role` restricts every message to one role (e.g. the assistant answers of a preference pair).
    Errors are added to `issues` with field paths like `messages[2].content`.
    """
    if not isinstance(value, list):
        issues.error(field, f"expected a list of messages, got {type_name(value)}")
        return None
    if not value:
        issues.error(field, "no messages")
        return None
    before = len(issues.errors)
    out: list[dict[str, Any]] = []
    issued_ids: set[str] = set()
    any_tool_calls = False
    for i, msg in enumerate(value):
        if type(msg) is dict and len(msg) == 2:  # fast path: {"role": "user", "content": "text"}
            role, content = msg.get("role"), msg.get("content")
            if (
                role in _PLAIN_ROLES
                and type(content) is str
                and content.strip()
                and (not only_role or role == only_role)
            ):
                out.append({"role": role, "content": content})
                continue
        where = f"{field}[{i}]"
        if not isinstance(msg, dict):
            issues.error(where, f"expected a message object {{role, content}}, got {type_name(msg)}")
            continue
        role = msg.get("role")
        if role is None:
            issues.error(f"{where}.role", f"missing role (expected {ROLE_LIST})")
            continue
        if role == "developer":  # OpenAI's newer name for the system turn
            role = "system"
        if role not in ROLES:
            issues.error(f"{where}.role", f"unknown role {role!r} (expected {ROLE_LIST})")
            continue
        if only_role and role != only_role:
            issues.error(f"{where}.role", f"expected role {only_role!r} here, got {role!r}")
            continue
        norm: dict[str, Any] = {"role": role}

        calls = None
        raw_calls = msg.get("tool_calls")
        has_calls = raw_calls is not None and raw_calls != []  # the turn calls tools (even if a call is broken)
        if has_calls:
            if role != "assistant":
                issues.error(f"{where}.tool_calls", f"only assistant messages can have tool_calls (role is {role!r})")
            else:
                calls = _tool_calls(msg["tool_calls"], f"{where}.tool_calls", issues, issued_ids)
                any_tool_calls = any_tool_calls or bool(calls)

        need = " (an assistant turn needs text or tool_calls)" if role == "assistant" else ""
        content = msg.get("content")
        if content is None and not has_calls:
            issues.error(f"{where}.content", ("missing content" if "content" not in msg else "content is null") + need)
        else:
            errors_before = len(issues.errors)
            text = content_text(content, f"{where}.content", issues)
            if not has_calls and len(issues.errors) == errors_before and not (text or "").strip():
                issues.error(f"{where}.content", "empty content" + need)
            norm["content"] = text or ""
        if calls:
            norm["tool_calls"] = calls

        if role == "tool":
            call_id = msg.get("tool_call_id")
            if not any_tool_calls:
                issues.error(where, "a tool message must follow an assistant message with tool_calls")
            elif call_id is None:
                if issued_ids:
                    issues.warn(W_TOOL_NO_ID)
            elif not isinstance(call_id, str):
                issues.error(f"{where}.tool_call_id", f"expected a string, got {type_name(call_id)}")
            else:
                if call_id not in issued_ids:
                    issues.warn(W_TOOL_UNKNOWN_ID)
                norm["tool_call_id"] = call_id

        name = msg.get("name")
        if name is not None:
            if isinstance(name, str):
                norm["name"] = name
            else:
                issues.error(f"{where}.name", f"expected a string, got {type_name(name)}")

        if "weight" in msg:
            weight = msg["weight"]
            if role != "assistant":
                issues.error(f"{where}.weight", "weight applies to assistant messages only")
            elif isinstance(weight, bool) or weight not in (0, 1):
                issues.error(f"{where}.weight", f"weight must be 0 or 1, got {weight!r}")
            elif weight == 0:
                issues.warn(W_WEIGHT_ZERO)
        out.append(norm)
    if len(issues.errors) > before:
        return None
    return out


def check_tools(value: Any, field: str, issues: Issues) -> list[dict[str, Any]] | None:
    """Check the function definitions offered to the model (OpenAI `tools`)."""
    if not isinstance(value, list):
        issues.error(field, f"expected a list of tool definitions, got {type_name(value)}")
        return None
    for i, tool in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(tool, dict):
            issues.error(where, f"expected a tool definition object, got {type_name(tool)}")
            continue
        fn = tool.get("function")
        if not isinstance(fn, dict):
            issues.error(
                f"{where}.function", f"expected an object {{name, description, parameters}}, got {type_name(fn)}"
            )
            continue
        if not isinstance(fn.get("name"), str) or not fn["name"].strip():
            issues.error(f"{where}.function.name", "missing tool name")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            issues.error(f"{where}.function.parameters", f"expected a JSON schema object, got {type_name(params)}")
    return value


def messages_text(messages: list[dict[str, Any]]) -> str:
    """All the text of normalised messages (content and tool-call arguments), for length and token counts."""
    parts: list[str] = []
    for msg in messages:
        if msg.get("content"):
            parts.append(msg["content"])
        for call in msg.get("tool_calls", ()):
            fn = call["function"]
            parts.append(fn["name"] + json.dumps(fn["arguments"], ensure_ascii=False))
    return "\n".join(parts)
