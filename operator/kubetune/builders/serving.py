"""The serving workload of a ModelDeployment: apps/v1 Deployment + Service. Its status: kubetune.status.
Autoscaling (KEDA or HPA): builders.autoscaling; NetworkPolicy: builders.network_policy; PodMonitor: builders.monitoring.

Two runtimes:
- vLLM's OpenAI server (`runtime: vllm`, or `auto` with GPUs). A LoRA checkpoint is served merged:
  vLLM serves an adapter about a third slower than a merged model. An init container writes the
  merge once, beside the checkpoint (`<checkpoint>-merged`, skipped when it exists), with the claim
  writable for the init container only; the server mounts it read-only. With merging turned off in
  the operator settings the adapter is served with `--enable-lora` on its base model.
  A checkpoint trained on raw text prompts (its `status.checkpoints[].promptFormat`) is served as trained:
  `/v1/completions` takes the raw prompt (vLLM adds the tokenizer's special tokens, as training did), and
  `/v1/chat/completions` gets a chat template that prompts exactly one user message raw and refuses any
  other conversation (kubetune.data.promptformat).
- The trainer image's own OpenAI-compatible server (`kubetune-trainer serve`), for CPU serving; it
  loads base + adapter itself.

The checkpoint is in a pod-template annotation, so a promotion rolls the pods; `maxUnavailable: 0`
keeps the old checkpoint serving until the new one is ready (that needs room for one extra replica).
LoRA adapters listed in `spec.adapters` are not in the template (kubetune.builders.adapters): their promotions
change a ConfigMap only. A canary (kubetune.builders.canary) is a second Deployment of the same builder,
`track="canary"`, with its own labels, run config and Service.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlparse

from kubetune import constants as c
from kubetune.api.common import UriError
from kubetune.api.finetunejob import FineTuneJob, PromptFormatStatus
from kubetune.api.modeldeployment import ModelDeployment
from kubetune.api.runconfig import ServeRunConfig, StorageMap
from kubetune.builders import access, adapters, names, pods
from kubetune.builders.canary import ROLE_CANARY
from kubetune.builders.meta import child_metadata
from kubetune.builders.pods import PodSettings
from kubetune.builders.promotion import Decision
from kubetune.builders.runconfig import base_model_of, serve_run_config
from kubetune.builders.training import RUN_CONFIG_PATH, pod_storage_map
from kubetune.data.promptformat import RAW_TEXT, vllm_chat_template
from kubetune.errors import SpecError

Runtime = Literal["vllm", "transformers"]
Track = Literal["stable", "canary"]

SERVER_CONTAINER = "server"
MERGE_CONTAINER = "merge"
MERGED_SUFFIX = "-merged"
# vLLM accepts only these --max-lora-rank values.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class ServingSettings:
    """Operator settings for serving (from KUBETUNE_* environment variables, like PodSettings)."""

    vllm_image: str = "vllm/vllm-openai:v0.11.0"
    merge_adapters: bool = True  # serve one LoRA checkpoint merged (written once beside it)
    startup_timeout_seconds: int = 1800  # model download + load before the liveness probe starts


@dataclass(frozen=True)
class ServingPlan:
    """What the pods run: which runtime, which model, and whether it is an adapter on a base."""

    runtime: Runtime
    checkpoint: str
    model_uri: str  # the checkpoint (adapter or full model)
    base_model_uri: str | None  # set when model_uri is a LoRA adapter
    merged_uri: str | None  # vLLM + adapter + merging: where the merge is written (and served from)
    lora_rank: int | None = None
    prompt_format: PromptFormatStatus | None = None  # as the job's status records it for the checkpoint

    @property
    def served_uri(self) -> str:
        return self.merged_uri or self.model_uri


def serving_name(deployment: ModelDeployment) -> str:
    """Name of the Deployment and Service: the ModelDeployment's own (a DNS label, cut with a hash if long)."""
    name = deployment.metadata.name
    if len(name) <= names.MAX_NAME and names.DNS1035_LABEL.match(name):
        return name
    return names.dns_label_name(name, c.ROLE_SERVE)  # a Service name: no dots, starts with a letter


