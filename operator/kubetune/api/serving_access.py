"""Who may call a ModelDeployment and how its server is started: `spec.auth`, `spec.networkPolicy`,
`spec.extraArgs` (the manifests: kubetune.builders.access, kubetune.builders.serving)."""

from __future__ import annotations

from typing import Annotated

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


def flag_name(arg: str) -> str | None:
    """`--max-model-len=4096` -> `--max-model-len`; a value (no leading '-') -> None."""
    if not arg.startswith("-"):
        return None
    return arg.split("=", 1)[0]
