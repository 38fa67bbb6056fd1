"""Helpers of the opt-in end-to-end tests on a real cluster: they run only when KUBECONFIG is set.

    KUBECONFIG=~/.kube/config .venv/bin/pytest -m e2e tests/e2e

The CRDs must be installed (`kubectl apply -f crds/` or the Helm chart). The operator either runs in
the cluster (the chart) or, with KUBETUNE_E2E_RUN_OPERATOR=1, is started here as `kubetune operator`.
Each test works in a namespace of its own, deleted afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("KUBECONFIG"):
        return
    skip = pytest.mark.skip(reason="e2e tests need a real cluster: set KUBECONFIG")
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:  # this hook sees the whole session: only our tests
            item.add_marker(skip)


class Kube:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def run(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, timeout=120)
        if check and proc.returncode:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def json(self, *args: str) -> dict[str, Any] | None:
        out = self.run("-n", self.namespace, "get", *args, "-o", "json", check=False)
        return json.loads(out) if out.strip() else None

    def apply(self, manifest: dict[str, Any]) -> str:
        return self.run("-n", self.namespace, "apply", "-f", "-", input=json.dumps(manifest))


def wait_for(fn: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def kube() -> Iterator[Kube]:
    namespace = f"kubetune-e2e-{uuid.uuid4().hex[:6]}"
    k = Kube(namespace)
    k.run("create", "namespace", namespace)
    operator = None
    if os.environ.get("KUBETUNE_E2E_RUN_OPERATOR") == "1":
        code = "import sys; from kubetune.controllers.main import main; sys.exit(main(sys.argv[1:]))"
        env = {**os.environ, "KUBETUNE_METRICS_PORT": "0"}
        operator = subprocess.Popen([sys.executable, "-c", code, "--standalone", f"--namespace={namespace}"], env=env)
    try:
        yield k
    finally:
        k.run("delete", "namespace", namespace, "--wait=false", check=False)
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