def workload_name(deployment: ModelDeployment, track: Track = "stable") -> str:
    """The Deployment (and Service) of a track: the stable one is serving_name, the canary `<name>-serve-canary`."""
    if track == "canary":
        return names.dns_label_name(deployment.metadata.name, ROLE_CANARY)
    return serving_name(deployment)


def config_map_name(deployment: ModelDeployment, track: Track = "stable") -> str:
    """`<name>-serve-config`: distinct from the `<name>-config` of a FineTuneJob of the same name."""
    role = ROLE_CANARY if track == "canary" else c.ROLE_SERVE
    return names.child_name(deployment.metadata.name, f"{role}-{c.ROLE_CONFIG}")


def endpoint(deployment: ModelDeployment) -> str:
    return f"http://{serving_name(deployment)}.{deployment.metadata.namespace or 'default'}.svc:{c.SERVE_PORT}/v1"


def served_model_name(deployment: ModelDeployment) -> str:
    return deployment.spec.served_model_name or deployment.metadata.name


def runtime_of(deployment: ModelDeployment) -> Runtime:
    spec = deployment.spec
    if spec.runtime == "auto":
        return "vllm" if spec.resources.gpus > 0 else "transformers"
    return spec.runtime


def plan(
    deployment: ModelDeployment, decision: Decision, job: FineTuneJob | None, settings: ServingSettings | None = None
) -> ServingPlan:
    """How to serve the checkpoint `decision` chose. A job's checkpoint is a LoRA adapter unless `adapter: none`."""
    settings = settings or ServingSettings()
    if decision.checkpoint is None or decision.uri is None:
        raise ValueError("nothing to serve: the decision names no checkpoint")
    runtime = runtime_of(deployment)
    from_job = deployment.spec.model.fine_tune_job is not None
    is_adapter = from_job and job is not None and job.spec.adapter.type != "none"
    if is_adapter and deployment.spec.adapters and job is not None:
        raise SpecError(
            f"spec.model: FineTuneJob {job.metadata.name!r} trains a LoRA adapter, but with spec.adapters spec.model "
            "is the base model they share: set spec.model.uri to the base (or a full fine-tune), and list "
            f"{job.metadata.name!r} under spec.adapters"
        )
    base = base_model_of(job) if is_adapter and job is not None else None
    merged = None
    if runtime == "vllm" and is_adapter and settings.merge_adapters:
        merged = decision.uri.rstrip("/") + MERGED_SUFFIX
    rank = job.spec.adapter.r if is_adapter and job is not None else None
    return ServingPlan(runtime, decision.checkpoint, decision.uri, base, merged, rank, _prompt_format(job, decision))


def _prompt_format(job: FineTuneJob | None, decision: Decision) -> PromptFormatStatus | None:
    """How the checkpoint was prompted in training, from the job's status; None when not recorded."""
    if job is None or job.status is None:
        return None
    entry = next((cp for cp in job.status.checkpoints if cp.name == decision.checkpoint), None)
    return entry.prompt_format if entry else None


def run_config(deployment: ModelDeployment, serving: ServingPlan) -> ServeRunConfig:
    """The trainer image's config: what `serve` serves, or what `merge` merges. Without the ModelDeployment's
    generation: the pods depend on what is served, not on every spec edit (an adapter's pin, a canary weight)."""
    cfg = serve_run_config(
        deployment,
        model_uri=serving.model_uri,
        base_model_uri=serving.base_model_uri,
        storage=pod_storage_map(),
        output_dir="/tmp/kubetune-serve",
        port=c.SERVE_PORT,
    )
    return cfg.model_copy(update={"job": cfg.job.model_copy(update={"generation": None})})


def _role(track: Track) -> str:
    return ROLE_CANARY if track == "canary" else c.ROLE_SERVE


