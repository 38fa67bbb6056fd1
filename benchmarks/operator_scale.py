"""How the operator copes with many jobs at once: N FineTuneJobs applied together; the time until every one has
its batch Job, the operator process's peak memory (VmHWM), and the API requests per job by verb and resource.

    .venv/bin/python benchmarks/operator_scale.py [--jobs 500] [--server emulator|kube-apiserver]

`--server emulator` (default): the KMock API emulator (tests/integration/apiserver.py) in this process, which counts
the requests itself. `--server kube-apiserver`: the real kube-apiserver and etcd that `make envtest` builds (as the
integration tests use them), its requests counted from its own `apiserver_request_total` metric, and its and etcd's
CPU reported. The operator is `kubetune operator` in a process of its own either way. The machine's load average
is printed with the numbers: on a shared machine, compare runs taken at similar load.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from apiserver import ApiServerThread  # noqa: E402
from controlplane import ControlPlane, built_binaries, kubeconfig  # noqa: E402

NAMESPACE = "bench"
FTJS = f"/apis/kubetune.dev/v1alpha1/namespaces/{NAMESPACE}/finetunejobs"


def manifest(i: int) -> dict:
    """Job i: its own data and learning rate, as a team's jobs differ (so no admission result is reused whole)."""
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": f"job-{i:04d}", "namespace": NAMESPACE},
        "spec": {
            "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            "dataset": {"train": {"uri": f"pvc://datasets/train-{i:04d}.jsonl"}},
            "hyperparameters": {"learningRate": 1e-4 * (1 + i % 50)},
        },
    }


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Emulator:
    """The KMock emulator in this process: it counts requests by "verb resource[/subresource]" itself."""

    name = "emulator"

    def __init__(self, tmp: Path) -> None:
        self.server = ApiServerThread(namespaces=[NAMESPACE]).start()
        self.kubeconfig = self.server.write_kubeconfig(tmp / "kubeconfig", NAMESPACE)
        self.http = httpx.Client(base_url=self.server.url, timeout=30)
        self.pids: dict[str, int] = {}

    def count(self, plural: str) -> int:
        return len(self.server.objects(plural, NAMESPACE))

    def phases(self) -> list[str | None]:
        return [(o.get("status") or {}).get("phase") for o in self.server.objects("finetunejobs", NAMESPACE).values()]

    def request_counts(self) -> dict[str, int]:
        return self.server.request_counts()

    def stop(self) -> None:
        self.http.close()
        self.server.stop()


VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "GET": "get"}


