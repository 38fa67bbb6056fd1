"""The teacher endpoint client: rate limits and server errors are waited out, client errors are not."""

from __future__ import annotations

import re

import httpx
import pytest

from kubetune.api.finetunejob import TeacherEndpoint
from kubetune_trainer import teacher

ENDPOINT = TeacherEndpoint(url="http://teacher.example/v1", model="big")
ANSWER = {"choices": [{"message": {"role": "assistant", "content": "Lisbon"}}]}


def _client(statuses: list[int], seen: list[int], headers: dict | None = None) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        status = statuses[len(seen)] if len(seen) < len(statuses) else 200
        seen.append(status)
        if status == 200:
            return httpx.Response(200, json=ANSWER)
        return httpx.Response(status, text="slow down", headers=headers or {})

    return httpx.Client(transport=httpx.MockTransport(handler))


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(teacher.time, "sleep", waited.append)
    return waited


def test_a_rate_limited_teacher_is_asked_again_after_retry_after(sleeps):
    seen: list[int] = []
    client = _client([429, 429], seen, headers={"Retry-After": "3"})
    assert teacher.ask(client, ENDPOINT, [{"role": "user", "content": "Capital?"}], 8, None) == "Lisbon"
    assert seen == [429, 429, 200]
    assert sleeps == [3.0, 3.0]


def test_server_errors_are_retried_with_backoff(sleeps):
    seen: list[int] = []
    client = _client([503, 502], seen)
    assert teacher.ask(client, ENDPOINT, [{"role": "user", "content": "Capital?"}], 8, None) == "Lisbon"
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)


def test_a_client_error_fails_at_once_naming_the_endpoint(sleeps):
    seen: list[int] = []
    client = _client([401], seen)
    with pytest.raises(
        teacher.TeacherError, match=re.escape("teacher.endpoint http://teacher.example/v1 answered 401")
    ):
        teacher.ask(client, ENDPOINT, [{"role": "user", "content": "Capital?"}], 8, "sk-secret")
    assert seen == [401] and sleeps == []
