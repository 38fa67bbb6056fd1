"""A real S3-compatible server on localhost for the tests: moto's server mode, from its own virtualenv
(hack/s3server/setup.sh, cached in ~/.cache/kubetune/s3server; `make test` installs it first).

Without it the tests that need it skip locally and fail in CI (CI=true), as the real API server's do.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SETUP = Path(__file__).parents[1] / "hack" / "s3server" / "setup.sh"
# moto accepts any credentials; they must merely be present for the client to sign requests.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "kubetune-test", "AWS_SECRET_ACCESS_KEY": "kubetune-test-secret"}


@dataclass
class S3Server:
    endpoint: str

    def create_bucket(self, name: str) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{name}", method="PUT"), timeout=10)

    def put(self, bucket: str, key: str, body: bytes) -> None:
        """A raw PUT (moto takes unsigned requests): keys the client itself would refuse, e.g. with '..'."""
        req = urllib.request.Request(
            f"{self.endpoint}/{bucket}/{key}",
            data=body,
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
        urllib.request.urlopen(req, timeout=10)


def server_binary() -> str | None:
    found = subprocess.run([str(SETUP), "--path"], capture_output=True, text=True, check=False)
    return found.stdout.strip() if found.returncode == 0 else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_s3_server() -> Iterator[S3Server]:
    binary = server_binary()
    if binary is None:
        message = "no S3 test server: run hack/s3server/setup.sh (make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, "the S3 test server exited at start"
                assert time.monotonic() < deadline, "the S3 test server did not answer within 30 s"
                time.sleep(0.2)
        yield S3Server(endpoint)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The test server's endpoint and credentials in this process's environment (and its children's)."""
    for k, v in {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_server.endpoint, "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    return s3_server