def pod_labels(deployment: ModelDeployment, track: Track = "stable") -> dict[str, str]:
    return names.labels(c.LABEL_DEPLOYMENT, deployment.metadata.name, _role(track))


def selector(deployment: ModelDeployment, track: Track = "stable") -> dict[str, str]:
    """The Deployment's selector (immutable): a stable subset of the pod labels; the tracks never overlap."""
    labels = pod_labels(deployment, track)
    return {c.LABEL_DEPLOYMENT: labels[c.LABEL_DEPLOYMENT], c.LABEL_ROLE: _role(track)}


def all_tracks_selector(deployment: ModelDeployment) -> dict[str, Any]:
    """A label selector of the serving pods of both tracks (stable and canary): what is scraped and guarded."""
    return {
        "matchLabels": {c.LABEL_DEPLOYMENT: selector(deployment)[c.LABEL_DEPLOYMENT]},
        "matchExpressions": [{"key": c.LABEL_ROLE, "operator": "In", "values": [_role("stable"), _role("canary")]}],
    }


def build_config_map(deployment: ModelDeployment, serving: ServingPlan, track: Track = "stable") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(deployment, c.ROLE_CONFIG, name=config_map_name(deployment, track)),
        "data": {c.RUN_CONFIG_FILE: run_config(deployment, serving).dump()},
    }


def _local(uri: str, storage: StorageMap) -> str:
    try:
        path = storage.local_path(uri)
    except UriError as err:  # a pvc:// path that leaves its claim
        raise SpecError(str(err)) from err
    if path is None or not uri.startswith("pvc://"):
        raise SpecError(
            f"runtime vllm reads models from pvc:// or hf:// URIs, not {uri!r}; "
            "copy the model to a PVC, or set spec.runtime: transformers"
        )
    return str(path)


def _vllm_model_args(uri: str, storage: StorageMap) -> list[str]:
    """--model (and --revision) for vLLM: a hub id for hf://ORG/NAME[@REV], a mounted path for pvc://."""
    parsed = urlparse(uri)
    if parsed.scheme == "hf":
        repo, _, revision = f"{parsed.netloc}{parsed.path}".strip("/").partition("@")
        return ["--model", repo, *(["--revision", revision] if revision else [])]
    return ["--model", _local(uri, storage)]


def _vllm_args(
    deployment: ModelDeployment, serving: ServingPlan, pool: adapters.AdapterPool | None = None
) -> list[str]:
    storage = pod_storage_map()
    spec, name = deployment.spec, served_model_name(deployment)
    if pool is not None:  # the base, and adapters loaded at runtime by the sync sidecar
        args = [*_vllm_model_args(serving.served_uri, storage), "--served-model-name", name, *adapters.vllm_args(pool)]
    elif serving.base_model_uri and not serving.merged_uri:
        rank = next((r for r in VLLM_LORA_RANKS if r >= (serving.lora_rank or 16)), VLLM_LORA_RANKS[-1])
        args = [
            *_vllm_model_args(serving.base_model_uri, storage),
            "--served-model-name",
            f"{name}-base",
            "--enable-lora",
            "--lora-modules",
            f"{name}={_local(serving.model_uri, storage)}",
            "--max-lora-rank",
            str(rank),
        ]
    else:
        args = [*_vllm_model_args(serving.served_uri, storage), "--served-model-name", name]
    if serving.prompt_format is not None and serving.prompt_format.type == RAW_TEXT:
        template = vllm_chat_template(serving.prompt_format.prefix or "")
        args += ["--chat-template", template, "--chat-template-content-format", "string"]
    args += ["--host", "0.0.0.0", "--port", str(c.SERVE_PORT)]
    if spec.resources.gpus > 1:
        args += ["--tensor-parallel-size", str(spec.resources.gpus)]
    if spec.max_model_len:
        args += ["--max-model-len", str(spec.max_model_len)]
    return args + access.extra_vllm_args(deployment, "vllm", args)  # SpecError: a flag the operator sets


