"""LoRA adapters on one served base model (`spec.adapters`): per-adapter promotion, the adapter set, the sync sidecar.

Each adapter is promoted exactly as a whole ModelDeployment is (`promotion.decide` on a view of the deployment
whose model, promotion and status are the adapter's), so pin, rollback and auto roll-forward work per adapter.
What the adapters serve goes to a ConfigMap (`<name>-serve-adapters`, `adapters.json`: name -> path in the pod),
never to the pod template: the kubelet refreshes the mounted file, and the `adapters-sync` sidecar
(`kubetune-trainer serve-adapters-sync`) loads and unloads adapters through the server's runtime endpoints
(vLLM's `/v1/load_lora_adapter` / `/v1/unload_lora_adapter`, which the built-in server speaks too) until its
`/v1/models` matches. The pod template depends only on the adapter *pool*: how many (vLLM `--max-loras`), the
largest rank (`--max-lora-rank`) and which claims to mount; so a promotion restarts nothing, and adding an
adapter from a new PVC or of a higher rank rolls the pods once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlparse

from kubetune import constants as c
from kubetune.api.evaluation import Evaluation
from kubetune.api.finetunejob import FineTuneJob
from kubetune.api.modeldeployment import (
    AdapterSpec,
    AdapterStatus,
    DeployModelRef,
    ModelDeployment,
    ModelDeploymentStatus,
)
from kubetune.builders import names, pods
from kubetune.builders.meta import child_metadata
from kubetune.builders.promotion import Decision, decide, next_revisions
from kubetune.builders.runconfig import base_model_of
from kubetune.builders.training import pod_storage_map

ADAPTERS_FILE = "adapters.json"
ADAPTERS_MOUNT = "/etc/kubetune/adapters"
ADAPTERS_VOLUME = "adapters"
SYNC_CONTAINER = "adapters-sync"
ROLE_ADAPTERS = f"{c.ROLE_SERVE}-adapters"
DEFAULT_RANK = 16  # an adapter given by URI: its rank is not known to the operator
# vLLM accepts only these --max-lora-rank values.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class AdapterSource:
    """One `spec.adapters[index]` with the objects it promotes from, as read now."""

    index: int
    spec: AdapterSpec
    job: FineTuneJob | None = None
    evaluation: Evaluation | None = None
    missing_claims: tuple[str, ...] = ()  # of `claims(...)`, those the namespace does not have (read by the caller)


@dataclass(frozen=True)
class AdapterOutcome:
    """What one adapter serves after this reconcile; `error`: why it cannot be served (a field path first)."""

    name: str
    decision: Decision
    error: str | None
    status: AdapterStatus
    reason: str = c.Reason.ADAPTER_INCOMPATIBLE  # the Warning Event's reason when `error` is set

    @property
    def served_uri(self) -> str | None:
        return None if self.error else self.status.served_uri


@dataclass(frozen=True)
class AdapterPool:
    """What the pod template depends on: the adapter count, the largest rank, the claims to mount."""

    count: int
    max_rank: int
    claims: tuple[str, ...]

    @property
    def vllm_rank(self) -> int:
        return next((r for r in VLLM_LORA_RANKS if r >= self.max_rank), VLLM_LORA_RANKS[-1])


def view(deployment: ModelDeployment, adapter: AdapterSpec, status: AdapterStatus | None) -> ModelDeployment:
    """The deployment as one adapter sees it: the adapter's source as spec.model, its promotion, its status."""
    spec = deployment.spec.model_copy(
        update={
            "model": DeployModelRef(fine_tune_job=adapter.fine_tune_job, uri=adapter.uri),
            "promotion": adapter.promotion,
            "adapters": [],
        }
    )
    previous = status or AdapterStatus(name=adapter.name)
    md_status = ModelDeploymentStatus(
        served_checkpoint=previous.served_checkpoint, served_uri=previous.served_uri, revisions=previous.revisions
    )
    return deployment.model_copy(update={"spec": spec, "status": md_status})


def _strip(uri: str) -> str:
    return uri.rstrip("/")


