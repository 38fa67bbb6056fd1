"""Operator settings: KUBETUNE_* environment variables (the Helm chart sets them; `kubetune operator`
flags set them too). Read once at startup."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from kubetune import constants as c
from kubetune.builders.pods import PodSettings


@dataclass(frozen=True)
class OperatorConfig:
    pods: PodSettings = field(default_factory=PodSettings)
    metrics_port: int = c.METRICS_PORT  # 0 disables /metrics
    source_poll_seconds: float = 15.0  # how often a continued job checks whether its source job is done

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorConfig:
        env = dict(os.environ if env is None else env)
        p = c.ENV_OPERATOR_PREFIX
        pods = PodSettings(
            trainer_image=env.get(f"{p}TRAINER_IMAGE") or c.DEFAULT_TRAINER_IMAGE,
            image_pull_policy=env.get(f"{p}IMAGE_PULL_POLICY") or "IfNotPresent",
            storage_class_name=env.get(f"{p}STORAGE_CLASS") or None,
            progress_interval_seconds=float(env.get(f"{p}PROGRESS_INTERVAL_SECONDS") or 10.0),
        )
        return cls(
            pods=pods,
            metrics_port=int(env.get(f"{p}METRICS_PORT") or c.METRICS_PORT),
            source_poll_seconds=float(env.get(f"{p}SOURCE_POLL_SECONDS") or 15.0),
        )


current = OperatorConfig()


def load() -> OperatorConfig:
    global current
    current = OperatorConfig.from_env()
    return current