def _probes(path: str, settings: ServingSettings) -> dict[str, Any]:
    """startup (generous: the model loads), then readiness (in rotation) and liveness (restart if hung)."""
    http = {"httpGet": {"path": path, "port": "http"}}
    return {
        "startupProbe": {
            **http,
            "periodSeconds": 10,
            "failureThreshold": max(settings.startup_timeout_seconds // 10, 1),
        },
        "readinessProbe": {**http, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**http, "periodSeconds": 20, "timeoutSeconds": 10, "failureThreshold": 3},
    }


def _env(
    deployment: ModelDeployment, job: FineTuneJob | None, runtime: Runtime, with_adapters: bool = False
) -> list[dict[str, Any]]:
    env = pods.process_env()
    if runtime == "vllm":
        env += [{"name": "VLLM_NO_USAGE_STATS", "value": "1"}, {"name": "DO_NOT_TRACK", "value": "1"}]
        if with_adapters:
            env.append(adapters.VLLM_RUNTIME_UPDATES_ENV)
    else:
        env += [{"name": c.ENV_RUN_CONFIG, "value": RUN_CONFIG_PATH}, *pods.downward_env()]
    if job is not None and job.spec.base_model.token_secret_ref:
        env.append(pods.secret_env(c.ENV_HF_TOKEN, job.spec.base_model.token_secret_ref))
    return env + access.api_key_env(deployment, runtime) + pods.user_env(deployment.spec.env)


def _config_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_deployment(
    deployment: ModelDeployment,
    serving: ServingPlan,
    job: FineTuneJob | None,
    pod_settings: PodSettings | None = None,
    settings: ServingSettings | None = None,
    *,
    track: Track = "stable",
    replicas: int | None = None,
    pool: adapters.AdapterPool | None = None,
) -> dict[str, Any]:
    """The apps/v1 Deployment serving `serving.checkpoint`; owned by the ModelDeployment.

    `track`: the stable Deployment or the canary; `replicas`: instead of spec.replicas (a canary's share);
    `pool`: spec.adapters' pool (the template depends on it, never on the adapters' checkpoints)."""
    pod_settings, settings = pod_settings or PodSettings(), settings or ServingSettings()
    spec, res = deployment.spec, deployment.spec.resources
    trainer_image = (job.spec.image if job is not None else "") or pod_settings.trainer_image
    claims = pods.pvc_claims([serving.model_uri, serving.merged_uri, serving.base_model_uri])
    for claim in pool.claims if pool is not None else ():
        if claim not in claims:
            claims.append(claim)
    merge_claims = pods.pvc_claims([serving.merged_uri]) if serving.merged_uri else []
    # Pod volumes writable only where the merge is written; every server mount is read-only.
    volumes, merge_mounts = pods.claim_volumes(claims, writable=merge_claims)
    _, ro_mounts = pods.claim_volumes(claims)
    scratch_vols, scratch_mounts = pods.scratch_volumes()
    config_volume = {"name": "run-config", "configMap": {"name": config_map_name(deployment, track)}}
    config_mount = {"name": "run-config", "mountPath": c.RUN_CONFIG_MOUNT, "readOnly": True}
    env = _env(deployment, job, serving.runtime, with_adapters=pool is not None)

    if serving.runtime == "vllm":
        server: dict[str, Any] = {
            "name": SERVER_CONTAINER,
            "image": spec.image or settings.vllm_image,
            "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
            "args": _vllm_args(deployment, serving, pool),
            **_probes("/health", settings),
        }
        mounts = [*ro_mounts, *scratch_mounts]
    else:
        access.extra_vllm_args(deployment, serving.runtime, [])  # SpecError: extraArgs are vLLM's
        server = {
            "name": SERVER_CONTAINER,
            "image": spec.image or trainer_image,
            "command": [
                "kubetune-trainer",
                "serve",
                "--config",
                RUN_CONFIG_PATH,
                *(["--enable-lora"] if pool is not None else []),
            ],
            **_probes("/healthz", settings),
        }
        mounts = [config_mount, *ro_mounts, *scratch_mounts]
    server.update(
        imagePullPolicy=pod_settings.image_pull_policy,
        ports=[{"name": "http", "containerPort": c.SERVE_PORT, "protocol": "TCP"}],
        env=env,
        resources=pods.container_resources(res),
        volumeMounts=mounts,
        securityContext=pods.container_security_context(),
    )
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": pods.pod_security_context(pod_settings),
        "containers": [server],
        "volumes": [*volumes, *scratch_vols],
        **pods.scheduling(res),
    }
    if serving.runtime == "transformers" or serving.merged_uri:
        pod_spec["volumes"].append(config_volume)
    if pool is not None:
        # The sidecar calls the server with its API key, whichever variable the runtime reads it from.
        sync_env = [e for e in env if e["name"] in ("HOME", "PYTHONUNBUFFERED")] + [
            {**e, "name": "KUBETUNE_API_KEY"} for e in env if e["name"] in ("KUBETUNE_API_KEY", "VLLM_API_KEY")
        ]
        pod_spec["containers"].append(adapters.sync_container(trainer_image, pod_settings.image_pull_policy, sync_env))
        pod_spec["volumes"].append(adapters.volume(deployment))
    if serving.merged_uri:
        storage = pod_storage_map()
        merge_env = [e for e in env if e["name"] in ("HF_HOME", "HOME", c.ENV_HF_TOKEN, "PYTHONUNBUFFERED")]
        pod_spec["initContainers"] = [
            {
                "name": MERGE_CONTAINER,
                "image": trainer_image,
                "imagePullPolicy": pod_settings.image_pull_policy,
                "command": [
                    "kubetune-trainer",
                    "merge",
                    "--config",
                    RUN_CONFIG_PATH,
                    "--out",
                    _local(serving.merged_uri, storage),
                ],
                "env": merge_env,
                # The merge runs on CPU: the base model in memory, once.
                "resources": {
                    "requests": {"cpu": str(res.cpu), "memory": str(res.memory)},
                    "limits": {"memory": str(res.memory)},
                },
                "volumeMounts": [config_mount, *merge_mounts, *scratch_mounts],
                "securityContext": pods.container_security_context(),
            }
        ]
    annotations = {
        c.ANNOTATION_CHECKPOINT: serving.checkpoint,
        c.ANNOTATION_MODEL_URI: serving.served_uri,
        c.ANNOTATION_SPEC_HASH: _config_hash(pod_spec, run_config(deployment, serving).to_k8s()),
    }
    dep_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(deployment, track)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "revisionHistoryLimit": 5,
        "template": {
            "metadata": {"labels": pod_labels(deployment, track), "annotations": annotations},
            "spec": pod_spec,
        },
    }
    if replicas is not None:
        dep_spec["replicas"] = replicas
    elif spec.autoscaling is None:
        dep_spec["replicas"] = spec.replicas  # with an HPA the replica count is the HPA's, never set here
    meta = child_metadata(deployment, _role(track), name=workload_name(deployment, track))
    meta["annotations"] = {c.ANNOTATION_CHECKPOINT: serving.checkpoint}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": dep_spec}


def build_service(deployment: ModelDeployment, track: Track = "stable", *, both_tracks: bool = False) -> dict[str, Any]:
    """ClusterIP Service on port 8000 (`http`): the OpenAI-compatible endpoint of a track. `both_tracks`: the
    one Service selects stable and canary pods (a canary split by replica proportion)."""
    chosen = (
        {c.LABEL_DEPLOYMENT: selector(deployment)[c.LABEL_DEPLOYMENT]} if both_tracks else selector(deployment, track)
    )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(deployment, _role(track), name=workload_name(deployment, track)),
        "spec": {
            "type": "ClusterIP",
            "selector": chosen,
            "ports": [{"name": "http", "port": c.SERVE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
