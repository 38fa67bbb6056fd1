"""An LLM judge: a model behind an OpenAI-compatible API scores or labels a completion against a rubric.

Used by the `judge` grader of reinforcement fine-tuning (graders.py), the `judge` metric of Evaluations
(evaluate/metrics.py) and the safety checks. The judge is asked for structured output first
(`response_format` with a JSON schema); a server that refuses it (400) is asked from then on in a strict
text format whose last line is `SCORE: <number>` or `LABEL: <label>`. A reply that is neither, a score
outside the range or a label not allowed is a parse failure: counted, and the result has no value.
Nothing here raises for a bad judge: rate limits (429, Retry-After honoured), server errors and timeouts
are retried (chatretry.py, as the distillation teacher is), then counted and given back as an error.

At most `concurrency` requests are in flight per Judge (a semaphore, however many threads call it).
Answers are cached on disk (`judge-cache.jsonl` in `cache_dir`, the run's output directory), keyed by
the judge's endpoint and model, the rubric, the scale and the input, so a restarted run or a second
checkpoint's evaluation does not ask again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from kubetune_trainer import chatretry

if TYPE_CHECKING:
    from kubetune.api.judge import JudgeSpec

log = logging.getLogger(__name__)

CACHE_FILE = "judge-cache.jsonl"

# Why a result has no value (JudgeResult.error starts with one of these).
PARSE = "parse"
TIMEOUT = "timeout"
HTTP = "http"
CONNECTION = "connection"

_SCORE_LINE = re.compile(r"^\**\s*score\s*\**\s*[:=]\s*\**\s*(-?\d+(?:\.\d+)?)\s*\**\s*$", re.IGNORECASE)
_LABEL_LINE = re.compile(r"^\**\s*label\s*\**\s*[:=]\s*\**\s*(.+?)\s*\**\s*$", re.IGNORECASE)
_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class JudgeResult:
    """The judge's verdict on one completion: a score in the range, or a label; `error` when it gave none."""

    value: float | None = None
    label: str | None = None
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class JudgeItem:
    """One thing to judge: the prompt the model saw, its completion and (optionally) the reference."""

    prompt: str
    completion: str
    reference: str | None = None


@dataclass
class JudgeCounters:
    """What happened while judging, for the logs and the results (all counts since the Judge was made)."""

    requests: int = 0  # HTTP requests sent (each retry is one)
    judged: int = 0  # completions given a value (asked or cached)
    cache_hits: int = 0
    parse_failures: int = 0  # replies that were not a score in range / an allowed label
    timeouts: int = 0  # completions given up after timeouts (the timed-out requests are in timeout_retries)
    timeout_retries: int = 0
    rate_limited: int = 0  # 429s waited out (Retry-After honoured)
    server_errors: int = 0  # 5xx waited out
    errors: int = 0  # completions given up for any reason other than a parse failure or a timeout
    structured_output: bool = True  # False once the server refused response_format

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Scale:
    """How the judge answers: a number in [low, high], or one of `labels`."""

    low: float | None = None
    high: float | None = None
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.labels:
            if self.low is not None or self.high is not None:
                raise ValueError("a judge scale is a score range or labels, not both")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError("a judge score range needs min < max")

    @property
    def is_label(self) -> bool:
        return bool(self.labels)

    def key(self) -> Any:
        return list(self.labels) if self.labels else [self.low, self.high]


@dataclass
class _State:
    structured: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)


