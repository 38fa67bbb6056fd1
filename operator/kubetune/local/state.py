"""The runs folder: where local runs keep their files and remember what is done.

    runs/
      pvc/CLAIM/...                         what pvc://CLAIM/... means locally in the `default` namespace
      namespaces/NAMESPACE/pvc/CLAIM/...    ... and in any other namespace (claims are namespaced on a cluster)
      NAMESPACE/PLURAL/NAME/resource.json   the resource as last run: spec, status, inputs hash (annotation)
      NAMESPACE/PLURAL/NAME/...             its run config, progress log and child-process log
      report.html, *.png                    the run report

A resource whose saved status says Succeeded and whose inputs hash is unchanged is skipped on the
next run; anything else runs again (training resumes from its latest checkpoint).

Nothing is written or deleted outside the runs folder: a namespace or name that is not one folder name
('../x', '/abs'), or a path that resolves elsewhere (through a symbolic link), raises RunsDirError, even
when admission let the name through. Reading is another matter: a model or dataset under runs/pvc may be
the user's own symbolic link to a folder elsewhere on this machine, and is read through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune import constants as c
from kubetune.api import KINDS, FineTuneJob, Resource, StorageMap
from kubetune.api.common import UriError
from kubetune.builders.names import job_output_uri
from kubetune.local.plan import Item, Key

STATE_FILE = "resource.json"


def inputs_hash(*parts: Any) -> str:
    """A stable hash of JSON-able values (specs, upstream hashes, checkpoint names)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(path: Path | None) -> str | None:
    """sha256 of a local file's content (None when there is no such file): a changed dataset means a new run."""
    if path is None or not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RunsDirError(ValueError):
    """A path the runtime would write or delete that is not inside the runs folder."""


def _folder_name(value: str, what: str) -> str:
    """`value` as one folder name (never '', '.', '..', a path or a name with a NUL)."""
    if value in ("", ".", "..") or "/" in value or "\\" in value or "\x00" in value:
        raise RunsDirError(f"{what} {value!r} cannot name a folder in the runs folder; use a DNS name (e.g. team-a)")
    return value


@dataclass(frozen=True)
class RunsDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    @property
    def pvc_root(self) -> Path:
        """Where the claims of the `default` namespace are."""
        return self.pvc_root_of("default")

    def pvc_root_of(self, namespace: str | None) -> Path:
        """runs/pvc for the `default` namespace (as the quickstart lays it out), runs/namespaces/NS/pvc for others:
        claims are namespaced on a cluster, so `tk-data` of ns-a is not `tk-data` of ns-b."""
        ns = namespace or "default"
        if ns == "default":
            return self.root / "pvc"
        return self.root / "namespaces" / _folder_name(ns, "metadata.namespace") / "pvc"

    def storage(self, base_dir: Path, namespace: str | None = "default") -> StorageMap:
        """pvc:// into the namespace's claims folder, relative paths against the manifest's folder.

        Reads follow the user's own symbolic links (this is the user's machine; '..' in a pvc:// URI is still
        refused); whatever the runtime writes or deletes is checked with `inside` (writes never leave the runs
        folder).
        """
        return StorageMap(
            pvc_root=str(self.pvc_root_of(namespace)), base_dir=str(Path(base_dir).resolve()), follow_links=True
        )

    def inside(self, path: Path, what: str) -> Path:
        """`path` when it resolves (symbolic links followed) inside the runs folder; RunsDirError otherwise."""
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.root):
            raise RunsDirError(f"{what} {path} is outside the runs folder {self.root} (it resolves to {resolved})")
        return Path(path)

    def resource_dir(self, key: Key) -> Path:
        """runs/NAMESPACE/PLURAL/NAME; RunsDirError when the namespace or name would lead elsewhere."""
        namespace, kind, name = key
        path = self.root / _folder_name(namespace, "metadata.namespace") / c.PLURALS[kind]
        path /= _folder_name(name, "metadata.name")
        return self.inside(path, f"the folder of {kind} {namespace}/{name}")

    def load(self, key: Key) -> tuple[Resource | None, str | None]:
        """The resource as last saved, and the inputs hash it ran with; (None, None) if never run."""
        path = self.resource_dir(key) / STATE_FILE
        if not path.exists():
            return None, None
        try:
            doc = json.loads(path.read_text())
            resource = KINDS[key[1]].model_validate(doc)
        except (ValueError, KeyError):
            return None, None  # unreadable (an older format, a crash mid-write): treat as never run
        return resource, resource.metadata.annotations.get(c.ANNOTATION_SPEC_HASH)

    def save(self, resource: Resource, digest: str) -> Path:
        """Write the resource with its status; atomic, so an interrupted write never leaves half a file."""
        ns = resource.metadata.namespace or "default"
        d = self.resource_dir((ns, resource.kind, resource.metadata.name))
        d.mkdir(parents=True, exist_ok=True)
        doc = resource.to_k8s()
        doc["metadata"].setdefault("annotations", {})[c.ANNOTATION_SPEC_HASH] = digest
        tmp = d / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, d / STATE_FILE)
        return d / STATE_FILE

    def is_done(self, key: Key, digest: str) -> bool:
        saved, saved_digest = self.load(key)
        return bool(saved and saved.status and saved.status.phase == c.Phase.SUCCEEDED and saved_digest == digest)

    def forget(self, key: Key, *also: Path) -> None:
        """Remove what a resource left (its folder and e.g. its checkpoints) so it starts over.

        Every path is checked before anything is removed: one outside the runs folder removes nothing.
        """
        paths = [self.resource_dir(key), *(self.inside(p, "a folder to remove") for p in also)]
        for path in paths:
            if path.exists():
                shutil.rmtree(path)


def outside_paths(items: list[Item], runs: RunsDir) -> list[str]:
    """`file: problem` for each resource whose folder or training output would lie outside the runs folder.

    Checked before anything starts (and again where each path is used), so a refused name writes nothing.
    """
    errors = []
    for item in items:
        try:
            runs.resource_dir(item.key)
            if isinstance(item.resource, FineTuneJob):
                output = runs.storage(item.base_dir, item.namespace).local_path(job_output_uri(item.resource))
                if output is not None:
                    runs.inside(output, f"the output folder of {item}")
        except (RunsDirError, UriError) as err:
            errors.append(f"{item.source}: {err}")
    return errors
