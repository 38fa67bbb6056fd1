"""What every controller shares: the operator's state in Kopf's memo, typed parsing of bodies, Events,
child creation."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from kubetune import k8s, metrics
from kubetune.api.admission import admit_resource
from kubetune.api.evaluation import EvaluationSpec
from kubetune.api.finetunejob import FineTuneJobSpec
from kubetune.api.manifests import pydantic_errors
from kubetune.api.modeldeployment import ModelDeployment
from kubetune.builders.autoscaling import ClusterEngines
from kubetune.builders.runconfig import judge_deployments
from kubetune.controllers.config import OperatorConfig

M = TypeVar("M", bound=BaseModel)


@dataclass
class OperatorState:
    """What one run of the operator keeps between events: its settings, one lock per object and the metric
    series it has set. The startup handler puts it in Kopf's memo (`memo.state`); Kopf hands every handler a
    shallow copy of that memo, so all share this one object. A restarted operator starts with a new one."""

    config: OperatorConfig = field(default_factory=OperatorConfig)
    metrics: metrics.Recorder = field(default_factory=metrics.Recorder)
    locks: dict[tuple[str, str, str], asyncio.Lock] = field(default_factory=dict)
    # What of each object `parse` last admitted (a digest): the CEL rules cost ~0.1 s per object, and
    # most events (status writes, Kopf's annotations) change nothing they read.
    admitted: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # The (uid, resourceVersion) of the workload (batch Job or JobSet) each object's status was last computed
    # from: the watch event of a Job the operator has just created and synced from changes nothing.
    synced_workload: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)
    jobset: bool = False  # multi-node jobs train on a JobSet: allowed, and the cluster serves JobSets (at start)
    serving_engines: ClusterEngines | None = None  # KEDA and PodMonitor served (asked once, at the first serving)
    httproute: bool | None = None  # the cluster serves Gateway API HTTPRoutes (asked once, when a spec names a gateway)

    def lock(self, kind: str, namespace: str, name: str) -> asyncio.Lock:
        """One lock per object, so status writes from different watch events never interleave."""
        return self.locks.setdefault((kind, namespace, name), asyncio.Lock())

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """The object is gone: drop its lock and what was admitted of it."""
        self.locks.pop((kind, namespace, name), None)
        self.admitted.pop((kind, namespace, name), None)
        self.synced_workload.pop((kind, namespace, name), None)

    def synced_from(self, key: tuple[str, str, str], workload: Mapping[str, Any]) -> bool:
        """Whether the status of `key` was last computed from this very version of `workload` (never for an object
        without a uid and resourceVersion: nothing then tells two versions apart)."""
        version = _version(workload)
        return all(version) and self.synced_workload.get(key) == version

    def remember_synced(self, key: tuple[str, str, str], workload: Mapping[str, Any]) -> None:
        self.synced_workload[key] = _version(workload)


def _version(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("uid") or "", meta.get("resourceVersion") or "")


def state(memo: Any) -> OperatorState:
    """The operator's state from a handler's `memo` (set by the startup handler, `controllers.main.configure`)."""
    found = getattr(memo, "state", None)
    if not isinstance(found, OperatorState):
        raise RuntimeError("the operator's startup handler has not run: memo.state is missing")
    return found


def changed_since_last_event(memo: Any, watcher: str, event: Mapping[str, Any], signature: Any) -> bool:
    """Whether `signature` of the watched object differs from what `watcher` saw at its last event, so that
    writes it does not care about do nothing. Kept in Kopf's per-object `memo` (forgotten when the object is
    deleted, or when the operator restarts); a deletion is always a change."""
    if event.get("type") == "DELETED":
        return True
    key = f"last_seen_by_{watcher}"
    if key in memo and memo[key] == signature:
        return False
    memo[key] = signature
    return True


def _admission_digest(doc: Mapping[str, Any]) -> str:
    """What admission reads of an object: its kind, spec, name, namespace, labels and annotations."""
    meta = doc.get("metadata") or {}
    read = [doc.get("apiVersion"), doc.get("kind"), doc.get("spec")]
    read += [meta.get(k) for k in ("name", "namespace", "labels", "annotations")]
    return hashlib.sha256(json.dumps(read, sort_keys=True, default=str).encode()).hexdigest()


def parse(model: type[M], body: Mapping[str, Any], state: OperatorState | None = None) -> M:
    """The typed resource, admitted by the same function as `kubetune validate` and `kubetune run`
    (schema, CEL rules, metadata and spec checks); what it refuses becomes a PermanentError naming the fields.
    With `state`, an object admitted before and unchanged in what admission reads is not checked again."""
    doc = dict(body)
    try:
        resource = model.model_validate(doc)
    except ValidationError as err:
        problems = "; ".join(f"{e.path}: {e.message}" for e in pydantic_errors(err, "spec"))
        raise kopf.PermanentError(f"invalid resource: {problems}") from err
    meta = doc.get("metadata") or {}
    key = (str(doc.get("kind")), str(meta.get("namespace")), str(meta.get("name")))
    digest = _admission_digest(doc) if state is not None else ""
    if state is not None and state.admitted.get(key) == digest:
        return resource
    errors = admit_resource(doc)
    if errors:
        raise kopf.PermanentError("invalid resource: " + "; ".join(f"{e.path}: {e.message}" for e in errors))
    if state is not None:
        state.admitted[key] = digest
    return resource


async def event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    await k8s.post_event(body, type_, reason, message)


class ChildRefused(kopf.PermanentError):
    """The API server refused to create a child as invalid (422): the same manifest will be refused again, so
    the controller reports it (Failed, Stalled, a Warning Event) instead of retrying."""

    def __init__(self, child: str, message: str) -> None:
        super().__init__(f"the API server refused {child}: {message}")
        self.child, self.message = child, message


async def ensure(manifests: list[dict[str, Any] | None]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Create what is missing (in order), keep what exists: ({kind: object}, ["Kind/name" created]).

    Not a server-side apply: these children are never changed in place. A Job's pod template is immutable,
    Kueue owns `spec.suspend` of a queued Job, and a spec edit re-creates them (their spec-hash annotation
    says which spec built them). What the operator keeps in line with a spec uses `k8s.apply`. A child the API
    server refuses as invalid raises ChildRefused."""
    objects: dict[str, dict[str, Any]] = {}
    created: list[str] = []
    for manifest in manifests:
        if manifest is None:
            continue
        try:
            obj, was_created = await k8s.create_if_absent(manifest)
        except k8s.ApiError as err:
            if err.status == 422:  # Invalid: nothing changes until the spec does
                raise ChildRefused(f"{manifest['kind']} {manifest['metadata']['name']}", err.message) from err
            raise
        objects[manifest["kind"]] = obj
        if was_created:
            created.append(f"{manifest['kind']}/{manifest['metadata']['name']}")
    return objects, created


def live_child_owner(event: Mapping[str, Any], body: Mapping[str, Any], kind: str) -> str | None:
    """The owner of `kind` of a child that was added or changed; None when it was deleted or has none."""
    return owner_name(body, kind) if event.get("type") != "DELETED" else None


def owner_name(body: Mapping[str, Any], kind: str) -> str | None:
    """Name of the controller owner of `kind` of a child object."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == kind:
            return ref.get("name")
    return None


async def read_judge_deployments(
    spec: FineTuneJobSpec | EvaluationSpec, namespace: str
) -> dict[str, ModelDeployment | None]:
    """The ModelDeployments a spec's judges name, read now (None: not found); one GET each, none without."""
    out: dict[str, ModelDeployment | None] = {}
    for name in sorted({ref.name for ref in judge_deployments(spec)}):
        body = await k8s.get_or_none("ModelDeployment", namespace, name)
        out[name] = ModelDeployment.model_validate(body) if body else None
    return out
