"""Experiment tracking: the FineTuneJob's MLflow run (and W&B by the same switch), started, resumed and fed.

One MLflow run per FineTuneJob. `start` opens it before training (or reopens it: its id is kept in
`tracking.json` beside the checkpoints, so a retried or resumed pod continues the same run; MLFLOW_RUN_ID in
the environment names one explicitly), tags it with the job's identity, logs the spec's params and reports
the run id as the `tracking` event (status.tracking). transformers' MLflowCallback (`report_to`) then logs
into the active run: TrainingArguments and model config as params, every logged step's metrics.
`TrackedReporter` adds what the callback lacks: the data summary, each checkpoint's metrics, the best
checkpoint and the output. The evaluator logs its results and report into the same run (`log_evaluation`).

Tracking never stops training: a tracker that cannot be reached is logged as a warning and left out. Before
any MLflow call the server gets a short connect check (CONNECT_TIMEOUT_S); when it fails MLflow is switched off
for the whole run (no MLflowCallback, whose client would otherwise retry for minutes and ignore SIGTERM).
Credentials come from the environment only (MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN, WANDB_API_KEY).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kubetune.api.runconfig import EvalRunConfig, TrainRunConfig
from kubetune.api.tracking import MlflowTracking, TrackingSpec

if TYPE_CHECKING:
    from kubetune_trainer.progress import ProgressReporter

log = logging.getLogger(__name__)

RUN_FILE = "tracking.json"  # in the output dir: the run id a resumed trainer continues
CONNECT_TIMEOUT_S = 5.0  # the connect check of the MLflow server at start
# While the run is opened: one attempt per request with a short timeout (MLflow's defaults retry for minutes)
_START_ENV = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
_switched_off: set[str] = set()  # integrations turned off at start because their server did not answer


def report_to(tracking: TrackingSpec | None) -> list[str]:
    """The `TrainingArguments.report_to` integrations the spec asks for; [] for none."""
    if tracking is None:
        return []
    return [
        name
        for name, on in (("mlflow", tracking.mlflow), ("wandb", tracking.wandb))
        if on is not None and name not in _switched_off
    ]


def _unreachable(uri: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why an http(s) tracking server does not take a TCP connection within `timeout`; None when it does (or
    for databricks, whose client finds its own host)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as err:
        return str(err)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as err:
        return f"{parts.hostname}:{port} did not answer within {timeout:g} s ({err.strerror or err})"


def _switch_off_mlflow() -> None:
    """No MLflow for the rest of this process: report_to leaves it out and transformers' integration is off."""
    _switched_off.add("mlflow")
    os.environ["DISABLE_MLFLOW_INTEGRATION"] = "TRUE"
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@contextlib.contextmanager
def _bounded_requests() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _START_ENV}
    os.environ.update(_START_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def configure_environment(cfg: TrainRunConfig) -> None:
    """The variables transformers' integrations read, from the spec (the spec is the switch: it overrides a
    DISABLE_MLFLOW_INTEGRATION / WANDB_DISABLED left in the environment)."""
    tracking = cfg.spec.tracking
    if tracking is None:
        return
    if tracking.mlflow is not None:
        os.environ.pop("DISABLE_MLFLOW_INTEGRATION", None)
        os.environ["MLFLOW_TRACKING_URI"] = tracking.mlflow.uri
    if tracking.wandb is not None:
        os.environ.pop("WANDB_DISABLED", None)
        os.environ["WANDB_PROJECT"] = tracking.wandb.project
        os.environ["WANDB_NAME"] = cfg.job.name
        os.environ["WANDB_RUN_GROUP"] = cfg.job.name
        os.environ.setdefault("WANDB_RESUME", "allow")
        if cfg.job.uid:  # a resumed pod continues the same W&B run
            os.environ.setdefault("WANDB_RUN_ID", f"{cfg.job.uid}-{cfg.job.generation or 0}")
        if tracking.wandb.entity:
            os.environ["WANDB_ENTITY"] = tracking.wandb.entity
        if tracking.wandb.host:
            os.environ["WANDB_BASE_URL"] = tracking.wandb.host


def identity_tags(cfg: TrainRunConfig | EvalRunConfig, kind: str) -> dict[str, str]:
    job = cfg.job
    tags = {"kubetune.kind": kind, "kubetune.namespace": job.namespace, "kubetune.name": job.name}
    if job.uid:
        tags["kubetune.uid"] = job.uid
    if job.generation is not None:
        tags["kubetune.generation"] = str(job.generation)
    return tags


def spec_params(cfg: TrainRunConfig) -> dict[str, str]:
    """method, baseModel, dataset, adapter.* and hyperparameters.* of the spec (camelCase, dotted)."""
    spec = cfg.spec
    params: dict[str, Any] = {
        "method": spec.method,
        "baseModel": cfg.base_model_uri,
        "dataset.train": spec.dataset.train.uri,
        "dataset.format": spec.dataset.format,
    }
    if spec.dataset.validation is not None:
        params["dataset.validation"] = spec.dataset.validation.uri
    for section, model in (("adapter", spec.adapter), ("hyperparameters", spec.hyperparameters)):
        for key, value in model.model_dump(by_alias=True, mode="json").items():
            params[f"{section}.{key}"] = value
    return {k: str(v) for k, v in params.items() if v is not None}


class MlflowRun:
    """The job's MLflow run: the fluent active run (for transformers' callback) plus an explicit client."""

    def __init__(self, uri: str, run_id: str, experiment_id: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri, self.run_id, self.experiment_id = uri, run_id, experiment_id
        self.client = MlflowClient(tracking_uri=uri)
        self._logged: set[tuple[str, int]] = set()

    @property
    def url(self) -> str:
        return f"{self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def status(self) -> dict[str, str]:
        return {"runId": self.run_id, "experimentId": self.experiment_id, "url": self.url}

    def safely(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as err:  # tracking never stops training
            log.warning("MLflow: could not %s: %s", what, err)

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.safely("log params", self.client.log_batch, self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Each (name, step) once, however often an event repeats it."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, int | float) and (k, step) not in self._logged
        ]
        if items:
            self.safely("log metrics", self.client.log_batch, self.run_id, metrics=items)
            self._logged.update((m.key, step) for m in items)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.safely("set tags", self.client.log_batch, self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def end(self, status: str = "FINISHED") -> None:
        import mlflow

        active = mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            self.safely("end the run", mlflow.end_run, status=status)
        else:
            self.safely("end the run", self.client.set_terminated, self.run_id, status=status)


def _saved_run_id(output_dir: Path) -> str | None:
    try:
        return json.loads((output_dir / RUN_FILE).read_text()).get("runId")
    except (OSError, ValueError, AttributeError):
        return None


def _open_run(mlflow: Any, run_id: str | None, mlflow_spec: MlflowTracking, cfg: TrainRunConfig) -> Any:
    if run_id:
        return mlflow.start_run(run_id=run_id)
    experiment = mlflow.set_experiment(mlflow_spec.experiment or cfg.job.name)
    return mlflow.start_run(
        experiment_id=experiment.experiment_id,
        run_name=mlflow_spec.run_name or cfg.job.name,
        tags=identity_tags(cfg, "FineTuneJob"),
    )


def start(cfg: TrainRunConfig) -> MlflowRun | None:
    """Open (or reopen) the job's MLflow run as the active run; None without mlflow tracking or when the
    server cannot be reached (a warning says why; training goes on)."""
    mlflow_spec = cfg.spec.tracking.mlflow if cfg.spec.tracking else None
    if mlflow_spec is None:
        return None
    out = Path(cfg.output_dir)
    # MLFLOW_RUN_ID is read here and removed: with it set, the callback would start the run a second time.
    run_id = os.environ.pop("MLFLOW_RUN_ID", None) or _saved_run_id(out)
    why = _unreachable(mlflow_spec.uri)
    if why:
        log.warning("MLflow tracking is off for this run: the tracking server %s", why)
        _switch_off_mlflow()
        return None
    try:
        import mlflow

        mlflow.set_tracking_uri(mlflow_spec.uri)
        with _bounded_requests():
            active = _open_run(mlflow, run_id, mlflow_spec, cfg)
    except Exception as err:
        log.warning("MLflow tracking is off for this run: %s", err)
        _switch_off_mlflow()
        return None
    run = MlflowRun(mlflow_spec.uri, active.info.run_id, active.info.experiment_id)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(run.status()))
    os.replace(tmp, out / RUN_FILE)
    run.set_tags(identity_tags(cfg, "FineTuneJob"))
    run.log_params(spec_params(cfg))
    log.info("MLflow run %s (%s)", run.run_id, run.url)
    return run


class TrackedReporter:
    """A progress reporter that also logs to the MLflow run what transformers' callback does not: the data
    summary, each checkpoint's metrics (`checkpoint/<metric>` at its step), the best checkpoint and output."""

    def __init__(self, inner: ProgressReporter, run: MlflowRun) -> None:
        self.inner, self.run = inner, run

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # The rest of ProgressReporter, passed on as they are (spelled out so the type checker sees the protocol).
    def data_failed(self, report: str, status: dict[str, Any] | None = None) -> None:
        self.inner.data_failed(report, status)

    def report(
        self,
        *,
        step: int,
        total_steps: int,
        epoch: float | None,
        loss: float | None = None,
        eval_loss: float | None = None,
        tokens_per_second: float | None = None,
        eta_seconds: float | None = None,
    ) -> None:
        self.inner.report(
            step=step,
            total_steps=total_steps,
            epoch=epoch,
            loss=loss,
            eval_loss=eval_loss,
            tokens_per_second=tokens_per_second,
            eta_seconds=eta_seconds,
        )

    def interrupted(self, *, signal: str, step: int, checkpoint: str | None) -> None:
        self.inner.interrupted(signal=signal, step=step, checkpoint=checkpoint)

    def exported(self, export: dict[str, Any]) -> None:
        self.inner.exported(export)

    def memory_plan(self, status: dict[str, Any]) -> None:
        self.inner.memory_plan(status)

    def flush(self) -> None:
        self.inner.flush()

    def tracking(self, status: dict[str, Any]) -> None:
        self.inner.tracking(status)

    def data(self, status: dict[str, Any]) -> None:
        self.inner.data(status)
        self.run.log_params({f"data.{k}": str(v) for k, v in status.items() if not isinstance(v, list | dict)})

    def checkpoints(self, kept: list[dict[str, Any]], best: str | None) -> None:
        self.inner.checkpoints(kept, best)
        for cp in kept:
            if cp.get("step") is not None:
                self.run.log_metrics({f"checkpoint/{k}": v for k, v in (cp.get("metrics") or {}).items()}, cp["step"])
        if best:
            self.run.set_tags({"kubetune.bestCheckpoint": best})

    def finished(self, output: dict[str, Any], metrics: dict[str, float]) -> None:
        self.inner.finished(output, metrics)
        self.run.set_tags({f"kubetune.output.{k}": str(v) for k, v in output.items() if v is not None})


def log_evaluation(config: EvalRunConfig, full: dict[str, Any], files: list[Path]) -> None:
    """An Evaluation's results into its FineTuneJob's run: `eval/<model>/<metric>` (and the baseline's),
    pass/fail and best as tags, results.json and report.html as artifacts under evaluations/<name>/."""
    if config.tracking is None:
        return
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=config.tracking.uri)
        run_id = config.tracking.run_id
        name = config.job.name
        metrics: dict[str, float] = {}
        for result in full.get("results") or []:
            for key, value in (result.get("metrics") or {}).items():
                metrics[f"eval/{name}/{result['model']}/{key}"] = value
        for key, value in ((full.get("baseline") or {}).get("metrics") or {}).items():
            metrics[f"eval/{name}/baseline/{key}"] = value
        for key, value in metrics.items():
            if isinstance(value, int | float):
                client.log_metric(run_id, key, float(value))
        client.set_tag(run_id, f"kubetune.evaluation.{name}.passed", str(bool(full.get("passed"))).lower())
        if full.get("best"):
            client.set_tag(run_id, f"kubetune.evaluation.{name}.best", str(full["best"]))
        for path in files:
            client.log_artifact(run_id, str(path), artifact_path=f"evaluations/{name}")
    except Exception as err:  # the results are on disk and in status; tracking never fails the evaluation
        log.warning("MLflow: could not log the evaluation into run %s: %s", config.tracking.run_id, err)
