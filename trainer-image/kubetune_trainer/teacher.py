"""Distillation from a teacher behind an OpenAI-compatible API: the teacher answers the prompts first.

The answers are cached in `{output_dir}/teacher-labels.jsonl` (written atomically when complete),
so a restarted pod trains on exactly the same data and does not pay for the labels twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import httpx

from kubetune.api.finetunejob import TeacherEndpoint

log = logging.getLogger(__name__)

LABELS_FILE = "teacher-labels.jsonl"
ATTEMPTS = 6  # a rate limit (429), a server error (5xx) or a lost connection is retried, with backoff
MAX_WAIT_SECONDS = 60.0


class TeacherError(RuntimeError):
    pass


def prompt_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation to send the teacher: a chat without its last assistant turn, or the prompt."""
    if "messages" in record:
        msgs = list(record["messages"])
        while msgs and msgs[-1].get("role") == "assistant":
            msgs.pop()
        return msgs
    prompt = record.get("prompt")
    if isinstance(prompt, list):
        return list(prompt)
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    raise TeacherError("teacher labelling needs chat, prompt-completion or prompt-only examples")


def ask(
    client: httpx.Client,
    endpoint: TeacherEndpoint,
    messages: list[dict[str, str]],
    max_tokens: int,
    api_key: str | None,
) -> str:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": endpoint.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
    url = endpoint.url.rstrip("/") + "/chat/completions"
    for attempt in range(ATTEMPTS):
        last = attempt == ATTEMPTS - 1
        try:
            resp = client.post(url, json=body, headers=headers)
            if (resp.status_code == 429 or resp.status_code >= 500) and not last:
                time.sleep(_backoff(attempt, resp.headers.get("retry-after")))
                continue
            resp.raise_for_status()
            return resp.json()["choices"][0]["message"]["content"] or ""
        except httpx.TransportError as err:
            if last:
                raise TeacherError(f"spec.distillation.teacher.endpoint {endpoint.url}: {err}") from None
            time.sleep(_backoff(attempt, None))
        except httpx.HTTPStatusError as err:
            raise TeacherError(
                f"spec.distillation.teacher.endpoint {endpoint.url} answered {err.response.status_code}: "
                f"{err.response.text[:300]}"
            ) from None
        except (KeyError, IndexError, ValueError) as err:
            raise TeacherError(
                f"spec.distillation.teacher.endpoint {endpoint.url}: not an OpenAI reply ({err})"
            ) from None
    raise TeacherError(f"spec.distillation.teacher.endpoint {endpoint.url}: no answer")


def _backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait: the server's Retry-After (in seconds) when it sent one, else 1, 2, 4 ... capped."""
    try:
        wait = float(retry_after) if retry_after else 2.0**attempt
    except ValueError:  # an HTTP date: not worth parsing, back off as usual
        wait = 2.0**attempt
    return max(0.0, min(wait, MAX_WAIT_SECONDS))


def label(
    records: list[dict[str, Any]],
    endpoint: TeacherEndpoint,
    out_dir: str | Path,
    *,
    max_tokens: int,
    api_key_env: str | None,
    timeout: float = 120.0,
) -> list[dict[str, Any]]:
    """Chat records whose last turn is the teacher's answer (cached in out_dir)."""
    cache = Path(out_dir) / LABELS_FILE
    if cache.is_file():
        log.info("using the teacher's answers cached in %s", cache)
        return [json.loads(line) for line in cache.read_text().splitlines() if line.strip()]
    api_key = os.environ.get(api_key_env) if api_key_env else None
    out = []
    with httpx.Client(timeout=timeout) as client:
        for i, rec in enumerate(records):
            msgs = prompt_messages(rec)
            answer = ask(client, endpoint, msgs, max_tokens, api_key)
            out.append({"messages": [*msgs, {"role": "assistant", "content": answer}]})
            if (i + 1) % 50 == 0:
                log.info("teacher labelled %d/%d prompts", i + 1, len(records))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    os.replace(tmp, cache)
    return out
