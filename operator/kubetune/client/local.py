"""The local back end of `kubetune.client`: `kubetune run`'s runs folder, as a cluster of one machine.

Reads what the local runtime writes (kubetune.local.state: `NAMESPACE/PLURAL/NAME/resource.json`, the
trainer's `progress.jsonl` and the child's `train.log`/`evaluate.log`). `apply` writes the resources to a
manifest in `RUNS/.client/` and starts `kubetune run MANIFEST --runs-dir RUNS --no-serve` in a subprocess;
runs started by one client go one after another (an Evaluation applied after its FineTuneJob starts once
the job's run has ended), its output in `RUNS/.client/run-N.log`. ModelDeployments are decided (promotion,
pin) but not served: `kubetune run` serves them.

Suspend interrupts a run this client started (as Ctrl-C does: the trainer saves a checkpoint, the job is
Suspended); resume runs it again, from that checkpoint.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune import constants as c
from kubetune.api import KINDS, FineTuneJob, Resource
from kubetune.api.admission import admit_resource
from kubetune.api.references import referenced_uris
from kubetune.builders.names import job_output_uri
from kubetune.client.backend import AdmissionError, Admitted, Event, NotFoundError, merged
from kubetune.local.state import STATE_FILE, RunsDir

CLIENT_DIR = ".client"
LOGS = {c.FINETUNEJOB: "train.log", c.EVALUATION: "evaluate.log", c.MODELDEPLOYMENT: "serve.log"}
PROGRESS = "progress.jsonl"
POLL_SECONDS = 0.2
Key = tuple[str, str, str]


@dataclass
class _Run:
    """One `kubetune run` this client started (or will start), and the resources it covers."""

    manifest: Path
    keys: dict[Key, Resource]
    proc: subprocess.Popen[bytes] | None = None
    started: float | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _absolute(doc: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """`doc` with its relative file paths made absolute against `base_dir` (the manifest `kubetune run` gets
    lies in the runs folder, not where they were relative to)."""
    for ref in referenced_uris(doc):
        if "://" in ref.uri or Path(ref.uri).is_absolute():
            continue
        *parents, last = ref.field.split(".")
        node = doc
        for part in parents:
            node = node[part]
        node[last] = str(base_dir / ref.uri)
    return doc


def _key(resource: Resource, namespace: str) -> Key:
    return (resource.metadata.namespace or namespace, resource.kind, resource.metadata.name)


class LocalBackend:
    """kubetune's resources in a local runs folder; see `kubetune.client.Client` for what each call means."""

    def __init__(
        self, runs_dir: str | Path = "runs", *, default_namespace: str = "default", python: str | None = None
    ) -> None:
        self.runs = RunsDir(Path(runs_dir))
        self.default_namespace = default_namespace
        self.python = python or sys.executable
        self._counter = itertools.count(1)
        self._runs: list[_Run] = []
        self._queue: queue.Queue[_Run | None] = queue.Queue()
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="kubetune-client-local", daemon=True)
        self._worker.start()

    # --- runs ---

    def _work(self) -> None:
        while (run := self._queue.get()) is not None:
            log = run.manifest.with_name(run.manifest.stem.replace("apply", "run") + ".log")
            argv = [
                self.python,
                "-m",
                "kubetune.cli",
                "run",
                str(run.manifest),
                "--runs-dir",
                str(self.runs.root),
                "--no-serve",
            ]
            with log.open("ab") as out:
                with self._lock:
                    run.started = time.time()
                    run.proc = subprocess.Popen(
                        argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"}
                    )
                run.proc.wait()
            run.done.set()

    def _active(self, key: Key) -> _Run | None:
        """The latest run of this client that covers `key` and has not ended."""
        with self._lock:
            return next((r for r in reversed(self._runs) if key in r.keys and not r.done.is_set()), None)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every run this client started has ended; False at the timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for run in list(self._runs):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not run.done.wait(left):
                return False
        return True

    # --- the Backend protocol ---

    def apply(self, items: list[Admitted], *, create_only: bool = False) -> list[Resource]:
        resources = [item.resource for item in items]
        keys = {_key(r, self.default_namespace): r for r in resources}
        if create_only:
            for key in keys:
                if self.runs.load(key)[0] is not None or self._active(key):
                    raise FileExistsError(f"{key[1]} {key[0]}/{key[2]} already exists in {self.runs.root}")
        for key in keys:
            self.runs.resource_dir(key)  # a name that is no folder name is refused before anything is written
        folder = self.runs.root / CLIENT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        manifest = folder / f"apply-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(self._counter)}.yaml"
        docs = []
        for item in items:
            doc = _absolute(item.resource.to_k8s(), item.base_dir)
            doc.pop("status", None)
            doc["metadata"].setdefault("namespace", self.default_namespace)
            for k in ("uid", "generation", "resourceVersion", "creationTimestamp"):
                doc["metadata"].pop(k, None)
            doc["metadata"].get("annotations", {}).pop(c.ANNOTATION_SPEC_HASH, None)
            docs.append(doc)
        manifest.write_text("\n---\n".join(json.dumps(d, indent=1) for d in docs) + "\n")
        run = _Run(manifest, keys)
        with self._lock:
            self._runs.append(run)
        self._queue.put(run)
        return [self.get(kind, ns, name) for ns, kind, name in keys]

    def _pending(self, key: Key) -> Resource | None:
        """The resource as applied, while its run has not started on it yet (the saved state is older)."""
        run = self._active(key)
        if run is None:
            return None
        path = self.runs.resource_dir(key) / STATE_FILE
        if run.started is not None and path.exists() and path.stat().st_mtime >= run.started:
            return None
        return run.keys[key].model_copy(update={"status": None})

    def get(self, kind: str, namespace: str, name: str) -> Resource:
        key = (namespace, kind, name)
        pending = self._pending(key)
        if pending is not None:
            return pending
        saved, _ = self.runs.load(key)
        if saved is None:
            raise NotFoundError(f"{kind} {namespace}/{name} is not in {self.runs.root}")
        return saved

    def list(self, kind: str, namespace: str) -> list[Resource]:
        folder = self.runs.root / namespace / c.PLURALS[kind]
        names = {p.parent.name for p in folder.glob(f"*/{STATE_FILE}")}
        with self._lock:
            names |= {k[2] for r in self._runs if not r.done.is_set() for k in r.keys if k[:2] == (namespace, kind)}
        out = []
        for name in sorted(names):
            try:
                out.append(self.get(kind, namespace, name))
            except NotFoundError:
                continue
        return out

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        key = (namespace, kind, name)
        saved, _ = self.runs.load(key)
        run = self._active(key)
        if run is not None:  # its run may only be finishing (report, summary) after it settled
            settled = saved is not None and saved.status is not None and saved.status.phase in ("Succeeded", "Failed")
            if not settled or not run.done.wait(30):
                raise RuntimeError(f"{kind} {namespace}/{name} is running; suspend it (or wait) before deleting it")
        if saved is None:
            return False
        extra = []
        if isinstance(saved, FineTuneJob):
            out = self.runs.storage(self.runs.root, namespace).local_path(job_output_uri(saved))
            extra = [out] if out is not None else []
        self.runs.forget(key, *extra)
        return True

    def patch_spec(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> Resource:
        key = (namespace, kind, name)
        current = self.get(kind, namespace, name)
        if kind == c.FINETUNEJOB and patch.get("suspend") is True:
            run = self._active(key)
            if run is not None and run.proc is not None and run.proc.poll() is None:
                run.proc.send_signal(signal.SIGINT)  # what Ctrl-C does: a checkpoint, then Suspended
                run.done.wait(120)
            return self.get(kind, namespace, name)
        doc = merged(current.to_k8s(), {"spec": dict(patch), "status": None})
        doc["metadata"].get("annotations", {}).pop(c.ANNOTATION_SPEC_HASH, None)
        errors = admit_resource(doc)
        if errors:
            raise AdmissionError(errors)
        return self.apply([Admitted(KINDS[kind].model_validate(doc), self.runs.root)])[0]

    def _follow(self, path: Path, key: Key, follow: bool, timeout: float | None) -> Iterator[str]:
        """Complete lines of `path` as they are written; with `follow`, until the run of `key` ends or `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        offset, partial = 0, b""
        while True:
            running = self._active(key) is not None
            if path.exists():
                with path.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                offset += len(chunk)
                *lines, partial = (partial + chunk).split(b"\n")
                yield from (line.decode(errors="replace") for line in lines)
            if not follow or not running or (deadline is not None and time.monotonic() >= deadline):
                if partial and not running:
                    yield partial.decode(errors="replace")
                return
            time.sleep(POLL_SECONDS)

    def events(self, kind: str, namespace: str, name: str, *, follow: bool, timeout: float | None) -> Iterator[Event]:
        self.get(kind, namespace, name)  # NotFoundError for a resource that is not there
        path = self.runs.resource_dir((namespace, kind, name)) / PROGRESS
        for line in self._follow(path, (namespace, kind, name), follow, timeout):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            what = event.pop("event", "")
            when = event.pop("time", None)
            warning = what in ("data_failed", "failed", "interrupted")
            message = json.dumps(event, sort_keys=True, separators=(", ", ": "))
            yield Event("Warning" if warning else "Normal", what, message[:1024], when)

    def logs(self, job: str, namespace: str, *, follow: bool, timeout: float | None) -> Iterator[str]:
        self.get(c.FINETUNEJOB, namespace, job)
        key = (namespace, c.FINETUNEJOB, job)
        yield from self._follow(self.runs.resource_dir(key) / LOGS[c.FINETUNEJOB], key, follow, timeout)

    def close(self) -> None:
        """Stop taking work; runs already started go on (they are separate processes)."""
        self._queue.put(None)
