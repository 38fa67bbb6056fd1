"""A real Kubernetes control plane on loopback for the tests, as controller-runtime's envtest runs one:
etcd, kube-apiserver and (for garbage collection only) kube-controller-manager, built from the releases
pinned in hack/envtest/go.mod by hack/envtest/build.sh (`make envtest`).

No kubelet, no scheduler, no Job controller: tests write the status those would write. The API server
authenticates a static admin token (the tests) and ServiceAccount tokens (TokenRequest: the operator runs
with the chart's RBAC), authorizes with RBAC and runs its default admission plugins, CEL included.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "hack" / "envtest" / "build.sh"
ISSUER = "https://kubernetes.default.svc.cluster.local"
# Only what the scenarios need from kube-controller-manager: ownerReference cascades, and the
# finalizer that the default StorageObjectInUseProtection admission plugin puts on every PVC.
CONTROLLERS = "garbage-collector-controller,persistentvolumeclaim-protection-controller"


class ControlPlaneError(RuntimeError):
    """A binary is missing, exited early, or the API server never became ready (log tail included)."""


def built_binaries() -> Path | None:
    """The folder holding kube-apiserver, kube-controller-manager and etcd, or None when not built yet."""
    proc = subprocess.run(["bash", str(BUILD), "--path"], capture_output=True, text=True)
    return Path(proc.stdout.strip()) if proc.returncode == 0 else None


def build_binaries() -> Path:
    """Run hack/envtest/build.sh (tens of minutes the first time); ControlPlaneError when it cannot."""
    proc = subprocess.run(["bash", str(BUILD)], stdout=subprocess.PIPE, text=True)  # progress on stderr
    if proc.returncode != 0:
        raise ControlPlaneError(f"hack/envtest/build.sh failed with exit code {proc.returncode} (see its stderr)")
    return Path(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_pki(folder: Path) -> dict[str, Path]:
    """A self-signed CA, a serving certificate for 127.0.0.1 signed by it, and a service-account key pair."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubetune-envtest-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default.svc")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([*names, x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "ca": (folder / "ca.crt", ca.public_bytes(serialization.Encoding.PEM)),
        "cert": (folder / "apiserver.crt", cert.public_bytes(serialization.Encoding.PEM)),
        "key": (folder / "apiserver.key", _pem_key(key)),
        "sa_key": (folder / "sa.key", _pem_key(sa_key)),
        "sa_pub": (
            folder / "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        ),
    }
    for path, data in files.values():
        path.write_bytes(data)
    return {name: path for name, (path, _) in files.items()}


def kubeconfig(path: Path, url: str, ca: Path, token: str, namespace: str = "default") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": {"server": url, "certificate-authority": str(ca)}}],
        "users": [{"name": "user", "user": {"token": token}}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "user", "namespace": namespace}}],
        "current-context": "envtest",
    }
    path.write_text(yaml.safe_dump(config))
    return path


class Process:
    """A child in a process group of its own, logging to a file; stop() ends the whole group."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise ControlPlaneError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager once started) in a temporary folder."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.workdir = Path(tempfile.mkdtemp(prefix="kubetune-envtest-"))
        self.processes: list[Process] = []
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_hex(16)
        self.pki = write_pki(self.workdir / "pki")
        self.ca = self.pki["ca"]
        self.admin_kubeconfig = kubeconfig(self.workdir / "admin.kubeconfig", self.url, self.ca, self.admin_token)
        self.http = httpx.Client(
            base_url=self.url,
            verify=ssl.create_default_context(cafile=str(self.ca)),
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
        )

    def _spawn(self, name: str, args: list[str]) -> Process:
        proc = Process(name, [str(self.binaries / name), *args], self.workdir / f"{name}.log")
        self.processes.append(proc)
        return proc

    def start(self, timeout: float = 180) -> ControlPlane:
        """Start etcd and kube-apiserver; return once /readyz says ready (polled, never slept on)."""
        client, peer = free_port(), free_port()
        etcd_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        etcd = self._spawn(
            "etcd",
            [
                "--name=envtest",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=envtest={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},kubetune-test-admin,admin,"system:masters"\n')
        apiserver = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                f"--secure-port={self.port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--cert-dir={self.workdir / 'pki'}",
                f"--tls-cert-file={self.pki['cert']}",
                f"--tls-private-key-file={self.pki['key']}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={ISSUER}",
                f"--service-account-key-file={self.pki['sa_pub']}",
                f"--service-account-signing-key-file={self.pki['sa_key']}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--v=1",
            ],
        )
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            etcd.check_running()
            apiserver.check_running()
            try:
                resp = self.http.get("/readyz", timeout=5)
                if resp.status_code == 200:
                    return self
                last = resp.text
            except httpx.HTTPError as err:
                last = repr(err)
            time.sleep(0.2)
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout}s ({last}):\n{apiserver.tail()}")

    def start_controller_manager(self, timeout: float = 120) -> None:
        """kube-controller-manager with only the garbage collector and PVC protection; returns once an
        owned ConfigMap is garbage-collected after its owner's deletion (the collector is live)."""
        kcm = self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.admin_kubeconfig}",
                f"--controllers={CONTROLLERS}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ],
        )
        base = "/api/v1/namespaces/kube-system/configmaps"
        owner = self.http.post(base, json={"metadata": {"generateName": "gc-probe-"}}).raise_for_status().json()
        ref = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
        }
        dependent = self.http.post(base, json={"metadata": {"generateName": "gc-probe-", "ownerReferences": [ref]}})
        name = dependent.raise_for_status().json()["metadata"]["name"]
        self.http.delete(f"{base}/{owner['metadata']['name']}").raise_for_status()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kcm.check_running()
            if self.http.get(f"{base}/{name}").status_code == 404:
                return
            time.sleep(0.2)
        raise ControlPlaneError(f"the garbage collector did not run within {timeout}s:\n{kcm.tail()}")

    def start_namespace_controller(self, timeout: float = 60) -> None:
        """A second kube-controller-manager running only the namespace controller (what empties and removes a
        namespace being deleted); returns once an empty probe namespace is gone. Once per control plane."""
        if any(p.name == "namespace-controller" for p in self.processes):
            return
        proc = Process(
            "namespace-controller",
            [
                str(self.binaries / "kube-controller-manager"),
                f"--kubeconfig={self.admin_kubeconfig}",
                "--controllers=namespace-controller",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ],
            self.workdir / "namespace-controller.log",
        )
        self.processes.append(proc)
        probe = self.http.post("/api/v1/namespaces", json={"metadata": {"generateName": "ns-probe-"}})
        name = probe.raise_for_status().json()["metadata"]["name"]
        self.http.delete(f"/api/v1/namespaces/{name}").raise_for_status()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc.check_running()
            if self.http.get(f"/api/v1/namespaces/{name}").status_code == 404:
                return
            time.sleep(0.2)
        raise ControlPlaneError(f"the namespace controller did not remove {name} within {timeout}s:\n{proc.tail()}")

    # --- the API, as the admin -------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def service_account_token(self, namespace: str, name: str, seconds: int = 86400) -> str:
        """A token for a ServiceAccount (TokenRequest), as a pod of it would mount."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        }
        resp = self.http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", json=body)
        return resp.raise_for_status().json()["status"]["token"]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes)

    def stop(self) -> None:
        self.http.close()
        for proc in reversed(self.processes):
            proc.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
