"""What `kubetune run PATH` will do: the resources of a file or folder, in dependency order.

A FineTuneJob comes after the job it continues from (`baseModel.fromJob`), an Evaluation after the
job it scores, a ModelDeployment after its job and its promotion Evaluation, and a FineTuneJob or an
Evaluation whose judge a ModelDeployment serves after that ModelDeployment (served until the run ends). A reference to something
that is neither in PATH nor finished in an earlier run, or a cycle, is an error before anything starts.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from kubetune import constants as c
from kubetune.api import Evaluation, FineTuneJob, ModelDeployment, Resource
from kubetune.api.admission import admit_all
from kubetune.api.manifests import NoObjectsError, iter_documents
from kubetune.builders.runconfig import judge_deployments

MANIFEST_SUFFIXES = (".yaml", ".yml")
KIND_ORDER = {c.FINETUNEJOB: 0, c.EVALUATION: 1, c.MODELDEPLOYMENT: 2}

# (namespace, kind, name): how resources refer to each other (references never cross namespaces).
Key = tuple[str, str, str]
R = TypeVar("R", FineTuneJob, Evaluation, ModelDeployment)


@dataclass(frozen=True)
class Item:
    """One resource of the plan, with where it came from (relative paths resolve against `base_dir`)."""

    resource: Resource
    source: str
    base_dir: Path

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def name(self) -> str:
        return self.resource.metadata.name

    @property
    def namespace(self) -> str:
        return self.resource.metadata.namespace or "default"

    @property
    def key(self) -> Key:
        return (self.namespace, self.kind, self.name)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def resource_as(self, cls: type[R]) -> R:
        """The resource as the kind its executor handles (executors are chosen by kind, so this holds)."""
        if not isinstance(self.resource, cls):
            raise TypeError(f"{self}: a {cls.__name__} executor was given a {self.kind}")
        return self.resource


@dataclass(frozen=True)
class Dependency:
    key: Key
    field: str  # the spec field that refers to it, for error messages


@dataclass
class PlanError(Exception):
    """Problems that stop the run before anything starts; one line each, naming file and field."""

    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.errors)


def manifest_files(path: Path) -> list[Path]:
    """PATH itself, or the YAML files directly inside the folder (not its subfolders), sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise PlanError([f"{path}: no such file or folder"])
    return sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and not p.name.startswith("."))


def _read(f: Path, explicit: bool) -> list[tuple[str, Any]]:
    """The documents of one file; a YAML error (or a limit of the loader) names the file and the line.

    A file named explicitly must hold an object (as kubectl says); an empty file in a folder is skipped.
    """
    try:
        return list(iter_documents(f, allow_empty=not explicit))
    except NoObjectsError as err:
        raise PlanError([str(err)]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{f}:{mark.line + 1}" if mark else str(f)
        raise PlanError([f"{where}: not valid YAML: {getattr(err, 'problem', None) or err}"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise PlanError([f"{f}: cannot read it: {getattr(err, 'strerror', None) or err}"]) from None


def load(path: Path) -> list[Item]:
    """Every kubetune resource in PATH, admitted as the cluster would admit it (kubetune.api.admission:
    schema, CEL rules, metadata, spec and cross-resource checks); other kinds are skipped; raises PlanError."""
    files = manifest_files(path)
    docs: list[tuple[str, Any]] = []
    base_of: dict[str, Path] = {}
    for f in files:
        for source, doc in _read(f, explicit=path.is_file()):
            docs.append((source, doc))
            base_of[source] = f.parent.resolve()
    admitted, errors = admit_all(docs)
    if errors:
        raise PlanError([str(e) for e in errors])
    items = [Item(resource, source, base_of[source]) for source, resource in admitted]
    if not items:
        raise PlanError(
            [f"{path}: no FineTuneJob, Evaluation or ModelDeployment found (looked at {len(files)} file(s))"]
        )
    return items


def dependencies(resource: Resource) -> list[Dependency]:
    """The resources this one needs finished (or, for a ModelDeployment an Evaluation scores, running)."""
    ns = resource.metadata.namespace or "default"
    out: list[Dependency] = []
    if isinstance(resource, FineTuneJob | Evaluation):
        # A judge served by a ModelDeployment: it is served (and stays up) before this runs.
        out += [Dependency((ns, c.MODELDEPLOYMENT, ref.name), ref.field) for ref in judge_deployments(resource.spec)]
    if isinstance(resource, FineTuneJob):
        src = resource.spec.base_model.from_job
        if src:
            out.append(Dependency((ns, c.FINETUNEJOB, src.name), "spec.baseModel.fromJob.name"))
    elif isinstance(resource, Evaluation):
        ref = resource.spec.model
        if ref.fine_tune_job:
            out.append(Dependency((ns, c.FINETUNEJOB, ref.fine_tune_job.name), "spec.model.fineTuneJob.name"))
        if ref.model_deployment:
            out.append(
                Dependency((ns, c.MODELDEPLOYMENT, ref.model_deployment.name), "spec.model.modelDeployment.name")
            )
    elif isinstance(resource, ModelDeployment):
        if resource.spec.model.fine_tune_job:
            out.append(
                Dependency((ns, c.FINETUNEJOB, resource.spec.model.fine_tune_job.name), "spec.model.fineTuneJob.name")
            )
        if resource.spec.promotion.evaluation:
            out.append(
                Dependency(
                    (ns, c.EVALUATION, resource.spec.promotion.evaluation.name), "spec.promotion.evaluation.name"
                )
            )
    return out


def order(items: Iterable[Item], *, known: Callable[[Key], bool] = lambda key: False) -> list[Item]:
    """Items in dependency order (ties: jobs, then evaluations, then deployments, then file order).

    `known(key)` says whether a resource that is not in `items` exists from an earlier run.
    Raises PlanError for duplicates, dangling references and cycles.
    """
    items = list(items)
    errors: list[str] = []
    by_key: dict[Key, Item] = {}
    for it in items:
        if it.key in by_key:
            errors.append(f"{it.source}: {it} is also defined in {by_key[it.key].source}")
        by_key.setdefault(it.key, it)
    needs: dict[Key, set[Key]] = {k: set() for k in by_key}
    for key, it in by_key.items():
        for dep in dependencies(it.resource):
            if dep.key in by_key:
                needs[key].add(dep.key)
            elif not known(dep.key):
                errors.append(
                    f"{it.source}: {dep.field}: {dep.key[1]} {dep.key[2]!r} is not defined in namespace "
                    f"{dep.key[0]!r} of these manifests, and no earlier run has it"
                )
    if errors:
        raise PlanError(errors)

    position = {key: i for i, key in enumerate(by_key)}
    rank = {key: (KIND_ORDER[key[1]], position[key]) for key in by_key}
    waiting = {key: len(deps) for key, deps in needs.items()}
    users: dict[Key, list[Key]] = {k: [] for k in by_key}
    for key, deps in needs.items():
        for dep in deps:
            users[dep].append(key)
    ready = [(rank[k], k) for k, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    out: list[Item] = []
    while ready:
        _, key = heapq.heappop(ready)
        out.append(by_key[key])
        for user in users[key]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, (rank[user], user))
    if len(out) < len(by_key):
        stuck = ", ".join(str(by_key[k]) for k, n in waiting.items() if n > 0)
        raise PlanError([f"reference cycle: {stuck} wait on each other; remove one of the references"])
    return out