class RealApiServer:
    """kube-apiserver + etcd from `make envtest`; the operator runs with the admin's credentials in NAMESPACE."""

    name = "kube-apiserver"

    def __init__(self, tmp: Path) -> None:
        binaries = built_binaries()
        if binaries is None:
            raise SystemExit("kube-apiserver/etcd not built: run `make envtest` first")
        self.plane = ControlPlane(binaries).start()
        self.http = self.plane.http
        self.kubeconfig = kubeconfig(
            tmp / "kubeconfig", self.plane.url, self.plane.ca, self.plane.admin_token, NAMESPACE
        )
        self.http.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}}).raise_for_status()
        self.pids = {p.name: p.proc.pid for p in self.plane.processes}

    def count(self, plural: str) -> int:
        """How many there are, from one LIST of one item (`remainingItemCount` says the rest)."""
        group = "apis/batch/v1" if plural == "jobs" else "apis/kubetune.dev/v1alpha1"
        body = self.http.get(f"/{group}/namespaces/{NAMESPACE}/{plural}", params={"limit": 1}).json()
        return len(body.get("items") or []) + int((body.get("metadata") or {}).get("remainingItemCount") or 0)

    def phases(self) -> list[str | None]:
        body = self.http.get(FTJS).json()
        return [(o.get("status") or {}).get("phase") for o in body.get("items") or []]

    def request_counts(self) -> dict[str, int]:
        """`apiserver_request_total`, summed over codes, as "verb resource[/subresource]" with the emulator's verbs
        (POST is "create", PUT "update"; LIST and WATCH kept apart); what is not the operator's is left out: the
        server's own lease renewals and kubectl's OpenAPI reads."""
        counts: dict[str, int] = {}
        for family in text_string_to_metric_families(self.http.get("/metrics").text):
            if family.name != "apiserver_request":
                continue
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                labels = sample.labels
                what = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
                verb = VERBS.get(labels.get("verb", ""), labels.get("verb", "").lower())
                if what in ("leases", "/openapi/v3", "/openapi/v2"):
                    continue
                key = f"{verb} {what}" if what else "discovery"
                counts[key] = counts.get(key, 0) + int(sample.value)
        return counts

    def stop(self) -> None:
        self.plane.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--server", choices=("emulator", "kube-apiserver"), default="emulator")
    args = ap.parse_args()
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    tmp = Path(tempfile.mkdtemp(prefix="kubetune-bench-"))
    backend = Emulator(tmp) if args.server == "emulator" else RealApiServer(tmp)
    kubectl = [str(Path(sys.executable).parent / "kubectl"), "--kubeconfig", str(backend.kubeconfig)]
    subprocess.run(
        [*kubectl, "--cache-dir", str(tmp / "cache"), "apply", "--validate=false", "-f", str(ROOT / "crds")],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd", "--all"],
        check=False,
        capture_output=True,
    )
    env = {**os.environ, "KUBECONFIG": str(backend.kubeconfig), "KUBETUNE_METRICS_PORT": "0"}
    code = "import sys; from kubetune.controllers.main import main; sys.exit(main(sys.argv[1:]))"
    log = (tmp / "operator.log").open("wb")
    op = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "--standalone",
            f"--namespace={NAMESPACE}",
            os.environ.get("BENCH_KOPF_LOG", "--quiet"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    http = backend.http
    try:
        time.sleep(3)  # the operator logs in and starts watching
        idle_rss = peak_rss_mib(op.pid)
        load_before = os.getloadavg()
        requests_before = backend.request_counts()
        cpu_before = (cpu_seconds(op.pid), time.process_time(), {k: cpu_seconds(p) for k, p in backend.pids.items()})
        start = time.monotonic()
        for i in range(args.jobs):  # "at once": back to back, as `kubectl apply -f dir/` would
            http.post(FTJS, json=manifest(i)).raise_for_status()
        applied = time.monotonic() - start
        done = 0
        while time.monotonic() - start < args.timeout:
            done = backend.count("jobs")
            if done >= args.jobs:
                break
            time.sleep(0.5)
        all_jobs = time.monotonic() - start
        while time.monotonic() - start < args.timeout:
            if all(backend.phases()):
                break
            time.sleep(0.5)
        all_phases = time.monotonic() - start
        time.sleep(2)  # what the last events still cause
        counts = backend.request_counts()
        operator_requests = {
            key: n - requests_before.get(key, 0)
            for key, n in sorted(counts.items())
            if n - requests_before.get(key, 0) > 0
            # the benchmark's own: its POSTs, and (on the real server) its LISTs while it waits
            and key != "create finetunejobs"
            and not (backend.name == "kube-apiserver" and key.startswith("list "))
            and key not in ("get metrics", "discovery")
        }
        phases: dict[str, int] = {}
        for phase in backend.phases():
            phases[phase or "-"] = phases.get(phase or "-", 0) + 1
        result = {
            "server": backend.name,
            "jobs": args.jobs,
            "batch_jobs_created": done,
            "apply_seconds": round(applied, 1),
            "seconds_until_every_job_has_its_batch_job": round(all_jobs, 1),
            "seconds_until_every_job_reports_a_phase": round(all_phases, 1),
            "operator_peak_rss_mib": round(peak_rss_mib(op.pid), 1),
            "operator_cpu_seconds": round(cpu_seconds(op.pid) - cpu_before[0], 1),
            "emulator_and_driver_cpu_seconds": round(time.process_time() - cpu_before[1], 1),
            **{f"{k}_cpu_seconds": round(cpu_seconds(p) - cpu_before[2][k], 1) for k, p in backend.pids.items()},
            "operator_idle_rss_mib": round(idle_rss, 1),
            "phases": phases,
            "api_requests_per_job": {k: round(n / args.jobs, 2) for k, n in operator_requests.items()},
            "api_requests_per_job_total": round(sum(operator_requests.values()) / args.jobs, 2),
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(result, indent=2))
    finally:
        op.terminate()
        op.wait(timeout=30)
        backend.stop()


if __name__ == "__main__":
    main()
