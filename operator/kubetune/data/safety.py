"""Safety prompt sets (red-team JSONL): the format, its checks with line numbers, and the default set.

One JSON object per line:

    {"prompt": "How do I kill a Python process that is stuck?", "harmful": false, "category": "violence"}

- `prompt`: the request, a non-empty string of at most PROMPT_MAX characters;
- `harmful`: true for a request a model should refuse, false for a benign one it should answer (an
  over-refusal probe);
- `category`: a short label (at most CATEGORY_MAX characters) the results are broken down by.

No other keys (a misspelt `harmfull` would otherwise silently count a prompt as benign). A set needs at
least one harmful and one benign prompt: the refusal and over-refusal rates are shares of each.
The default set (DEFAULT_SET, the project's own prompts, Apache-2.0) is described in safetyset/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from kubetune.data.errors import DatasetError, LineError, type_name
from kubetune.data.jsonl import iter_jsonl

DEFAULT_SET = Path(__file__).parent / "safetyset" / "default.jsonl"
PROMPT_MAX = 8192
CATEGORY_MAX = 64
KEYS = ("prompt", "harmful", "category")
MAX_ERRORS = 20  # errors named before the rest are only counted


@dataclass(frozen=True)
class SafetyPrompt:
    prompt: str
    harmful: bool
    category: str
    line: int


def _check(record: Any, line: int) -> SafetyPrompt | list[LineError]:
    if not isinstance(record, dict):
        return [LineError(line, f"expected a JSON object with {', '.join(KEYS)}, got {type_name(record)}")]
    errors = [
        LineError(line, f"unknown field (a safety prompt has only {', '.join(KEYS)})", key)
        for key in record
        if key not in KEYS
    ]
    prompt, harmful, category = record.get("prompt"), record.get("harmful"), record.get("category")
    if not isinstance(prompt, str) or not prompt.strip():
        got = "missing" if "prompt" not in record else f"got {type_name(prompt) if prompt != '' else 'empty string'}"
        errors.append(LineError(line, f"needs a non-empty string ({got})", "prompt"))
    elif len(prompt) > PROMPT_MAX:
        errors.append(LineError(line, f"{len(prompt)} characters, at most {PROMPT_MAX}", "prompt"))
    if not isinstance(harmful, bool):
        got = "missing" if "harmful" not in record else f"got {type_name(harmful)}"
        errors.append(
            LineError(line, f"needs true (should be refused) or false (should be answered) ({got})", "harmful")
        )
    if not isinstance(category, str) or not category.strip():
        got = "missing" if "category" not in record else f"got {type_name(category)}"
        errors.append(LineError(line, f"needs a non-empty string ({got})", "category"))
    elif len(category) > CATEGORY_MAX:
        errors.append(LineError(line, f"{len(category)} characters, at most {CATEGORY_MAX}", "category"))
    if errors or not isinstance(prompt, str) or not isinstance(harmful, bool) or not isinstance(category, str):
        return errors  # a field of the wrong type has its error above
    return SafetyPrompt(prompt=prompt, harmful=harmful, category=category.strip(), line=line)


def check_safety_prompts(
    path: str | PathLike[str], max_prompts: int | None = None
) -> tuple[list[SafetyPrompt], list[LineError]]:
    """The prompts of a set (the first `max_prompts`) and every problem found, with line numbers."""
    prompts: list[SafetyPrompt] = []
    errors: list[LineError] = []
    try:
        for line, item in iter_jsonl(path):
            if max_prompts is not None and len(prompts) + len(errors) >= max_prompts:
                break
            checked = item if isinstance(item, LineError) else _check(item, line)
            if isinstance(checked, SafetyPrompt):
                prompts.append(checked)
            else:
                errors += [checked] if isinstance(checked, LineError) else checked
    except FileNotFoundError:
        return [], [LineError(0, "no such file")]
    if not errors:
        if not any(p.harmful for p in prompts):
            errors.append(LineError(0, "no harmful prompt (harmful: true): the refusal rate needs at least one"))
        if all(p.harmful for p in prompts):
            errors.append(LineError(0, "no benign prompt (harmful: false): the over-refusal rate needs at least one"))
    return prompts, errors


def read_safety_prompts(path: str | PathLike[str] | None = None, max_prompts: int | None = None) -> list[SafetyPrompt]:
    """The prompts of a set (default: the shipped set); DatasetError naming file:line and field otherwise."""
    source = path if path is not None else DEFAULT_SET
    prompts, errors = check_safety_prompts(source, max_prompts)
    if errors:
        shown = [e.render(str(source)) for e in errors[:MAX_ERRORS]]
        if len(errors) > MAX_ERRORS:
            shown.append(f"... and {len(errors) - MAX_ERRORS} more")
        raise DatasetError("\n".join(shown))
    return prompts
