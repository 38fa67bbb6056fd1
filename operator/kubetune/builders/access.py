"""The serving container's access settings: the API key (`spec.auth`) and the extra vLLM arguments
(`spec.extraArgs`), checked against the flags the operator sets. The NetworkPolicy: builders.network_policy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from kubetune.api.modeldeployment import ModelDeployment
from kubetune.api.serving_access import SERVE_API_KEY_ENV, VLLM_API_KEY_ENV, flag_name
from kubetune.builders import pods
from kubetune.errors import SpecError

Runtime = Literal["vllm", "transformers"]
# Where an operator flag comes from, so a refused extra argument says what to change instead.
FLAG_SOURCES = {
    "--max-model-len": "spec.maxModelLen",
    "--tensor-parallel-size": "spec.resources.gpus",
    "--served-model-name": "spec.servedModelName",
    "--api-key": "spec.auth.apiKeySecretRef",
    "--model": "spec.model",
}
# Never taken from extraArgs, whatever the plan: the operator's port and address, and the key (only by Secret).
ALWAYS_RESERVED = ("--host", "--port", "--api-key", "--model", "--served-model-name")


def api_key_env(deployment: ModelDeployment, runtime: Runtime) -> list[dict[str, Any]]:
    """The server's API key from the Secret (`spec.auth`): KUBETUNE_API_KEY for the built-in server, VLLM_API_KEY
    for vLLM (an environment variable, not `--api-key`, which vLLM would log with its arguments). None: []."""
    auth = deployment.spec.auth
    if auth is None:
        return []
    name = VLLM_API_KEY_ENV if runtime == "vllm" else SERVE_API_KEY_ENV
    return [pods.secret_env(name, auth.api_key_secret_ref)]


def _normal(flag: str) -> str:
    """vLLM's parser takes `--max_model_len` for `--max-model-len`."""
    return "--" + flag.lstrip("-").replace("_", "-")


def extra_vllm_args(deployment: ModelDeployment, runtime: Runtime, operator_args: Sequence[str]) -> list[str]:
    """`spec.extraArgs` to append to vLLM's arguments; SpecError naming the item when one sets a flag the operator
    sets itself (`operator_args`, or one of ALWAYS_RESERVED), or when the server is not vLLM."""
    extra = list(deployment.spec.extra_args)
    if not extra:
        return []
    if runtime != "vllm":
        raise SpecError(
            "spec.extraArgs: extra arguments go to vLLM, and this deployment runs the built-in server "
            "(runtime transformers, or auto without GPUs); remove them or set spec.runtime: vllm"
        )
    taken = {_normal(f) for f in _flags(operator_args)} | set(ALWAYS_RESERVED)
    for i, arg in enumerate(extra):
        name = flag_name(arg)
        if name is None or _normal(name) not in taken:
            continue
        flag = _normal(name)
        source = FLAG_SOURCES.get(flag)
        hint = f"; set {source} instead" if source else "; remove it"
        raise SpecError(f"spec.extraArgs[{i}]: {flag} is set by the operator{hint}")
    return extra


def _flags(args: Iterable[str]) -> list[str]:
    return [name for name in (flag_name(a) for a in args) if name]