def incompatible(source: AdapterSource, base_uri: str | None) -> str | None:
    """Why the adapter's FineTuneJob cannot be served on this base (None when it can, or is not known yet)."""
    ref, job = source.spec.fine_tune_job, source.job
    if ref is None or job is None:
        return None
    where = f"spec.adapters[{source.index}].fineTuneJob"
    if job.spec.adapter.type == "none":
        return (
            f"{where}: FineTuneJob {ref.name!r} is a full fine-tune (adapter: none), not a LoRA adapter; "
            "serve it from its own ModelDeployment, or train it with adapter.type lora/qlora"
        )
    trained_on = base_model_of(job)
    if base_uri and trained_on and _strip(trained_on) != _strip(base_uri):
        return (
            f"{where}: FineTuneJob {ref.name!r} was trained on {trained_on}, but this deployment serves "
            f"{base_uri} (spec.model); an adapter only works on the base it was trained on"
        )
    return None


LOADABLE_SCHEMES = ("pvc", "hf")  # what the server's /v1/load_lora_adapter can read: a mounted path, a Hub repo


def unloadable(source: AdapterSource) -> str | None:
    """Why an adapter URI cannot be loaded as written: the runtime loads a path in the pod (pvc://) or a Hub
    repository (hf://, at its main revision); None when it can."""
    uri, where = source.spec.uri, f"spec.adapters[{source.index}].uri"
    if uri is None:
        return None
    scheme = urlparse(uri).scheme
    if scheme not in LOADABLE_SCHEMES:
        return (
            f"{where}: {uri} cannot be loaded by the serving runtime (it reads pvc:// and hf:// adapters); "
            "copy the adapter to a PVC, or train it with a FineTuneJob and name that under fineTuneJob"
        )
    if scheme == "hf" and "@" in uri:
        return f"{where}: {uri}: a Hub revision (@...) cannot be loaded at runtime; name the repository without it"
    return None


ADAPTER_NOT_FOUND = "AdapterNotFound"  # spec.adapters[i].fineTuneJob names a FineTuneJob that does not exist
ADAPTER_CLAIM_NOT_FOUND = "AdapterClaimNotFound"  # an adapter's PersistentVolumeClaim does not exist


def claims(source: AdapterSource) -> list[str]:
    """The claims an adapter mounts when served: its FineTuneJob's storage claim, or the claim of its pvc:// URI."""
    uris = [f"pvc://{names.job_claim_name(source.job)}/"] if source.job is not None else [source.spec.uri]
    return pods.pvc_claims(uris)


def unavailable(source: AdapterSource) -> tuple[str, str] | None:
    """(reason, message) when what the adapter is read from does not exist: its FineTuneJob, or its claim (left
    out and not mounted, so that adding it does not roll the pods before the claim exists)."""
    ref = source.spec.fine_tune_job
    if ref is not None and source.job is None:
        return ADAPTER_NOT_FOUND, (
            f"spec.adapters[{source.index}].fineTuneJob: FineTuneJob {ref.name!r} not found in this namespace; "
            "the adapter is served once it exists"
        )
    if source.missing_claims:
        where = "fineTuneJob" if ref is not None else "uri"
        listed = ", ".join(repr(claim) for claim in source.missing_claims)
        return ADAPTER_CLAIM_NOT_FOUND, (
            f"spec.adapters[{source.index}].{where}: PersistentVolumeClaim {listed} not found in this namespace; "
            "the adapter is not mounted (the pods do not change) until it exists"
        )
    return None


def _at_adapter(decision: Decision, index: int) -> Decision:
    """The decision's message with the adapter's field paths (spec.adapters[i].promotion.pin, not spec.promotion)."""
    where = f"spec.adapters[{index}]"
    message = decision.message.replace("spec.promotion.", f"{where}.promotion.").replace("spec.model.", f"{where}.")
    return replace(decision, message=message)


def decide_adapters(
    deployment: ModelDeployment, sources: list[AdapterSource], base_uri: str | None, now: str
) -> list[AdapterOutcome]:
    """Each adapter's promotion decision, compatibility and next status."""
    previous = {a.name: a for a in (deployment.status.adapters if deployment.status else [])}
    out = []
    for source in sources:
        name = source.spec.name
        before = previous.get(name)
        decision = _at_adapter(
            decide(view(deployment, source.spec, before), source.evaluation, source.job), source.index
        )
        reason, error = c.Reason.ADAPTER_INCOMPATIBLE, unloadable(source)
        if error is None and (gone := unavailable(source)) is not None:
            reason, error = gone
        error = error or incompatible(source, base_uri)
        if error is not None:
            status = AdapterStatus(name=name, message=error, revisions=before.revisions if before else [])
            out.append(AdapterOutcome(name, decision, error, status, reason))
            continue
        revisions = next_revisions(view(deployment, source.spec, before).status, decision, now)
        status = AdapterStatus.model_validate(
            {
                "name": name,
                "servedCheckpoint": decision.checkpoint,
                "servedUri": decision.uri,
                "message": decision.message,
                "revisions": revisions,
            }
        )
        out.append(AdapterOutcome(name, decision, None, status))
    return out


