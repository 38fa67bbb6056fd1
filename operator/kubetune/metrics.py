"""Prometheus metrics of the operator, served on /metrics (prometheus-client).

Jobs by phase, training loss / progress / checkpoint metrics per job (copied from the status the
trainer writes), GPU time per namespace, and the duration and errors of every handler.

The metric objects are the process's (prometheus-client registers them once); what the operator has
set so far (phases, GPU seconds counted, the series of each object) belongs to one run of the operator:
a `Recorder`, kept in Kopf's memo (`controllers.common.OperatorState`).

Label names survive a standard scrape: Prometheus gives every scraped series the target labels `job`,
`instance` and (Kubernetes service discovery, the Prometheus Operator) `namespace`, `pod`, `service`,
`container` and `endpoint`; a series label of the same name is renamed `exported_<name>` unless the scrape
honours labels (the chart's ServiceMonitor does not, the usual default). So the namespace of a kubetune
resource is `resource_namespace` (the target's `namespace` stays the operator's own), and a resource's name is
labelled by its kind, as kube-state-metrics does (`job_name`, `deployment`): `finetunejob`, `evaluation`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kubetune import constants as c
from kubetune.api.clock import parse_time

NAMESPACE_LABEL = "resource_namespace"  # the resource's namespace; `namespace` is the scrape target's
JOB_LABEL = "finetunejob"  # a FineTuneJob's name; `job` is the scrape job's
EVALUATION_LABEL = "evaluation"
_JOB = [NAMESPACE_LABEL, JOB_LABEL]

FINETUNEJOBS = Gauge("kubetune_finetunejobs", "FineTuneJobs by namespace and phase.", [NAMESPACE_LABEL, "phase"])
JOB_PHASE = Gauge(
    "kubetune_finetunejob_status_phase",
    "1 for the current phase of each FineTuneJob (one series per job; it moves when the phase changes).",
    [*_JOB, "phase"],
)
TRAINING_LOSS = Gauge("kubetune_training_loss", "Latest training loss of a FineTuneJob.", _JOB)
EVAL_LOSS = Gauge("kubetune_eval_loss", "Latest evaluation loss of a FineTuneJob.", _JOB)
PROGRESS = Gauge("kubetune_training_progress_ratio", "Optimizer steps done / planned (0..1).", _JOB)
CHECKPOINT_METRIC = Gauge(
    "kubetune_checkpoint_metric",
    "Metrics of the kept checkpoints of a FineTuneJob.",
    [*_JOB, "checkpoint", "metric"],
)
CHECKPOINTS = Gauge("kubetune_checkpoints", "Checkpoints kept by a FineTuneJob.", _JOB)
GPU_SECONDS = Counter("kubetune_gpu_seconds", "GPU time consumed by training (GPUs x seconds).", [NAMESPACE_LABEL])
HANDLER_DURATION = Histogram(
    "kubetune_handler_duration_seconds",
    "Time spent in operator handlers.",
    ["handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HANDLER_ERRORS = Counter("kubetune_handler_errors", "Handler runs that ended with an error.", ["handler"])

_served_on: set[int] = set()


def start_server_once(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve /metrics on `port` (0 or less: don't); a restarted operator in the same process reuses it."""
    if port > 0 and port not in _served_on:
        start_http_server(port, registry=registry)
        _served_on.add(port)


