"""Operator settings: KUBETUNE_* environment variables (the Helm chart sets them; `kubetune operator`
flags set them too). Read once, in the startup handler (`controllers.main.configure`), which keeps them in
Kopf's memo (`common.OperatorState.config`); except the resync interval of the Kopf timers, which Kopf
fixes when the handler modules are imported."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from kubetune import constants as c
from kubetune.builders.autoscaling import ScalingSettings
from kubetune.builders.meta import Propagation
from kubetune.builders.pods import PodSettings
from kubetune.builders.serving import ServingSettings

P = c.ENV_OPERATOR_PREFIX
# Every variable `OperatorConfig.from_env` reads (KUBETUNE_NAMESPACES goes to Kopf: see main.kopf_args).
ENV_TRAINER_IMAGE = f"{P}TRAINER_IMAGE"
ENV_IMAGE_PULL_POLICY = f"{P}IMAGE_PULL_POLICY"
ENV_STORAGE_CLASS = f"{P}STORAGE_CLASS"
ENV_PROGRESS_INTERVAL_SECONDS = f"{P}PROGRESS_INTERVAL_SECONDS"
ENV_VLLM_IMAGE = f"{P}VLLM_IMAGE"
ENV_MERGE_ADAPTERS = f"{P}MERGE_ADAPTERS"
ENV_SERVE_STARTUP_SECONDS = f"{P}SERVE_STARTUP_SECONDS"
ENV_METRICS_PORT = f"{P}METRICS_PORT"
ENV_SOURCE_POLL_SECONDS = f"{P}SOURCE_POLL_SECONDS"
ENV_RESYNC_SECONDS = f"{P}RESYNC_SECONDS"
# Multi-node training on JobSet: "auto" (default) uses it when the cluster serves JobSets (discovered at start),
# "false" never does (the Helm chart sets it when jobset.enabled is off, so no JobSet RBAC is granted).
ENV_JOBSET = f"{P}JOBSET"
# Governance (builders.meta.Propagation): labels and annotations every child object carries (JSON objects),
# and the prefixes of the resource annotations passed on to children (comma-separated).
ENV_DEFAULT_LABELS = f"{P}DEFAULT_LABELS"
ENV_DEFAULT_ANNOTATIONS = f"{P}DEFAULT_ANNOTATIONS"
ENV_PROPAGATE_ANNOTATION_PREFIXES = f"{P}PROPAGATE_ANNOTATION_PREFIXES"

DEFAULT_RESYNC_SECONDS = 60.0
DEFAULT_SOURCE_POLL_SECONDS = 15.0


def _flag(value: str | None, default: bool) -> bool:
    """true unless 0/false/no (any case); unset or empty: `default`."""
    return value.lower() not in ("0", "false", "no") if value else default


def _string_map(name: str, value: str | None) -> dict[str, str]:
    """A JSON object of strings (`{"team": "travel"}`); unset or empty: {}. Raises ValueError naming `name`."""
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f'{name}: not JSON ({err.msg}); give an object such as {{"team": "travel"}}') from err
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise ValueError(f'{name}: must be a JSON object of string values, such as {{"team": "travel"}}')
    return {str(k): v for k, v in parsed.items()}


def _propagation(env: Mapping[str, str]) -> Propagation:
    prefixes = env.get(ENV_PROPAGATE_ANNOTATION_PREFIXES)
    return Propagation(
        default_labels=_string_map(ENV_DEFAULT_LABELS, env.get(ENV_DEFAULT_LABELS)),
        default_annotations=_string_map(ENV_DEFAULT_ANNOTATIONS, env.get(ENV_DEFAULT_ANNOTATIONS)),
        annotation_prefixes=(
            tuple(p.strip() for p in prefixes.split(",") if p.strip())
            if prefixes is not None
            else Propagation().annotation_prefixes
        ),
    )


@dataclass(frozen=True)
class OperatorConfig:
    pods: PodSettings = field(default_factory=PodSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    metrics_port: int = c.METRICS_PORT  # 0 disables /metrics
    source_poll_seconds: float = DEFAULT_SOURCE_POLL_SECONDS  # how often a continued job checks its source job
    # Safety net behind the watch events: how often every Evaluation and ModelDeployment is reconciled anyway.
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    jobset_allowed: bool = True  # KUBETUNE_JOBSET is not false: use JobSet where the cluster serves it
    scaling: ScalingSettings = field(default_factory=ScalingSettings)  # KEDA, PodMonitor, NetworkPolicy defaults
    propagation: Propagation = field(default_factory=Propagation)  # labels/annotations every child carries

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """The settings from KUBETUNE_* variables (`env`, default os.environ); unset or empty: the default."""
        env = os.environ if env is None else env
        pod_defaults, serve_defaults = PodSettings(), ServingSettings()
        pods = PodSettings(
            trainer_image=env.get(ENV_TRAINER_IMAGE) or pod_defaults.trainer_image,
            image_pull_policy=env.get(ENV_IMAGE_PULL_POLICY) or pod_defaults.image_pull_policy,
            storage_class_name=env.get(ENV_STORAGE_CLASS) or None,
            progress_interval_seconds=float(
                env.get(ENV_PROGRESS_INTERVAL_SECONDS) or pod_defaults.progress_interval_seconds
            ),
        )
        serving = ServingSettings(
            vllm_image=env.get(ENV_VLLM_IMAGE) or serve_defaults.vllm_image,
            merge_adapters=_flag(env.get(ENV_MERGE_ADAPTERS), serve_defaults.merge_adapters),
            startup_timeout_seconds=int(env.get(ENV_SERVE_STARTUP_SECONDS) or serve_defaults.startup_timeout_seconds),
        )
        return cls(
            pods=pods,
            serving=serving,
            metrics_port=int(env.get(ENV_METRICS_PORT) or c.METRICS_PORT),
            source_poll_seconds=float(env.get(ENV_SOURCE_POLL_SECONDS) or DEFAULT_SOURCE_POLL_SECONDS),
            resync_seconds=float(env.get(ENV_RESYNC_SECONDS) or DEFAULT_RESYNC_SECONDS),
            jobset_allowed=_flag(env.get(ENV_JOBSET), True),
            scaling=ScalingSettings.from_env(env),
            propagation=_propagation(env),
        )


def timer_interval() -> float:
    """`resync_seconds` for `@kopf.timer(interval=...)`, read when a handler module is imported.

    Kopf takes a timer's interval at registration, before any startup handler runs; `kubetune operator`
    sets the variable from `--resync-seconds` before Kopf imports the handlers, so the flag still counts.
    """
    return OperatorConfig.from_env().resync_seconds