class Judge:
    """A judge model behind an OpenAI-compatible endpoint (`…/v1`). Thread-safe; use it as a context manager
    or call `close()`."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key_env: str | None = None,
        concurrency: int = 4,
        timeout: float = 60.0,
        retries: int = 3,
        cache_dir: str | Path | None = None,
        max_tokens: int = 512,
        name: str = "judge",
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.name = name
        self.concurrency = max(1, concurrency)
        self.retries = max(0, retries)
        self.max_tokens = max_tokens
        self.counters = JudgeCounters()
        self._api_key = os.environ.get(api_key_env) if api_key_env else None
        self._semaphore = threading.BoundedSemaphore(self.concurrency)
        self._state = _State()
        self._client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=self.concurrency))
        self._cache_path = Path(cache_dir) / CACHE_FILE if cache_dir else None
        self._cache: dict[str, dict[str, Any]] = self._read_cache()

    # --- public API ----------------------------------------------------------------------------------

    def score(
        self,
        rubric: str,
        prompt: str,
        completion: str,
        reference: str | None = None,
        *,
        range: tuple[float, float] = (0.0, 10.0),
    ) -> JudgeResult:
        """A number in `range` for `completion` by `rubric` (value None and an error when there is none)."""
        return self._judge(rubric, JudgeItem(prompt, completion, reference), Scale(low=range[0], high=range[1]))

    def label(
        self,
        rubric: str,
        prompt: str,
        completion: str,
        reference: str | None = None,
        *,
        labels: Sequence[str],
    ) -> JudgeResult:
        """One of `labels` for `completion` by `rubric` (as spelled in `labels`; None and an error otherwise)."""
        return self._judge(rubric, JudgeItem(prompt, completion, reference), Scale(labels=tuple(labels)))

    def score_many(
        self,
        rubric: str,
        items: Sequence[JudgeItem],
        *,
        range: tuple[float, float] | None = None,
        labels: Sequence[str] | None = None,
    ) -> list[JudgeResult]:
        """Results in the order of `items`, at most `concurrency` requests in flight; give `range` or `labels`."""
        scale = Scale(labels=tuple(labels)) if labels else Scale(*(range or (0.0, 10.0)))
        if not items:
            return []
        workers = min(self.concurrency, len(items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"judge-{self.name}") as pool:
            return list(pool.map(lambda item: self._judge(rubric, item, scale), items))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one completion --------------------------------------------------------------------------------

    def _judge(self, rubric: str, item: JudgeItem, scale: Scale) -> JudgeResult:
        key = self._key(rubric, item, scale)
        hit = self._cache.get(key)
        if hit is not None:
            self._count(cache_hits=1, judged=1)
            return JudgeResult(value=hit.get("value"), label=hit.get("label"), cached=True)
        with self._semaphore:
            result = self._ask(rubric, item, scale)
        if result.ok:
            self._count(judged=1)
            self._remember(key, result)
        elif result.error and result.error.startswith(PARSE):
            self._count(parse_failures=1)
        elif result.error and result.error.startswith(TIMEOUT):
            self._count(timeouts=1)
        else:
            self._count(errors=1)
        return result

    def _ask(self, rubric: str, item: JudgeItem, scale: Scale) -> JudgeResult:
        structured = self._state.structured
        try:
            resp = self._post(self._body(rubric, item, scale, structured))
            if structured and resp.status_code == 400:
                # The server does not do structured output (or not this schema): strict text from now on.
                with self._state.lock:
                    if self._state.structured:
                        log.warning(
                            "judge %s (%s) refused response_format (400: %s); asking for a SCORE:/LABEL: line instead",
                            self.name,
                            self.endpoint,
                            resp.text[:200],
                        )
                    self._state.structured = False
                    self.counters.structured_output = False
                resp = self._post(self._body(rubric, item, scale, False))
        except httpx.TimeoutException as err:
            return JudgeResult(error=f"{TIMEOUT}: no answer within the timeout ({type(err).__name__})")
        except httpx.TransportError as err:
            return JudgeResult(error=f"{CONNECTION}: {err}")
        if resp.status_code != 200:
            return JudgeResult(error=f"{HTTP}: {self.endpoint} answered {resp.status_code}: {resp.text[:200]}")
        try:
            content = resp.json()["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError, ValueError):
            return JudgeResult(error=f"{PARSE}: not an OpenAI chat completion: {resp.text[:200]!r}")
        return parse_verdict(content, scale)

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._count(requests=1)
        return chatretry.post(
            self._client,
            self.endpoint + "/chat/completions",
            body,
            headers,
            attempts=self.retries + 1,
            on_retry=self._on_retry,
        )

    def _on_retry(self, why: str) -> None:
        self._count(
            requests=1,
            rate_limited=int(why == chatretry.RATE_LIMITED),
            server_errors=int(why == chatretry.SERVER_ERROR),
            timeout_retries=int(why == chatretry.TIMEOUT),
        )

    def _body(self, rubric: str, item: JudgeItem, scale: Scale, structured: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": judge_messages(rubric, item, scale, structured),
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }
        if structured:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "strict": True, "schema": verdict_schema(scale)},
            }
        return body

    # --- counters and cache ------------------------------------------------------------------------------

    def _count(self, **increments: int) -> None:
        with self._state.lock:
            for name, n in increments.items():
                setattr(self.counters, name, getattr(self.counters, name) + n)

    def _key(self, rubric: str, item: JudgeItem, scale: Scale) -> str:
        doc = [self.endpoint, self.model, rubric, scale.key(), item.prompt, item.completion, item.reference]
        return hashlib.sha256(json.dumps(doc, ensure_ascii=False).encode()).hexdigest()

    def _read_cache(self) -> dict[str, dict[str, Any]]:
        cache: dict[str, dict[str, Any]] = {}
        if self._cache_path is None or not self._cache_path.is_file():
            return cache
        for line in self._cache_path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                cache[str(rec["key"])] = {"value": rec.get("value"), "label": rec.get("label")}
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash
        return cache

    def _remember(self, key: str, result: JudgeResult) -> None:
        entry = {"value": result.value, "label": result.label}
        line = json.dumps({"key": key, **entry}, ensure_ascii=False) + "\n"
        with self._state.lock:
            self._cache[key] = entry
            if self._cache_path is None:
                return
            try:
                self._cache_path.parent.mkdir(parents=True, exist_ok=True)
                with self._cache_path.open("a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError as err:  # a full or read-only volume costs a re-ask later, nothing else
                log.warning("judge %s: cannot write its cache %s: %s", self.name, self._cache_path, err)


# --- prompt and parsing (pure) ----------------------------------------------------------------------------


def verdict_schema(scale: Scale) -> dict[str, Any]:
    """The JSON schema of a structured verdict: a short reason, then the score or the label."""
    if scale.is_label:
        answer: dict[str, Any] = {"label": {"type": "string", "enum": list(scale.labels)}}
    else:
        answer = {"score": {"type": "number", "minimum": scale.low, "maximum": scale.high}}
    return {
        "type": "object",
        "properties": {"reason": {"type": "string"}, **answer},
        "required": ["reason", *answer],
        "additionalProperties": False,
    }


def judge_messages(rubric: str, item: JudgeItem, scale: Scale, structured: bool) -> list[dict[str, str]]:
    """The conversation sent to the judge: the rubric and the answer format, then the case to judge."""
    if scale.is_label:
        allowed = ", ".join(scale.labels)
        what = f"one label out of: {allowed}"
        line = "LABEL: <label>"
        json_doc = '{"reason": "<one sentence>", "label": "<label>"}'
    else:
        what = f"a score from {_num(scale.low)} to {_num(scale.high)}"
        line = "SCORE: <number>"
        json_doc = '{"reason": "<one sentence>", "score": <number>}'
    if structured:
        answer_format = f"Answer with JSON only: {json_doc}"
    else:
        answer_format = f"Explain briefly, then end with a last line of exactly the form `{line}`, nothing after it."
    system = (
        "You are a strict grader. Judge the RESPONSE to the PROMPT by the rubric below and give it "
        f"{what}.\n\nRubric:\n{rubric}\n\n{answer_format}"
    )
    parts = [f"PROMPT:\n{item.prompt}", f"RESPONSE:\n{item.completion}"]
    if item.reference is not None:
        parts.append(f"REFERENCE ANSWER:\n{item.reference}")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


def _num(x: float | None) -> str:
    return f"{x:g}" if x is not None else "?"


def parse_verdict(content: str, scale: Scale) -> JudgeResult:
    """A JSON verdict ({"score": n} / {"label": s}, optionally fenced) or a last `SCORE:`/`LABEL:` line."""
    text = content.strip()
    fenced = _FENCE.match(text)
    doc = _json_object(fenced.group(1) if fenced else text)
    if doc is not None:
        raw: Any = doc.get("label" if scale.is_label else "score")
        if raw is None:
            return JudgeResult(error=f"{PARSE}: JSON verdict without {'label' if scale.is_label else 'score'}")
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        m = (_LABEL_LINE if scale.is_label else _SCORE_LINE).match(lines[-1]) if lines else None
        if not m:
            form = "LABEL: <label>" if scale.is_label else "SCORE: <number>"
            return JudgeResult(error=f"{PARSE}: last line is not {form!r}: {text[-120:]!r}")
        raw = m.group(1)
    return _label_result(raw, scale) if scale.is_label else _score_result(raw, scale)


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _score_result(raw: Any, scale: Scale) -> JudgeResult:
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        return JudgeResult(error=f"{PARSE}: score {str(raw)[:40]!r} is not a number")
    assert scale.low is not None and scale.high is not None
    if not scale.low <= value <= scale.high:
        return JudgeResult(error=f"{PARSE}: score {value:g} outside {_num(scale.low)}..{_num(scale.high)}")
    return JudgeResult(value=value)


def _label_result(raw: Any, scale: Scale) -> JudgeResult:
    said = str(raw).strip().strip("`'\".").casefold()
    for allowed in scale.labels:
        if said == allowed.casefold():
            return JudgeResult(label=allowed)
    return JudgeResult(error=f"{PARSE}: label {str(raw)[:40]!r} is not one of {', '.join(scale.labels)}")


def normalised(result: JudgeResult, scale: Scale, label_values: dict[str, float] | None = None) -> float | None:
    """A result on 0..1: a score mapped from [low, high], a label to its value (None: no verdict)."""
    if not result.ok:
        return None
    if scale.is_label:
        return (label_values or {}).get(result.label or "", 0.0)
    assert scale.low is not None and scale.high is not None and result.value is not None
    return (result.value - scale.low) / (scale.high - scale.low)


# --- from a spec (the judge grader and the judge metric) ------------------------------------------------


def scale_of(spec: JudgeSpec) -> Scale:
    if spec.mode == "label":
        return Scale(labels=tuple(lbl.name for lbl in spec.labels))
    assert spec.range is not None  # the spec's rule: a score judge needs range
    return Scale(low=spec.range.min, high=spec.range.max)


def from_spec(
    spec: JudgeSpec,
    *,
    name: str,
    where: str,
    api_key_env: str | None,
    cache_dir: str | Path | None,
    endpoints: dict[str, str] | None = None,
) -> Judge:
    """The Judge a spec describes; a ModelDeployment endpoint is looked up in `endpoints` (the run config's
    resolved endpoints). `where` is the spec's path, for the error when it is not resolved."""
    if spec.endpoint.url:
        url = spec.endpoint.url
    else:
        assert spec.endpoint.model_deployment is not None
        md = spec.endpoint.model_deployment.name
        url = (endpoints or {}).get(md, "")
        if not url:
            raise ValueError(f"{where}.endpoint.modelDeployment {md!r} has no endpoint (is it Ready?)")
    model = spec.model or (spec.endpoint.model_deployment.name if spec.endpoint.model_deployment else "")
    return Judge(
        url,
        model,
        api_key_env=api_key_env if api_key_env and os.environ.get(api_key_env) else None,
        concurrency=spec.concurrency,
        timeout=float(spec.timeout_seconds),
        retries=spec.retries,
        cache_dir=cache_dir,
        max_tokens=spec.max_tokens,
        name=name,
    )


def spec_scores(judge: Judge, spec: JudgeSpec, items: Sequence[JudgeItem]) -> list[float | None]:
    """Each item's score on 0..1 by `spec`; an item without a verdict scores 0 (onFailure zero) or None (skip)."""
    scale = scale_of(spec)
    results = judge.score_many(
        spec.rubric,
        items,
        range=None if scale.low is None or scale.high is None else (scale.low, scale.high),  # both None: a label scale
        labels=scale.labels or None,
    )
    values = spec.label_values()
    out = [normalised(r, scale, values) for r in results]
    failed = sum(v is None for v in out)
    if failed:
        log.warning(
            "judge %s: %d of %d answers without a verdict (%s); %s",
            judge.name,
            failed,
            len(out),
            next(r.error for r in results if r.error),
            "scored 0" if spec.on_failure == "zero" else "left out",
        )
    return [0.0 if v is None and spec.on_failure == "zero" else v for v in out]
