"""The LLM judge against a stub OpenAI-compatible server on localhost whose answers each test scripts."""

from __future__ import annotations

import threading

import pytest

from judgestub import Reply, chat, judge_stub, user_text
from kubetune_trainer import chatretry, judge
from kubetune_trainer.judge import Judge, JudgeItem

RUBRIC = "Is the response the correct capital city? 10 is perfect."


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(chatretry.time, "sleep", waited.append)
    return waited


def test_structured_output_is_asked_for_and_its_json_is_read():
    with judge_stub(script=[Reply(content='{"reason": "right city", "score": 8}')]) as stub, Judge(stub.url, "j") as j:
        result = j.score(RUBRIC, "Capital of Portugal?", "Lisbon", "Lisbon", range=(0, 10))
    assert result.value == 8.0 and result.ok
    fmt = stub.requests[0]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["properties"]["score"] == {"type": "number", "minimum": 0, "maximum": 10}
    assert "REFERENCE ANSWER:\nLisbon" in user_text(stub.requests[0])


def test_a_server_refusing_structured_output_is_asked_for_a_score_line_from_then_on():
    script = [Reply(status=400, body='{"error": "response_format not supported"}'), Reply(content="Good.\nSCORE: 7")]
    with (
        judge_stub(script=script, default=lambda body: Reply(content="fine\nSCORE: 3")) as stub,
        Judge(stub.url, "j") as j,
    ):
        first = j.score(RUBRIC, "Capital?", "Lisbon")
        second = j.score(RUBRIC, "Capital?", "Porto")
    assert (first.value, second.value) == (7.0, 3.0)
    assert "response_format" in stub.requests[0]
    assert all("response_format" not in r for r in stub.requests[1:]) and len(stub.requests) == 3
    assert "SCORE: <number>" in stub.requests[1]["messages"][0]["content"]
    assert j.counters.structured_output is False


@pytest.mark.parametrize(
    "content",
    [
        "I think it is fine.",  # no verdict at all
        "SCORE: 11",  # outside 0..10
        '{"reason": "x", "score": -1}',  # outside, as JSON
        '{"reason": "x"}',  # JSON without a score
        "SCORE: 7\nThanks!",  # the score line is not the last line
    ],
)
def test_garbage_and_out_of_range_answers_are_counted_parse_failures(content):
    with judge_stub(script=[Reply(content=content)]) as stub, Judge(stub.url, "j") as j:
        result = j.score(RUBRIC, "Capital?", "Lisbon", range=(0, 10))
    assert result.value is None and result.error.startswith("parse")
    assert j.counters.parse_failures == 1 and j.counters.judged == 0


def test_labels_are_read_from_json_or_a_label_line_and_unknown_ones_fail():
    replies = [
        Reply(content='{"reason": "r", "label": "correct"}'),
        Reply(content="x\nLABEL: Wrong"),
        Reply(content="LABEL: maybe"),
    ]
    with judge_stub(script=replies) as stub, Judge(stub.url, "j") as j:
        out = [j.label(RUBRIC, "Capital?", c, labels=["correct", "wrong"]) for c in ("Lisbon", "Porto", "Faro")]
    assert [r.label for r in out] == ["correct", "wrong", None]
    assert out[2].error.startswith("parse") and j.counters.parse_failures == 1
    assert stub.requests[0]["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == [
        "correct",
        "wrong",
    ]


def test_a_rate_limit_is_waited_out_for_its_retry_after_and_counted(sleeps):
    script = [Reply(status=429, headers={"Retry-After": "2"}, body="{}"), Reply(content='{"reason": "", "score": 4}')]
    with judge_stub(script=script) as stub, Judge(stub.url, "j", retries=3) as j:
        result = j.score(RUBRIC, "Capital?", "Lisbon")
    assert result.value == 4.0 and sleeps == [2.0]
    assert j.counters.rate_limited == 1 and j.counters.requests == 2


def test_a_server_error_then_success_scores(sleeps):
    script = [Reply(status=500, body="oops"), Reply(content='{"reason": "", "score": 9}')]
    with judge_stub(script=script) as stub, Judge(stub.url, "j", retries=2) as j:
        assert j.score(RUBRIC, "Capital?", "Lisbon").value == 9.0
    assert j.counters.server_errors == 1 and len(stub.requests) == 2