def adapter_pool(
    deployment: ModelDeployment, sources: list[AdapterSource], outcomes: list[AdapterOutcome]
) -> AdapterPool:
    """The template inputs: one claim per adapter job (its storage claim, whatever checkpoint it serves).

    Only adapters that are served or can be (a compatible FineTuneJob that exists, a URI) count: one left out of
    the served set (incompatible, its FineTuneJob missing) neither raises --max-loras nor mounts its claim."""
    claims: list[str] = []
    rank, count = 0, 0
    for source, outcome in zip(sources, outcomes, strict=True):
        job = source.job
        if outcome.error is not None or (source.spec.fine_tune_job is not None and job is None):
            continue
        count += 1
        uris = [outcome.served_uri]
        if job is not None:
            uris.insert(0, f"pvc://{names.job_claim_name(job)}/")
            rank = max(rank, job.spec.adapter.r)
        else:
            rank = max(rank, DEFAULT_RANK)
        for claim in pods.pvc_claims(uris):
            if claim not in claims:
                claims.append(claim)
    return AdapterPool(count, rank or DEFAULT_RANK, tuple(claims))


def pod_path(uri: str) -> str:
    """Where the server finds an adapter: the mounted path of a pvc:// URI, the repository of an hf:// one."""
    parsed = urlparse(uri)
    if parsed.scheme == "hf":
        return f"{parsed.netloc}{parsed.path}".strip("/").partition("@")[0]
    path = pod_storage_map().local_path(uri)
    return str(path) if path is not None else uri


def adapter_set(outcomes: list[AdapterOutcome]) -> dict[str, str]:
    """name -> path in the pod, for every adapter that has something to serve."""
    return {o.name: pod_path(o.served_uri) for o in outcomes if o.served_uri}


def config_map_name(deployment: ModelDeployment) -> str:
    return names.child_name(deployment.metadata.name, ROLE_ADAPTERS)


def build_config_map(deployment: ModelDeployment, served: dict[str, str]) -> dict[str, Any]:
    """`<name>-serve-adapters`: the adapter set the sync sidecar makes the server load (sorted, so stable)."""
    body = {"adapters": [{"name": n, "path": p} for n, p in sorted(served.items())]}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(deployment, ROLE_ADAPTERS, name=config_map_name(deployment)),
        "data": {ADAPTERS_FILE: json.dumps(body, indent=2, sort_keys=True) + "\n"},
    }


def volume(deployment: ModelDeployment) -> dict[str, Any]:
    """The adapter set, mounted as a directory (not subPath) so the kubelet refreshes it in place."""
    return {"name": ADAPTERS_VOLUME, "configMap": {"name": config_map_name(deployment)}}


def sync_container(image: str, pull_policy: str, env: list[dict[str, Any]]) -> dict[str, Any]:
    """The sidecar that keeps the server's loaded adapters equal to the mounted adapter set."""
    return {
        "name": SYNC_CONTAINER,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": [
            "kubetune-trainer",
            "serve-adapters-sync",
            "--adapters",
            f"{ADAPTERS_MOUNT}/{ADAPTERS_FILE}",
            "--server",
            f"http://127.0.0.1:{c.SERVE_PORT}",
        ],
        "env": env,
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": ADAPTERS_VOLUME, "mountPath": ADAPTERS_MOUNT, "readOnly": True}],
        "securityContext": pods.container_security_context(),
    }


def vllm_args(pool: AdapterPool) -> list[str]:
    """vLLM's multi-LoRA flags: every adapter may be resident on the GPU and in CPU memory at once."""
    return [
        "--enable-lora",
        "--max-loras",
        str(max(pool.count, 1)),
        "--max-cpu-loras",
        str(max(pool.count, 1)),
        "--max-lora-rank",
        str(pool.vllm_rank),
    ]


VLLM_RUNTIME_UPDATES_ENV = {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"}
