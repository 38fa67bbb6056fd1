"""The server answers the official `openai` client: models, chat (plain and streaming), completions, metrics."""

from __future__ import annotations

import re

import httpx
import openai
import pytest

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client(live_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key="x", max_retries=0)


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "was the room clean"}]


def test_models_lists_the_served_model(client, live_server):
    assert [m.id for m in client.models.list()] == [live_server.model_name]
    assert client.models.retrieve(live_server.model_name).owned_by == "kubetune"


def test_chat_completion_with_usage(client, live_server):
    resp = client.chat.completions.create(model=live_server.model_name, messages=MESSAGES, max_tokens=6, temperature=0)
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.message.content  # an untrained model babbles, but it answers
    assert choice.finish_reason == "length"  # it never learnt to stop: max_tokens ends it
    engine = live_server.app.state.serve.engine
    assert resp.usage.prompt_tokens == len(engine.chat_prompt_ids(MESSAGES))
    assert resp.usage.completion_tokens == 6
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 6


def test_streaming_chat_matches_the_plain_answer(client, live_server):
    plain = client.chat.completions.create(model=live_server.model_name, messages=MESSAGES, max_tokens=8, temperature=0)
    stream = client.chat.completions.create(
        model=live_server.model_name,
        messages=MESSAGES,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert len({c.id for c in chunks}) == 1


def test_stop_sequence_cuts_the_answer_plain_and_streamed(client, live_server):
    full = client.chat.completions.create(model=live_server.model_name, messages=MESSAGES, max_tokens=12, temperature=0)
    text = full.choices[0].message.content
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    expected = text[: text.find(stop)]
    cut = client.chat.completions.create(
        model=live_server.model_name, messages=MESSAGES, max_tokens=12, temperature=0, stop=[stop]
    )
    assert cut.choices[0].message.content == expected
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(
        model=live_server.model_name, messages=MESSAGES, max_tokens=12, temperature=0, stop=stop, stream=True
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completions_plain_and_streamed(client, live_server):
    resp = client.completions.create(model=live_server.model_name, prompt="the pool was", max_tokens=5, temperature=0)
    assert resp.object == "text_completion"
    assert resp.usage.completion_tokens == 5 and resp.choices[0].finish_reason == "length"
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=live_server.model_name, prompt="the pool was", max_tokens=5, temperature=0, stream=True
        )
    )
    assert streamed == resp.choices[0].text


def test_sampling_with_a_seed_is_reproducible(client, live_server):
    def ask() -> str:
        r = client.chat.completions.create(
            model=live_server.model_name, messages=MESSAGES, max_tokens=8, temperature=1.0, top_p=0.9, seed=7
        )
        return r.choices[0].message.content

    assert ask() == ask()


def test_errors_in_openai_shape(client, live_server):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        client.chat.completions.create(model=live_server.model_name, messages=MESSAGES, n=2)
    with pytest.raises(openai.BadRequestError, match="context"):
        client.chat.completions.create(model=live_server.model_name, messages=MESSAGES, max_tokens=100_000)


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_metrics_count_requests_and_tokens(client, live_server):
    before = httpx.get(f"{live_server.base_url}/metrics").text
    resp = client.chat.completions.create(model=live_server.model_name, messages=MESSAGES, max_tokens=3, temperature=0)
    list(client.chat.completions.create(model=live_server.model_name, messages=MESSAGES, max_tokens=3, stream=True))
    after = httpx.get(f"{live_server.base_url}/metrics").text

    def delta(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    assert delta("kubetune_serve_requests_total", route="/v1/chat/completions", status="200") == 2
    assert delta("kubetune_serve_request_duration_seconds_count", route="/v1/chat/completions") == 2
    assert delta("kubetune_serve_prompt_tokens_total") == 2 * resp.usage.prompt_tokens
    assert delta("kubetune_serve_completion_tokens_total") == 6
    assert _sample(after, "kubetune_serve_model_ready", model="tiny-chat") == 1
    assert _sample(after, "kubetune_serve_requests_in_flight") == 0


def test_healthz_says_ok(live_server):
    assert httpx.get(f"{live_server.base_url}/healthz").json() == {"status": "ok", "model": "tiny-chat"}