def test_a_judge_slower_than_the_timeout_is_given_up_and_counted(sleeps):
    slow = judge_stub(default=lambda body: Reply(content='{"reason": "", "score": 5}', delay=1.5))
    with slow as stub, Judge(stub.url, "j", timeout=0.3, retries=1) as j:
        result = j.score(RUBRIC, "Capital?", "Lisbon")
    assert result.value is None and result.error.startswith("timeout")
    assert j.counters.timeouts == 1 and j.counters.timeout_retries == 1 and len(stub.requests) == 2


def test_retries_used_up_on_rate_limits_give_an_error_not_an_exception(sleeps):
    with judge_stub(default=lambda body: Reply(status=429, body="{}")) as stub, Judge(stub.url, "j", retries=2) as j:
        result = j.score(RUBRIC, "Capital?", "Lisbon")
    assert result.value is None and "429" in result.error
    assert j.counters.rate_limited == 2 and j.counters.errors == 1 and len(stub.requests) == 3


def test_score_many_keeps_order_and_never_exceeds_the_concurrency_bound():
    def by_answer(body):
        return Reply(content=f'{{"reason": "", "score": {len(user_text(body)) % 10}}}', delay=0.1)

    items = [JudgeItem("Capital?", "x" * n) for n in range(12)]
    with judge_stub(default=by_answer) as stub, Judge(stub.url, "j", concurrency=3) as j:
        results = j.score_many(RUBRIC, items, range=(0, 10))
    expected = [len(judge.judge_messages(RUBRIC, it, judge.Scale(0, 10), True)[1]["content"]) % 10 for it in items]
    assert [r.value for r in results] == expected
    assert stub.max_in_flight == 3


def test_the_semaphore_bounds_requests_across_threads_calling_one_judge():
    slow = judge_stub(default=lambda body: Reply(content='{"reason": "", "score": 1}', delay=0.1))
    with slow as stub, Judge(stub.url, "j", concurrency=2) as j:
        threads = [
            threading.Thread(target=j.score_many, args=(RUBRIC, [JudgeItem("p", f"{t}-{i}") for i in range(4)]))
            for t in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert stub.max_in_flight == 2 and len(stub.requests) == 12


def test_the_disk_cache_answers_a_second_judge_without_asking(tmp_path):
    with judge_stub() as stub:
        with Judge(stub.url, "j", cache_dir=tmp_path) as first:
            first.score(RUBRIC, "Capital?", "Lisbon", "Lisbon")
        with Judge(stub.url, "j", cache_dir=tmp_path) as second:
            again = second.score(RUBRIC, "Capital?", "Lisbon", "Lisbon")
            other_rubric = second.score(RUBRIC + " Be harsh.", "Capital?", "Lisbon", "Lisbon")
        with Judge(stub.url, "other-model", cache_dir=tmp_path) as third:
            third.score(RUBRIC, "Capital?", "Lisbon", "Lisbon")
    assert again.cached and again.value == 5.0 and second.counters.cache_hits == 1
    assert not other_rubric.cached
    assert len(stub.requests) == 3  # first, the other rubric, the other model; never the repeat


def test_parse_failures_are_not_cached(tmp_path):
    with judge_stub(script=[Reply(content="no idea")]) as stub, Judge(stub.url, "j", cache_dir=tmp_path) as j:
        assert j.score(RUBRIC, "p", "c").value is None
        assert j.score(RUBRIC, "p", "c").value == 5.0
    assert len(stub.requests) == 2


def test_the_api_key_is_sent_as_a_bearer_token_from_the_named_variable(monkeypatch):
    seen = []

    def capture(body):
        return Reply(content='{"reason": "", "score": 1}')

    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    with judge_stub(default=capture) as stub:
        import http.server

        original = http.server.BaseHTTPRequestHandler.parse_request

        def parse(self):
            ok = original(self)
            seen.append(self.headers.get("authorization"))
            return ok

        monkeypatch.setattr(http.server.BaseHTTPRequestHandler, "parse_request", parse)
        with Judge(stub.url, "j", api_key_env="JUDGE_KEY") as j:
            j.score(RUBRIC, "p", "c")
    assert seen == ["Bearer sk-test"]


def test_verdict_parsing_accepts_fenced_json_and_markdown_score_lines():
    scale = judge.Scale(1, 5)
    assert judge.parse_verdict('```json\n{"reason": "", "score": 2}\n```', scale).value == 2.0
    assert judge.parse_verdict("Reasoning...\n**SCORE: 4.5**", scale).value == 4.5
    assert judge.normalised(judge.JudgeResult(value=4.0), scale) == 0.75
    assert chat("x")  # the stub's body is an OpenAI chat completion
