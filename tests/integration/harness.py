"""The operator against an API server over HTTP: KMock's emulator (see apiserver.py), the real `kubectl`,
and the operator either in-process (`kopf.testing.KopfRunner`) or as a `kubetune operator` process.

Nothing plays the Job controller or the kubelet: tests do, by patching a Job's status (and creating
pods) the way Kubernetes would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from apiserver import ApiServerThread
from kopf.testing import KopfRunner

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = str(Path(sys.executable).parent / "kubectl")
NAMESPACE = "default"
GROUP_PATH = "/apis/kubetune.dev/v1alpha1"
T = TypeVar("T")


class Cluster:
    """kubectl and quick HTTP reads against the emulator."""

    def __init__(self, server: ApiServerThread, kubeconfig: Path, cache: Path) -> None:
        self.server = server
        self.kubeconfig = kubeconfig
        self.cache = cache
        self.http = httpx.Client(base_url=server.url, timeout=10)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        cmd = [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache), *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc.stdout + proc.stderr

    def apply(self, manifest: dict[str, Any] | str | Path) -> str:
        if isinstance(manifest, Path):
            return self.kubectl("apply", "--validate=false", "-f", str(manifest))
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self.kubectl("apply", "--validate=false", "-f", "-", input=text)

    # Reads straight from the API (faster than kubectl for polling).
    def get(self, path: str) -> dict[str, Any] | None:
        resp = self.http.get(path)
        return resp.json() if resp.status_code == 200 else None

    def ftj(self, name: str) -> dict[str, Any] | None:
        return self.get(f"{GROUP_PATH}/namespaces/{NAMESPACE}/finetunejobs/{name}")

    def objects(self, plural: str) -> dict[str, dict[str, Any]]:
        return self.server.objects(plural, NAMESPACE)

    def patch_status(self, path: str, status: dict[str, Any]) -> dict[str, Any]:
        resp = self.http.patch(
            f"{path}/status", json={"status": status}, headers={"Content-Type": "application/merge-patch+json"}
        )
        resp.raise_for_status()
        return resp.json()

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        resp = self.http.post(path, json=obj)
        resp.raise_for_status()
        return resp.json()

    def events(self, name: str) -> list[dict[str, Any]]:
        body = self.get(f"/api/v1/namespaces/{NAMESPACE}/events?fieldSelector=involvedObject.name={name}")
        return (body or {}).get("items") or []

    # The Job controller's part.
    def job_path(self, name: str) -> str:
        return f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}"

    def start_job(self, name: str) -> None:
        self.patch_status(self.job_path(name), {"active": 1, "ready": 1, "startTime": now()})

    def finish_job(self, name: str, *, succeeded: bool = True, reason: str = "BackoffLimitExceeded") -> None:
        if succeeded:
            status = {
                "active": 0,
                "ready": 0,
                "succeeded": 1,
                "completionTime": now(),
                "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now()}],
            }
        else:
            status = {
                "active": 0,
                "ready": 0,
                "failed": 4,
                "conditions": [
                    {"type": "Failed", "status": "True", "reason": reason, "message": "Job has reached the limit"}
                ],
            }
        self.patch_status(self.job_path(name), status)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def wait_for(fn: Callable[[], T], timeout: float = 20, what: str = "condition") -> T:
    """Poll `fn` every 50 ms until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (KeyError, TypeError, IndexError, AttributeError) as err:
            last = err
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def example(name: str = "travel", **spec: Any) -> dict[str, Any]:
    """A FineTuneJob as a user writes it."""
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "method": "sft",
            "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct", "tokenSecretRef": {"name": "hf", "key": "token"}},
            "dataset": {"train": {"uri": "pvc://datasets/travel/train.jsonl"}},
            **spec,
        },
    }


# Where the example job's checkpoints are (its operator-made claim), and the paths of the objects the
# Evaluation and ModelDeployment tests share.
CLAIM = "pvc://travel-data/output"
FTJ_PATH = f"{GROUP_PATH}/namespaces/{NAMESPACE}/finetunejobs/travel"
EVAL_PATH = f"{GROUP_PATH}/namespaces/{NAMESPACE}/evaluations/travel-eval"


def checkpoints(*steps: int) -> list[dict[str, Any]]:
    """`status.checkpoints` of the example job as the trainer reports them."""
    return [{"name": f"checkpoint-{s}", "step": s, "uri": f"{CLAIM}/checkpoint-{s}"} for s in steps]


def evaluation(gpus: int = 0) -> dict[str, Any]:
    """An Evaluation `travel-eval` of every checkpoint of the example job, passing at exact_match >= 0.8."""
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": "travel-eval", "namespace": NAMESPACE},
        "spec": {
            "model": {"fineTuneJob": {"name": "travel", "checkpoints": "all"}},
            "dataset": {"uri": "pvc://datasets/travel/test.jsonl"},
            "metrics": ["exact_match"],
            "passCriteria": [{"metric": "exact_match", "min": 0.8}],
            "resources": {"gpus": gpus},
        },
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    server = ApiServerThread().start()
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", NAMESPACE)
    c = Cluster(server, kubeconfig, tmp_path / "kubectl-cache")
    c.kubectl("apply", "--validate=false", "-f", str(ROOT / "crds"))
    try:
        yield c
    finally:
        c.http.close()
        server.stop()


def operator_env(kubeconfig: Path) -> dict[str, str]:
    return {
        "KUBECONFIG": str(kubeconfig),
        "KUBETUNE_METRICS_PORT": "0",
        "KUBETUNE_SOURCE_POLL_SECONDS": "0.3",
        "KUBETUNE_TRAINER_IMAGE": "registry.test/kubetune-trainer:test",
    }


class InProcessOperator:
    """The operator in a thread of this process (kopf.testing.KopfRunner), restartable."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.runner: KopfRunner | None = None
        self.outputs: list[str] = []

    def start(self) -> InProcessOperator:
        args = ["run", "-m", "kubetune.controllers.handlers", "--standalone", f"--namespace={NAMESPACE}"]
        self.runner = KopfRunner(args, timeout=30)
        self.runner.__enter__()
        return self

    def stop(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            runner.__exit__(None, None, None)
            self.outputs.append(runner.output)


@pytest.fixture
def operator(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessOperator]:
    for key, value in operator_env(cluster.kubeconfig).items():
        monkeypatch.setenv(key, value)
    op = InProcessOperator(cluster.kubeconfig).start()
    try:
        yield op
    finally:
        op.stop()


class OperatorProcess:
    """`kubetune operator` as a separate process (what the container runs)."""

    def __init__(self, kubeconfig: Path, log: Path, extra: list[str] = ()) -> None:
        self.kubeconfig, self.log, self.extra = kubeconfig, log, list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {**os.environ, **operator_env(self.kubeconfig)}
        code = "import sys; from kubetune.controllers.main import main; sys.exit(main(sys.argv[1:]))"
        args = [sys.executable, "-c", code, "--standalone", f"--namespace={NAMESPACE}", *self.extra]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)[:4000]
