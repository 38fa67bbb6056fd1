"""Progress reporting: one small interface, two back ends.

- `JsonlReporter` appends one JSON object per event to a file (`kubetune run` tails it).
- `KubernetesReporter` merge-patches `status` of the job's own FineTuneJob (in a pod, with the
  pod's service-account token; the Role allows exactly that object).

Both turn the same events into status the same way: `kubetune.api.progress.status_patch` says which
status fields an event sets (the local runtime merges that patch; a pod sends it).

`ProgressCallback` adapts a `transformers.Trainer` run to a reporter. Only the main process reports.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from kubetune import constants as c
from kubetune.api.clock import now_iso
from kubetune.api.progress import progress_fields, status_patch

log = logging.getLogger(__name__)

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ProgressReporter(Protocol):
    """What the trainer tells the outside world. Implementations must never raise into training."""

    def data(self, status: dict[str, Any]) -> None: ...

    def data_failed(self, report: str, status: dict[str, Any] | None = None) -> None: ...

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
    ) -> None: ...

    def checkpoints(self, kept: list[dict[str, Any]], best: str | None) -> None: ...

    def finished(self, output: dict[str, Any], metrics: dict[str, float]) -> None: ...

    def interrupted(self, *, signal: str, step: int, checkpoint: str | None) -> None: ...

    def exported(self, export: dict[str, Any]) -> None: ...

    def tracking(self, status: dict[str, Any]) -> None: ...

    def memory_plan(self, status: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...


class NullReporter:
    def data(self, status: dict[str, Any]) -> None:
        pass

    def data_failed(self, report: str, status: dict[str, Any] | None = None) -> None:
        pass

    def report(self, **kwargs: Any) -> None:
        pass

    def checkpoints(self, kept: list[dict[str, Any]], best: str | None) -> None:
        pass

    def finished(self, output: dict[str, Any], metrics: dict[str, float]) -> None:
        pass

    def interrupted(self, *, signal: str, step: int, checkpoint: str | None) -> None:
        pass

    def exported(self, export: dict[str, Any]) -> None:
        pass

    def tracking(self, status: dict[str, Any]) -> None:
        pass

    def memory_plan(self, status: dict[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass


class EventReporter:
    """The reporter interface as events: `data`, `data_failed`, `progress`, `checkpoints`, `finished`,
    `interrupted`. Subclasses say where an event goes (`event`)."""

    def event(self, event: str, **fields: Any) -> None:
        raise NotImplementedError

    def data(self, status: dict[str, Any]) -> None:
        self.event("data", data=status)

    def data_failed(self, report: str, status: dict[str, Any] | None = None) -> None:
        """The line-numbered problems, in `status.data.errors`. Phase and conditions are the operator's: it
        sees the pod exit with EXIT_DATA_VALIDATION_FAILED and reads these errors into its message."""
        self.event("data_failed", report=report, data=status or {})

    def report(self, **kwargs: Any) -> None:
        self.event("progress", **progress_fields(**kwargs))

    def checkpoints(self, kept: list[dict[str, Any]], best: str | None) -> None:
        self.event("checkpoints", checkpoints=kept, bestCheckpoint=best)

    def finished(self, output: dict[str, Any], metrics: dict[str, float]) -> None:
        self.event("finished", output=output, metrics=metrics)

    def interrupted(self, *, signal: str, step: int, checkpoint: str | None) -> None:
        self.event("interrupted", signal=signal, step=step, checkpoint=checkpoint)

    def exported(self, export: dict[str, Any]) -> None:
        """spec.export is written: where, which checkpoint, the manifest's digest (status.export)."""
        self.event("exported", export=export)

    def tracking(self, status: dict[str, Any]) -> None:
        """The experiment-tracking run (status.tracking: runId, experimentId, url)."""
        self.event("tracking", tracking=status)

    def memory_plan(self, status: dict[str, Any]) -> None:
        """The memory plan at start (status.memoryPlan; kubetune.api.memoryplan's to_status)."""
        self.event("memory_plan", memoryPlan=status)

    def flush(self) -> None:
        pass


class JsonlReporter(EventReporter):
    """Appends `{"time", "event", ...}` lines; every event is written at once (a local file is cheap)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def event(self, event: str, **fields: Any) -> None:
        """Append one event line (the trainer's events; the evaluator writes `evaluation`)."""
        line = json.dumps({"time": now_iso(), "event": event, **fields}, sort_keys=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


class KubernetesReporter(EventReporter):
    """Merge-patches the status subresource of the run's own resource (a FineTuneJob, or the Evaluation of an
    evaluation pod); progress patches are throttled.

    Phase changes, data results, checkpoints and the end are sent at once; progress at most every
    `min_interval` seconds (the latest one is kept and sent by the next patch or `flush`).
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        *,
        min_interval: float = 5.0,
        api_server: str | None = None,
        token_path: Path = SA_DIR / "token",
        ca_path: Path = SA_DIR / "ca.crt",
        timeout: float = 10.0,
        kind: str = c.FINETUNEJOB,
    ) -> None:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        self.api_server = (api_server or f"https://{host}:{port}").rstrip("/")
        self.kind = kind
        self.url = (
            f"{self.api_server}/apis/{c.GROUP}/{c.VERSION}/namespaces/{namespace}/{c.PLURALS[kind]}/{name}/status"
        )
        self.min_interval = min_interval
        self.token_path, self.ca_path, self.timeout = token_path, ca_path, timeout
        self._last_sent: float | None = None
        self._pending: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https"):
            return None
        if self.ca_path.exists():
            return ssl.create_default_context(cafile=str(self.ca_path))
        return ssl.create_default_context()

    def send(self, status: dict[str, Any]) -> bool:
        """One merge patch of `{"status": status}`; failures are logged, never raised."""
        body = json.dumps({"status": status}).encode()
        req = urllib.request.Request(self.url, data=body, method="PATCH")
        req.add_header("Content-Type", "application/merge-patch+json")
        req.add_header("Accept", "application/json")
        if self.token_path.exists():
            req.add_header("Authorization", f"Bearer {self.token_path.read_text().strip()}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._context()) as resp:
                resp.read()
            return True
        except (urllib.error.URLError, OSError, ValueError) as err:
            detail = getattr(err, "code", None) or getattr(err, "reason", None) or err
            log.warning("could not patch %s status (%s): %s", self.kind, self.url, detail)
            return False

    def _patch(self, status: dict[str, Any], *, throttle: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if throttle and self._last_sent is not None and now - self._last_sent < self.min_interval:
                self._pending = {**(self._pending or {}), **status}
                return
            merged = {**(self._pending or {}), **status}
            self._pending = None
            self._last_sent = now
        self.send(merged)

    def event(self, event: str, **fields: Any) -> None:
        """Send the status patch the event stands for; progress is throttled, and an interruption sends
        only the latest throttled progress (the operator owns `phase`: it sees the pod go, and the checkpoint
        that was saved is already in `status.checkpoints`)."""
        if event == "interrupted":
            self.flush()
            return
        patch = status_patch({"event": event, **fields})
        if patch:
            self._patch(patch, throttle=event == "progress")

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending:
            self.send(pending)


def make_reporter(backend: str, *, path: str | None, name: str, namespace: str, min_interval: float):
    """The reporter a run config's `progress` section asks for."""
    if backend == "file":
        if not path:
            raise ValueError("progress.path is required with progress.backend file")
        return JsonlReporter(path)
    if backend == "kubernetes":
        return KubernetesReporter(name, namespace, min_interval=min_interval)
    return NullReporter()
