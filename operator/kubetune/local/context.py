"""What one `kubetune run` knows while it works through the plan (`Run`), shared by the executors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from kubetune import constants as c
from kubetune.api import ModelDeployment, Resource
from kubetune.local import plan as planning
from kubetune.local.children import Child
from kubetune.local.events import LossCurve
from kubetune.local.report import Served
from kubetune.local.state import RunsDir

RUN_CONFIG = "run-config.json"  # in each resource's folder: what its child process reads
PROGRESS = "progress.jsonl"  # in each resource's folder: what the trainer or evaluator reports


@dataclass
class Run:
    """Everything one `kubetune run` knows while it works through the plan."""

    runs: RunsDir
    console: Console
    manifest_path: str
    no_serve: bool = False
    no_wait: bool = False
    port: int = c.SERVE_PORT
    resources: dict[planning.Key, Resource] = field(default_factory=dict)  # with their latest status
    digests: dict[planning.Key, str] = field(default_factory=dict)
    curves: dict[planning.Key, LossCurve] = field(default_factory=dict)
    failed: set[planning.Key] = field(default_factory=set)
    servers: list[tuple[ModelDeployment, Child]] = field(default_factory=list)
    served: dict[planning.Key, Served] = field(default_factory=dict)
    items: dict[planning.Key, planning.Item] = field(default_factory=dict)

    def get(self, key: planning.Key) -> Resource | None:
        """The resource as this run left it, or as an earlier run did."""
        if key not in self.resources:
            saved, digest = self.runs.load(key)
            if saved is not None:
                self.resources[key] = saved
                self.digests[key] = digest or ""
        return self.resources.get(key)

    def get_as(self, key: planning.Key, cls: type[planning.R]) -> planning.R | None:
        """`get`, typed: the resource when it is a `cls` (the kind in `key` says so), else None."""
        found = self.get(key)
        return found if isinstance(found, cls) else None

    def save(self, item: planning.Item, resource: Resource, digest: str) -> None:
        self.resources[item.key] = resource
        self.digests[item.key] = digest
        self.runs.save(resource, digest)

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)


def with_status(resource: Resource, status: Any) -> Any:
    return resource.model_copy(update={"status": status})


def key_of(resource: Resource) -> planning.Key:
    return (resource.metadata.namespace or "default", resource.kind, resource.metadata.name)


def number_generation(resource: Resource, saved: Resource | None) -> None:
    """Give `resource` the metadata.generation an API server would: 1 the first time, one more whenever the
    spec differs from the one saved by the last run. The status then records it as observedGeneration."""
    if resource.metadata.generation is not None:
        return
    if saved is None:
        resource.metadata.generation = 1
        return
    before = saved.metadata.generation or 1
    resource.metadata.generation = before if saved.spec.to_k8s() == resource.spec.to_k8s() else before + 1
