"""The serving container's access settings: the API key (`spec.auth`) and the extra vLLM arguments
(`spec.extraArgs`), checked against the flags the operator sets. The NetworkPolicy: builders.network_policy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from kubetune.api.modeldeployment import ModelDeployment
from kubetune.api.serving_access import (
    ALWAYS_RESERVED,
    SERVE_API_KEY_ENV,
    VLLM_API_KEY_ENV,
    flag_name,
    normal_flag,
    reserved_flag_problem,
)
from kubetune.builders import pods
from kubetune.errors import SpecError

Runtime = Literal["vllm", "transformers"]


def api_key_env(deployment: ModelDeployment, runtime: Runtime) -> list[dict[str, Any]]:
    """The server's API key from the Secret (`spec.auth`): KUBETUNE_API_KEY for the built-in server, VLLM_API_KEY
    for vLLM (an environment variable, not `--api-key`, which vLLM would log with its arguments). None: []."""
    auth = deployment.spec.auth
    if auth is None:
        return []
    name = VLLM_API_KEY_ENV if runtime == "vllm" else SERVE_API_KEY_ENV
    return [pods.secret_env(name, auth.api_key_secret_ref)]


def extra_vllm_args(deployment: ModelDeployment, runtime: Runtime, operator_args: Sequence[str]) -> list[str]:
    """`spec.extraArgs` to append to vLLM's arguments; SpecError naming the item when one sets a flag the operator
    sets itself (`operator_args`, or one of ALWAYS_RESERVED), or when the server is not vLLM. Admission refuses
    what the spec alone shows (kubetune.api.serving_access.extra_args_problems); this also sees the flags that
    depend on what is served (an unmerged adapter's LoRA flags, a raw-text chat template)."""
    extra = list(deployment.spec.extra_args)
    if not extra:
        return []
    if runtime != "vllm":
        raise SpecError(
            "spec.extraArgs: extra arguments go to vLLM, and this deployment runs the built-in server "
            "(runtime transformers, or auto without GPUs); remove them or set spec.runtime: vllm"
        )
    taken = {normal_flag(f) for f in _flags(operator_args)} | set(ALWAYS_RESERVED)
    for i, arg in enumerate(extra):
        problem = reserved_flag_problem(arg, taken)
        if problem is not None:
            raise SpecError(f"spec.extraArgs[{i}]: {problem}")
    return extra


def _flags(args: Iterable[str]) -> list[str]:
    return [name for name in (flag_name(a) for a in args) if name]
