"""One POST to an OpenAI-compatible API, retried the way every kubetune client of such an API retries.

A rate limit (429) or a server error (5xx) is asked again after the server's Retry-After (seconds) or an
exponential backoff (1, 2, 4 ... capped); a lost connection or a timeout likewise. Any other answer is
returned to the caller, who decides what it means (the teacher fails on it; the judge falls back from
structured output on a 400). Used by teacher.py (distillation labels) and judge.py (model graders).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

ATTEMPTS = 6
MAX_WAIT_SECONDS = 60.0

# What a retry was for: reported to `on_retry` so callers can count them.
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
TIMEOUT = "timeout"
CONNECTION = "connection"


def backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait: the server's Retry-After (in seconds) when it sent one, else 1, 2, 4 ... capped."""
    try:
        wait = float(retry_after) if retry_after else 2.0**attempt
    except ValueError:  # an HTTP date: not worth parsing, back off as usual
        wait = 2.0**attempt
    return max(0.0, min(wait, MAX_WAIT_SECONDS))


def post(
    client: httpx.Client,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    attempts: int = ATTEMPTS,
    on_retry: Callable[[str], None] | None = None,
) -> httpx.Response:
    """The first answer that is not a 429/5xx (or the last one); the last transport error is raised."""
    attempts = max(1, attempts)
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            resp = client.post(url, json=body, headers=headers)
        except httpx.TransportError as err:
            if last:
                raise
            if on_retry:
                on_retry(TIMEOUT if isinstance(err, httpx.TimeoutException) else CONNECTION)
            time.sleep(backoff(attempt, None))
            continue
        if (resp.status_code == 429 or resp.status_code >= 500) and not last:
            if on_retry:
                on_retry(RATE_LIMITED if resp.status_code == 429 else SERVER_ERROR)
            time.sleep(backoff(attempt, resp.headers.get("retry-after")))
            continue
        return resp
    raise AssertionError("unreachable")  # pragma: no cover
