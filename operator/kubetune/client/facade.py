"""`kubetune.client.Client`: one synchronous API over a cluster and over the local runtime.

from kubetune.client import Client
kt = Client.cluster()                 # kubeconfig, or the in-cluster ServiceAccount
kt = Client.local("runs")             # `kubetune run`'s runs folder; runs start as subprocesses
job, ev = kt.apply("job.yaml")        # or a FineTuneJob object, a dict, YAML text; admitted first
kt.wait(job, progress=True)           # until Succeeded/Failed, with a progress bar
kt.checkpoints(job); kt.results(ev).best; kt.pin("my-deployment", "checkpoint-400")
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from kubetune import constants as c
from kubetune.api import Evaluation, EvaluationStatus, FineTuneJob, ModelDeployment, Resource, bounds
from kubetune.api.finetunejob import CheckpointStatus
from kubetune.api.manifests import ManifestError
from kubetune.client.backend import AdmissionError, Backend, Event, Source, admitted, kind_name

# What `wait` waits for when told nothing else: the phases a resource stays in until something changes it.
SETTLED = {
    c.FINETUNEJOB: frozenset({"Succeeded", "Failed", "Suspended"}),
    c.EVALUATION: frozenset({"Succeeded", "Failed"}),
    c.MODELDEPLOYMENT: frozenset({"Ready", "Failed"}),
}
Ref = Resource | str  # a resource object, or its name (with `kind`)
# A checkpoint's name (checkpoint-400, final) or an evaluated model's: no path, no spaces, nothing to escape.
PIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.))*$")


class WaitTimeout(TimeoutError):
    """`wait` ran out of time; `.resource` is the last state seen."""

    def __init__(self, message: str, resource: Resource) -> None:
        super().__init__(message)
        self.resource = resource


class Client:
    """kubetune's FineTuneJobs, Evaluations and ModelDeployments, typed with the pydantic models of kubetune.api,
    on a cluster (`Client.cluster()`) or in a local runs folder (`Client.local()`)."""

    def __init__(self, backend: Backend, namespace: str | None = None) -> None:
        self.backend = backend
        self.namespace = namespace or backend.default_namespace
        self._bound = namespace is not None  # told its namespace: a manifest naming another one is refused
        # closed when the client is garbage-collected or at exit, if `close()` / `with` did not
        self._finalizer = weakref.finalize(self, backend.close)

    @classmethod
    def cluster(
        cls, kubeconfig: str | Path | None = None, *, context: str | None = None, namespace: str | None = None
    ) -> Client:
        """On a cluster: `kubeconfig` (and `context`), else in-cluster, else $KUBECONFIG or ~/.kube/config.
        `namespace` defaults to the context's (or the ServiceAccount's)."""
        from kubetune.client.cluster import ClusterBackend

        return cls(ClusterBackend.connect(kubeconfig, context), namespace)

    @classmethod
    def local(cls, runs_dir: str | Path = "runs", *, namespace: str | None = None) -> Client:
        """On this machine: the runs folder `kubetune run --runs-dir` uses; `apply` starts `kubetune run`.
        `namespace` (default "default"; given, a manifest naming another is refused)."""
        from kubetune.client.local import LocalBackend

        return cls(LocalBackend(runs_dir, default_namespace=namespace or "default"), namespace)

    def close(self) -> None:
        """Release the connection (also done on garbage collection and at exit; `with Client...` does it)."""
        self._finalizer()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- resources ---

    def _ref(self, ref: Ref, kind: str | type | None, namespace: str | None) -> tuple[str, str, str]:
        if isinstance(ref, str):
            if kind is None:
                raise TypeError(
                    f"{ref!r} is a name: say its kind (kind='FineTuneJob', 'Evaluation' or 'ModelDeployment')"
                )
            return kind_name(kind), namespace or self.namespace, ref
        return ref.kind, namespace or ref.metadata.namespace or self.namespace, ref.metadata.name

    def apply(self, *sources: Source | Iterable[Resource]) -> list[Resource]:
        """Create or update resources from model objects, dicts, YAML text or files (several documents each).

        Everything goes through kubetune's one admission first (schema, CEL rules, spec and cross-resource
        checks): an AdmissionError names every problem by source and field path, and nothing is sent."""
        return self.backend.apply(admitted(self._flat(sources), self.namespace, bound=self._bound))

    def create(self, *sources: Source | Iterable[Resource]) -> list[Resource]:
        """As `apply`, but an object that exists already is an error (a Conflict on a cluster)."""
        return self.backend.apply(admitted(self._flat(sources), self.namespace, bound=self._bound), create_only=True)

    @staticmethod
    def _flat(sources: tuple[Any, ...]) -> list[Source]:
        out: list[Source] = []
        for s in sources:
            is_many = isinstance(s, (list, tuple))
            out += list(s) if is_many else [s]
        return out

    def get(self, ref: Ref, kind: str | type | None = None, *, namespace: str | None = None) -> Resource:
        """The resource with its status as it is now (NotFoundError when it is not there)."""
        return self.backend.get(*self._ref(ref, kind, namespace))

    def list(self, kind: str | type, *, namespace: str | None = None) -> list[Resource]:
        return self.backend.list(kind_name(kind), namespace or self.namespace)

    def delete(self, ref: Ref, kind: str | type | None = None, *, namespace: str | None = None) -> bool:
        """Delete; False when it was not there. Children go with it (owner references; locally its folders)."""
        return self.backend.delete(*self._ref(ref, kind, namespace))

    # --- waiting and watching ---

    def wait(
        self,
        ref: Ref,
        kind: str | type | None = None,
        *,
        namespace: str | None = None,
        phases: Collection[str] | None = None,
        until: Callable[[Resource], bool] | None = None,
        timeout: float = 3600,
        interval: float = 1.0,
        progress: bool | None = None,
    ) -> Resource:
        """Poll until the phase is one of `phases` (default: settled, e.g. Succeeded/Failed/Suspended for a job)
        or `until(resource)` is true; the resource then. WaitTimeout after `timeout` seconds.

        `progress`: a progress bar (percent and phase); by default only on a terminal or in a notebook."""
        key = self._ref(ref, kind, namespace)
        wanted = frozenset(phases) if phases is not None else SETTLED[key[0]]
        console = Console(stderr=True)
        show = progress if progress is not None else (console.is_terminal or console.is_jupyter)
        deadline = time.monotonic() + timeout
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
            console=console, disable=not show, transient=False,
        ) as bar:  # fmt: skip
            task = bar.add_task(f"{key[0]} {key[1]}/{key[2]}", total=100)
            while True:
                resource = self.backend.get(*key)
                phase = resource.status.phase if resource.status else None
                bar.update(
                    task, completed=_percent(resource), description=f"{key[0]} {key[1]}/{key[2]}: {phase or '-'}"
                )
                if until(resource) if until is not None else phase in wanted:
                    return resource
                if time.monotonic() >= deadline:
                    what = "the condition" if until is not None else " or ".join(sorted(wanted))
                    raise WaitTimeout(
                        f"{key[0]} {key[1]}/{key[2]} is {phase or 'without status'} after {timeout:g}s; waited for {what}",
                        resource,
                    )
                time.sleep(interval)

    def events(
        self, ref: Ref, kind: str | type | None = None, *, namespace: str | None = None, follow: bool = False,
        timeout: float | None = None,
    ) -> Iterator[Event]:  # fmt: skip
        """What happened to a resource: its Kubernetes Events on a cluster (then, with `follow`, new ones as
        they come, by watch), the trainer's events locally. `timeout` ends a follow."""
        kind_, ns, name = self._ref(ref, kind, namespace)
        return self.backend.events(kind_, ns, name, follow=follow, timeout=timeout)

    def logs(
        self, job: Ref, *, namespace: str | None = None, follow: bool = False, timeout: float | None = None
    ) -> Iterator[str]:
        """Lines of the training log (the newest training pod's on a cluster; train.log locally)."""
        _, ns, name = self._ref(job, c.FINETUNEJOB, namespace)
        return self.backend.logs(name, ns, follow=follow, timeout=timeout)

    # --- results ---

    def checkpoints(self, job: Ref, *, namespace: str | None = None) -> list[CheckpointStatus]:
        """The job's kept checkpoints with their metrics (status.checkpoints)."""
        found = self.get(job, c.FINETUNEJOB, namespace=namespace)
        assert isinstance(found, FineTuneJob)
        return list(found.status.checkpoints) if found.status else []

    def best_checkpoint(self, job: Ref, *, namespace: str | None = None) -> str | None:
        found = self.get(job, c.FINETUNEJOB, namespace=namespace)
        assert isinstance(found, FineTuneJob)
        return found.status.best_checkpoint if found.status else None

    def results(self, evaluation: Ref, *, namespace: str | None = None) -> EvaluationStatus:
        """The Evaluation's status: baseline, results per model, best, passed, report."""
        found = self.get(evaluation, c.EVALUATION, namespace=namespace)
        assert isinstance(found, Evaluation)
        return found.status or EvaluationStatus()

    # --- changes ---

    def pin(self, deployment: Ref, checkpoint: str, *, namespace: str | None = None) -> ModelDeployment:
        """Serve `checkpoint` (spec.promotion.pin; also how to roll back). An empty string unpins."""
        kind_, ns, name = self._ref(deployment, c.MODELDEPLOYMENT, namespace)
        if checkpoint and (len(checkpoint) > bounds.CHECKPOINT_NAME_MAX or not PIN_RE.match(checkpoint)):
            message = (
                f"{checkpoint[:80]!r} is not a checkpoint name (at most {bounds.CHECKPOINT_NAME_MAX} characters, "
                "no path or spaces): pin one the job's status.checkpoints names (checkpoint-400, final), or '' to unpin"
            )
            raise AdmissionError([ManifestError(f"{kind_} {ns}/{name}", "spec.promotion.pin", message)])
        updated = self.backend.patch_spec(kind_, ns, name, {"promotion": {"pin": checkpoint}})
        assert isinstance(updated, ModelDeployment)
        return updated

    def suspend(self, job: Ref, *, namespace: str | None = None) -> FineTuneJob:
        """Stop training for now (spec.suspend; locally: interrupt the run, which keeps a checkpoint)."""
        kind_, ns, name = self._ref(job, c.FINETUNEJOB, namespace)
        updated = self.backend.patch_spec(kind_, ns, name, {"suspend": True})
        assert isinstance(updated, FineTuneJob)
        return updated

    def resume(self, job: Ref, *, namespace: str | None = None) -> FineTuneJob:
        """Train on from the latest checkpoint."""
        kind_, ns, name = self._ref(job, c.FINETUNEJOB, namespace)
        updated = self.backend.patch_spec(kind_, ns, name, {"suspend": False})
        assert isinstance(updated, FineTuneJob)
        return updated


def _percent(resource: Resource) -> float:
    status = resource.status
    progress = getattr(status, "progress", None)
    if progress is not None and progress.percent is not None:
        return float(progress.percent)
    return 100.0 if status is not None and status.phase in ("Succeeded", "Ready") else 0.0
