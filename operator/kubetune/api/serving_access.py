"""Who may call a ModelDeployment and how its server is started: `spec.auth`, `spec.networkPolicy`,
`spec.extraArgs` (the manifests: kubetune.builders.access, kubetune.builders.serving)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from kubetune.api import bounds
from kubetune.api.common import KubeModel, SecretKeyRef

# Environment variable holding the API key in a serving pod (the built-in server reads it; vLLM reads VLLM_API_KEY).
SERVE_API_KEY_ENV = "KUBETUNE_API_KEY"
VLLM_API_KEY_ENV = "VLLM_API_KEY"
EXTRA_ARGS_MAX = 64
EXTRA_ARG_MAX = 4096
NAMESPACES_MAX = 32

NamespaceName = Annotated[str, Field(min_length=1, max_length=bounds.DNS_LABEL_MAX, pattern=bounds.DNS_LABEL_PATTERN)]


class AuthSpec(KubeModel):
    api_key_secret_ref: SecretKeyRef = Field(
        description=(
            "Secret key holding the API key: requests to /v1/* need `Authorization: Bearer <key>` (the built-in "
            "server reads it as KUBETUNE_API_KEY, vLLM as VLLM_API_KEY); /health, /healthz and /metrics stay open."
        )
    )


class GatewayPeer(KubeModel):
    namespace: NamespaceName = Field(description="Namespace of the gateway's pods (e.g. envoy-gateway-system).")
    pod_labels: bounds.NodeSelector = Field(
        default_factory=dict,
        description="Labels of the gateway's pods; empty: every pod of that namespace.",
    )


class NetworkPolicySpec(KubeModel):
    same_namespace: bool = Field(default=True, description="Admit pods of the ModelDeployment's own namespace.")
    namespaces: list[NamespaceName] = Field(
        default_factory=list,
        max_length=NAMESPACES_MAX,
        description=f"Admit pods of these namespaces too (at most {NAMESPACES_MAX}).",
    )
    gateway: GatewayPeer | None = Field(default=None, description="Admit the gateway's pods (Gateway API, ingress).")
    monitoring_namespaces: list[NamespaceName] | None = Field(
        default=None,
        max_length=NAMESPACES_MAX,
        description=(
            "Namespaces whose Prometheus may scrape /metrics (on the serving port); "
            "default: the operator's monitoring namespace (Helm serving.monitoringNamespace)."
        ),
    )


ExtraArg = Annotated[str, Field(min_length=1, max_length=EXTRA_ARG_MAX)]
ExtraArgs = Annotated[list[ExtraArg], Field(max_length=EXTRA_ARGS_MAX)]


# Where an operator flag comes from, so a refused extra argument says what to change instead.
FLAG_SOURCES = {
    "--max-model-len": "spec.maxModelLen",
    "--tensor-parallel-size": "spec.resources.gpus",
    "--served-model-name": "spec.servedModelName",
    "--api-key": "spec.auth.apiKeySecretRef",
    "--model": "spec.model",
    "--enable-lora": "spec.adapters",
    "--max-loras": "spec.adapters",
    "--max-cpu-loras": "spec.adapters",
    "--max-lora-rank": "spec.adapters",
}
# Never taken from extraArgs, whatever the plan: the operator's port and address, and the key (only by Secret).
ALWAYS_RESERVED = ("--host", "--port", "--api-key", "--model", "--served-model-name")
ADAPTER_FLAGS = ("--enable-lora", "--max-loras", "--max-cpu-loras", "--max-lora-rank")


def served_runtime(runtime: str, gpus: int) -> Literal["vllm", "transformers"]:
    """The server a spec runs: `auto` is vLLM with GPUs, the built-in server without."""
    if runtime == "auto":
        return "vllm" if gpus > 0 else "transformers"
    return "vllm" if runtime == "vllm" else "transformers"


def normal_flag(flag: str) -> str:
    """vLLM's parser takes `--max_model_len` for `--max-model-len`."""
    return "--" + flag.lstrip("-").replace("_", "-")


def reserved_flag_problem(arg: str, taken: set[str]) -> str | None:
    """What is wrong with the extra argument `arg` when it sets one of the flags in `taken` (normalised)."""
    name = flag_name(arg)
    if name is None or normal_flag(name) not in taken:
        return None
    flag = normal_flag(name)
    source = FLAG_SOURCES.get(flag)
    hint = f"; set {source} instead" if source else "; remove it"
    return f"{flag} is set by the operator{hint}"


def extra_args_problems(
    extra_args: Sequence[str],
    *,
    runtime: Literal["vllm", "transformers"],
    gpus: int,
    max_model_len: int | None,
    adapters: bool,
) -> list[tuple[str, str]]:
    """(field path, message) for every `spec.extraArgs` item the spec alone shows the operator would refuse: any
    on the built-in server, and flags it sets itself whatever it serves (ALWAYS_RESERVED, `--max-model-len` with
    spec.maxModelLen, `--tensor-parallel-size` with several GPUs, the multi-LoRA flags with spec.adapters). What
    depends on the served checkpoint (an unmerged adapter's LoRA flags, a raw-text chat template) is the
    builder's to refuse (kubetune.builders.access)."""
    if not extra_args:
        return []
    if runtime != "vllm":
        return [
            (
                "spec.extraArgs",
                "extra arguments go to vLLM, and this deployment runs the built-in server (runtime transformers, "
                "or auto without GPUs); remove them or set spec.runtime: vllm",
            )
        ]
    taken: set[str] = set(ALWAYS_RESERVED)
    if max_model_len is not None:
        taken.add("--max-model-len")
    if gpus > 1:
        taken.add("--tensor-parallel-size")
    if adapters:
        taken.update(ADAPTER_FLAGS)
    found = ((i, reserved_flag_problem(arg, taken)) for i, arg in enumerate(extra_args))
    return [(f"spec.extraArgs[{i}]", problem) for i, problem in found if problem is not None]


def flag_name(arg: str) -> str | None:
    """`--max-model-len=4096` -> `--max-model-len`; a value (no leading '-') -> None."""
    if not arg.startswith("-"):
        return None
    return arg.split("=", 1)[0]