@contextlib.contextmanager
def track(handler: str, *, expected: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Time a handler; count it as an error unless it ended with one of `expected` (e.g. retries)."""
    start = time.perf_counter()
    try:
        yield
    except expected:
        raise
    except BaseException:
        HANDLER_ERRORS.labels(handler).inc()
        raise
    finally:
        HANDLER_DURATION.labels(handler).observe(time.perf_counter() - start)


_ALL_PHASES = (
    c.Phase.PENDING,
    c.Phase.VALIDATING,
    c.Phase.QUEUED,
    c.Phase.RUNNING,
    c.Phase.SUCCEEDED,
    c.Phase.FAILED,
    c.Phase.SUSPENDED,
)


def _gpu_seconds_so_far(spec: Mapping[str, Any], status: Mapping[str, Any], now: dt.datetime) -> float | None:
    if status.get("gpuSeconds") is not None and status.get("phase") in c.FINISHED_PHASES:
        return float(status["gpuSeconds"])
    start = parse_time(status.get("startTime"))
    if start is None or status.get("phase") not in (c.Phase.RUNNING, c.Phase.VALIDATING):
        return None
    res = spec.get("resources") or {}
    return max(0.0, (now - start).total_seconds()) * int(res.get("gpus", 1)) * int(res.get("nodes", 1))


def _set_scores(
    gauge: Gauge,
    known: dict[tuple[str, str], set[tuple[str, str]]],
    key: tuple[str, str],
    scored: list[tuple[str, Mapping[str, Any]]],
) -> None:
    """gauge{resource_namespace, name, model, metric} for each numeric value of each (model, values) in `scored`;
    the series of `key` that are no longer there are removed. Call with the recorder's lock held."""
    series = set()
    for model, values in scored:
        for metric, value in values.items():
            if isinstance(value, int | float):
                gauge.labels(*key, model, metric).set(value)
                series.add((model, metric))
    for gone in known.get(key, set()) - series:
        with contextlib.suppress(KeyError):
            gauge.remove(*key, *gone)
    known[key] = series


def _forget_scores(gauge: Gauge, known: dict[tuple[str, str], set[tuple[str, str]]], key: tuple[str, str]) -> None:
    """Remove every series `_set_scores` made for `key`. Call with the recorder's lock held."""
    for model, metric in known.pop(key, set()):
        with contextlib.suppress(KeyError):
            gauge.remove(*key, model, metric)


# --- Evaluations (added by the serving engineer) ---

EVALUATION_SCORE = Gauge(
    c.EVALUATION_SCORE_METRIC,
    "Score of a model (a checkpoint, or the baseline) in an Evaluation.",
    [NAMESPACE_LABEL, EVALUATION_LABEL, "model", "metric"],
)
EVALUATION_PASSED = Gauge(
    "kubetune_evaluation_passed",
    "1 when an Evaluation's models passed its criteria, 0 when none did; absent until it has decided.",
    [NAMESPACE_LABEL, EVALUATION_LABEL],
)


class Recorder:
    """The series one operator run has set, so that it updates and removes them per object; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str], str] = {}  # (namespace, name) -> phase
        self._phase_counts: dict[tuple[str, str], int] = {}  # (namespace, phase) -> jobs
        self._gpu_seen: dict[tuple[str, str], float] = {}  # GPU seconds already counted per job
        self._namespaces: set[str] = set()
        self._checkpoint_series: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._evaluation_series: dict[tuple[str, str], set[tuple[str, str]]] = {}

    def _set_phase(self, key: tuple[str, str], phase: str | None) -> None:
        """Move one job to `phase` (None: gone) in the per-namespace counts; only the two series that change
        are written, so an event costs the same with ten jobs or ten thousand."""
        namespace = key[0]
        if namespace not in self._namespaces:  # every phase of a namespace is exported, 0 included
            self._namespaces.add(namespace)
            for each in _ALL_PHASES:
                FINETUNEJOBS.labels(namespace, each).set(self._phase_counts.get((namespace, each), 0))
        old = self._phases.pop(key, None)
        if phase is not None:
            self._phases[key] = phase
        if old == phase:
            return
        if old is not None:
            with contextlib.suppress(KeyError):
                JOB_PHASE.remove(*key, old)
        if phase is not None:
            JOB_PHASE.labels(*key, phase).set(1)
        for moved, delta in ((old, -1), (phase, 1)):
            if moved is not None:
                count = self._phase_counts.get((namespace, moved), 0) + delta
                self._phase_counts[(namespace, moved)] = count
                FINETUNEJOBS.labels(namespace, moved).set(count)

    def observe_job(self, body: Mapping[str, Any], now: dt.datetime | None = None) -> None:
        """Update every per-job series from a FineTuneJob as it is now."""
        meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        namespace, name = key
        with self._lock:
            self._set_phase(key, status.get("phase") or c.Phase.PENDING)
            job_metrics = status.get("metrics") or {}
            if "trainLoss" in job_metrics:
                TRAINING_LOSS.labels(namespace, name).set(job_metrics["trainLoss"])
            if "evalLoss" in job_metrics:
                EVAL_LOSS.labels(namespace, name).set(job_metrics["evalLoss"])
            progress = status.get("progress") or {}
            if progress.get("totalSteps"):
                PROGRESS.labels(namespace, name).set(min(1.0, (progress.get("step") or 0) / progress["totalSteps"]))
            elif status.get("phase") == c.Phase.SUCCEEDED:
                PROGRESS.labels(namespace, name).set(1.0)
            checkpoints = status.get("checkpoints") or []
            CHECKPOINTS.labels(namespace, name).set(len(checkpoints))
            scored: list[tuple[str, Mapping[str, Any]]] = [
                (cp.get("name", ""), cp.get("metrics") or {}) for cp in checkpoints
            ]
            _set_scores(CHECKPOINT_METRIC, self._checkpoint_series, key, scored)
            seconds = _gpu_seconds_so_far(spec, status, now or dt.datetime.now(dt.UTC))
            if seconds is not None:
                first = key not in self._gpu_seen and _restarted(status)
                seen = self._gpu_seen.setdefault(key, seconds if first else 0.0)
                if seconds > seen:
                    GPU_SECONDS.labels(namespace).inc(seconds - seen)
                    self._gpu_seen[key] = seconds

    def forget_job(self, namespace: str, name: str) -> None:
        """Drop a deleted job's series."""
        key = (namespace, name)
        with self._lock:
            self._set_phase(key, None)
            self._gpu_seen.pop(key, None)
            for gauge in (TRAINING_LOSS, EVAL_LOSS, PROGRESS, CHECKPOINTS):
                with contextlib.suppress(KeyError):
                    gauge.remove(namespace, name)
            _forget_scores(CHECKPOINT_METRIC, self._checkpoint_series, key)

    def observe_evaluation(self, body: Mapping[str, Any]) -> None:
        """Update the score series of an Evaluation from its status (results and baseline)."""
        meta, status = body.get("metadata") or {}, body.get("status") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        scored: list[tuple[str, Mapping[str, Any]]] = [
            (r.get("model", ""), r.get("metrics") or {}) for r in status.get("results") or []
        ]
        if status.get("baseline"):
            scored.append(("baseline", status["baseline"].get("metrics") or {}))
        with self._lock:
            _set_scores(EVALUATION_SCORE, self._evaluation_series, key, scored)
            if status.get("passed") is None:
                with contextlib.suppress(KeyError):
                    EVALUATION_PASSED.remove(*key)
            else:
                EVALUATION_PASSED.labels(*key).set(1 if status["passed"] else 0)

    def forget_evaluation(self, namespace: str, name: str) -> None:
        with self._lock:
            _forget_scores(EVALUATION_SCORE, self._evaluation_series, (namespace, name))
            with contextlib.suppress(KeyError):
                EVALUATION_PASSED.remove(namespace, name)


def _restarted(status: Mapping[str, Any]) -> bool:
    """A job first seen already finished was counted by an earlier operator process: don't count it again."""
    return status.get("phase") in c.FINISHED_PHASES
