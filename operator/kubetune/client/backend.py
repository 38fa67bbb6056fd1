"""What both back ends of `kubetune.client` do (`Backend`), the records they return, and turning what a user
hands over (a model object, a dict, YAML text or a file) into admitted resources."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from kubetune import constants as c
from kubetune.api import KINDS, Resource
from kubetune.api.admission import admit_all
from kubetune.api.manifests import ManifestError
from kubetune.api.yamlload import load_all, load_file

SHORT_NAMES = {"ftj": c.FINETUNEJOB, "ftev": c.EVALUATION, "mdep": c.MODELDEPLOYMENT}
Source = Resource | Mapping[str, Any] | str | Path


class AdmissionError(ValueError):
    """Refused before anything was sent: every problem, each with its source and field path."""

    def __init__(self, errors: list[ManifestError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class NotFoundError(LookupError):
    """No such resource (on the cluster, or in the runs folder)."""


@dataclass(frozen=True)
class Event:
    """Something that happened to a resource: a Kubernetes Event on a cluster, a trainer event locally."""

    type: str  # Normal | Warning
    reason: str
    message: str
    time: str | None = None
    count: int = 1

    def __str__(self) -> str:
        return f"{self.time or '-'} {self.type} {self.reason}: {self.message}"


class Backend(Protocol):
    """Where resources live: a cluster (`ClusterBackend`) or the local runtime's runs folder (`LocalBackend`).
    Resources are admitted before they reach a back end; what comes back is typed."""

    default_namespace: str

    def apply(self, items: list[Admitted], *, create_only: bool = False) -> list[Resource]: ...

    def get(self, kind: str, namespace: str, name: str) -> Resource: ...

    def list(self, kind: str, namespace: str) -> list[Resource]: ...

    def delete(self, kind: str, namespace: str, name: str) -> bool: ...

    def patch_spec(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> Resource: ...

    def events(
        self, kind: str, namespace: str, name: str, *, follow: bool, timeout: float | None
    ) -> Iterator[Event]: ...

    def logs(self, job: str, namespace: str, *, follow: bool, timeout: float | None) -> Iterator[str]: ...

    def close(self) -> None: ...


def merged(target: Any, patch: Any) -> Any:
    """`target` with a JSON merge patch (RFC 7386) applied: a None value removes the key."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merged(out.get(key), value)
    return out


def kind_name(kind: str | type[Resource]) -> str:
    """FineTuneJob, Evaluation or ModelDeployment from a kind, a short name, a plural or a model class."""
    if isinstance(kind, type):
        kind = kind.model_fields["kind"].default
    assert isinstance(kind, str)
    if kind in KINDS:
        return kind
    lowered = kind.lower()
    for name in KINDS:
        if lowered in (name.lower(), c.PLURALS[name]) or SHORT_NAMES.get(lowered) == name:
            return name
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)} (or ftj, ftev, mdep)")


def _is_file(source: Source) -> bool:
    """A path (a Path, or one line of text ending in .yaml/.yml/.json) rather than YAML text."""
    if isinstance(source, Path):
        return True
    return isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml", ".json"))


def _documents(source: Source, index: int) -> list[tuple[str, Any]]:
    """(label, document) of each document of `source`; a file's label is its path (`path#N` of several)."""
    if isinstance(source, Mapping):
        return [(f"<object {index + 1}>", dict(source))]
    if isinstance(source, Resource):  # a pydantic resource: admitted again, as the API server would
        return [(f"<{source.kind} {source.metadata.name}>", source.to_k8s())]
    is_path = _is_file(source)
    try:
        if is_path:
            path = Path(source)
            docs = load_file(path)
            return [(f"{path}#{i + 1}" if len(docs) > 1 else str(path), d) for i, d in enumerate(docs)]
        docs = load_all(str(source), "<yaml>")
    except (OSError, yaml.YAMLError) as err:
        where = str(source) if is_path else "<yaml>"
        raise AdmissionError([ManifestError(where, "", str(err))]) from None
    return [(f"<yaml>#{i + 1}" if len(docs) > 1 else "<yaml>", d) for i, d in enumerate(docs)]


@dataclass(frozen=True)
class Admitted:
    """A resource that passed admission, and the folder its relative paths are relative to (its YAML file's
    folder; the working directory for objects and text). Only the local runtime reads relative paths."""

    resource: Resource
    base_dir: Path


def admitted(sources: Iterable[Source], namespace: str, *, bound: bool = False) -> list[Admitted]:
    """Every kubetune resource of `sources`, through the one admission (schema, metadata, CEL rules, spec and
    cross-resource checks); AdmissionError naming each problem when any is refused. A resource without a
    namespace gets `namespace`; with `bound` (a client told its namespace) another namespace is refused, as
    `kubectl -n` refuses it."""
    docs: list[tuple[str, Any]] = []
    base_dirs: dict[str, Path] = {}
    mismatched: list[ManifestError] = []
    for i, source in enumerate(sources):
        is_file = _is_file(source)
        for label, doc in _documents(source, i):
            if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
                doc = {**doc, "metadata": {"namespace": namespace, **doc["metadata"]}}
                if bound and doc["metadata"]["namespace"] != namespace:
                    mismatched.append(
                        ManifestError(
                            label,
                            "metadata.namespace",
                            f"the namespace from the provided object ({doc['metadata']['namespace']!r}) does not "
                            f"match the namespace this client is bound to ({namespace!r}); use a client for that "
                            "namespace, or remove metadata.namespace",
                        )
                    )
            docs.append((label, doc))
            base_dirs[label] = (
                Path(source).resolve().parent if is_file and isinstance(source, str | Path) else Path.cwd()
            )
    if mismatched:
        raise AdmissionError(mismatched)
    resources, errors = admit_all(docs)
    if errors:
        raise AdmissionError(errors)
    if not resources:
        raise AdmissionError([ManifestError("<input>", "", "no FineTuneJob, Evaluation or ModelDeployment found")])
    return [Admitted(r, base_dirs[label]) for label, r in resources]
