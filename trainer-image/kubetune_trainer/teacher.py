"""Distillation from a teacher behind an OpenAI-compatible API: the teacher answers the prompts first.

Only the first process of a run asks the teacher, several prompts at a time; each answer is kept on the
PVC as it comes (`teacher-labels.partial.jsonl`), and all of them in `{output_dir}/teacher-labels.jsonl`
(written atomically when complete), so a restarted pod trains on exactly the same data and does not pay
for the labels twice. The other processes wait for that file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import httpx

from kubetune.api.finetunejob import TeacherEndpoint
from kubetune_trainer import chatretry

log = logging.getLogger(__name__)

LABELS_FILE = "teacher-labels.jsonl"
PARTIAL_FILE = "teacher-labels.partial.jsonl"  # answers so far, one line per prompt as it comes
WAIT_FOR_LABELS_SECONDS = 48 * 3600.0  # the other processes wait this long for the first one's labels
POLL_SECONDS = 2.0
ATTEMPTS = chatretry.ATTEMPTS  # a rate limit (429), a server error (5xx) or a lost connection is retried


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
    try:
        resp = chatretry.post(client, url, body, headers, attempts=ATTEMPTS)
        resp.raise_for_status()
        return resp.json()["choices"][0]["message"]["content"] or ""
    except httpx.TransportError as err:
        raise TeacherError(f"spec.distillation.teacher.endpoint {endpoint.url}: {err}") from None
    except httpx.HTTPStatusError as err:
        raise TeacherError(
            f"spec.distillation.teacher.endpoint {endpoint.url} answered {err.response.status_code}: "
            f"{err.response.text[:300]}"
        ) from None
    except (KeyError, IndexError, ValueError) as err:
        raise TeacherError(f"spec.distillation.teacher.endpoint {endpoint.url}: not an OpenAI reply ({err})") from None


def label(
    records: list[dict[str, Any]],
    endpoint: TeacherEndpoint,
    out_dir: str | Path,
    *,
    max_tokens: int,
    api_key_env: str | None,
    timeout: float = 120.0,
    wait_seconds: float = WAIT_FOR_LABELS_SECONDS,
) -> list[dict[str, Any]]:
    """Chat records whose last turn is the teacher's answer, in the order of `records`.

    The first process of a run (RANK 0) asks the teacher, at most `endpoint.maxConcurrentRequests`
    prompts at a time, appending each answer to `teacher-labels.partial.jsonl` as it comes; a restarted
    run reads that back and asks only for the prompts without an answer. When all are answered, the
    labels are written to `teacher-labels.jsonl` (atomically). Every other process waits for that file
    (the PVC is shared by the processes and nodes of a run), so the teacher is asked once per prompt.
    """
    out_dir = Path(out_dir)
    cache = out_dir / LABELS_FILE
    if os.environ.get("RANK", "0") != "0":
        return _wait_for(cache, wait_seconds)
    if cache.is_file():
        log.info("using the teacher's answers cached in %s", cache)
        return _read_jsonl(cache)
    partial = out_dir / PARTIAL_FILE
    prompts = [prompt_messages(rec) for rec in records]
    keys = [_key(p) for p in prompts]
    done = _answered(partial, keys)
    todo = [i for i in range(len(prompts)) if i not in done]
    if done:
        log.info(
            "%d of %d prompts already answered by the teacher (%s); asking for %d",
            len(done),
            len(prompts),
            partial,
            len(todo),
        )
    api_key = os.environ.get(api_key_env) if api_key_env else None
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(endpoint.max_concurrent_requests, len(todo) or 1))
    with (
        httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=workers)) as client,
        partial.open("a", encoding="utf-8") as fh,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="teacher") as pool,
    ):
        futures = {pool.submit(ask, client, endpoint, prompts[i], max_tokens, api_key): i for i in todo}
        try:
            for n, fut in enumerate(as_completed(futures), 1):
                i = futures[fut]
                done[i] = fut.result()
                fh.write(json.dumps({"index": i, "key": keys[i], "answer": done[i]}, ensure_ascii=False) + "\n")
                fh.flush()
                if n % 50 == 0:
                    log.info("teacher labelled %d/%d prompts", len(done), len(prompts))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    out = [{"messages": [*prompts[i], {"role": "assistant", "content": done[i]}]} for i in range(len(prompts))]
    tmp = cache.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    os.replace(tmp, cache)
    partial.unlink(missing_ok=True)
    return out


def _key(messages: list[dict[str, str]]) -> str:
    """A short hash of a prompt: a kept answer is reused only for the same prompt at the same index."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _answered(partial: Path, keys: list[str]) -> dict[int, str]:
    """Answers kept by an earlier, interrupted labelling of the same prompts (a torn last line is skipped)."""
    done: dict[int, str] = {}
    if not partial.is_file():
        return done
    for line in partial.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
            i = int(rec["index"])
            if 0 <= i < len(keys) and rec["key"] == keys[i]:
                done[i] = str(rec["answer"])
        except (ValueError, KeyError, TypeError):
            continue
    return done


def _wait_for(cache: Path, wait_seconds: float) -> list[dict[str, Any]]:
    """The labels the first process writes; the other processes of the run poll for them."""
    deadline = time.monotonic() + wait_seconds
    while not cache.is_file():
        if time.monotonic() > deadline:
            raise TeacherError(f"waited {wait_seconds:.0f}s for the first process's teacher labels at {cache}")
        time.sleep(POLL_SECONDS)
    return _read_jsonl(cache)
