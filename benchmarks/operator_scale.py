"""How the operator copes with many jobs at once: N FineTuneJobs applied together against the KMock
API emulator (tests/integration/apiserver.py); the time until every one has its batch Job, the
operator process's peak memory (VmHWM), and the API requests per job by verb and resource (the
emulator counts them).

    .venv/bin/python benchmarks/operator_scale.py [--jobs 500]

The emulator runs in this process; the operator is `kubetune operator` in a process of its own. The
machine's load average is printed with the numbers: on a shared machine, compare runs taken at similar load.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from apiserver import ApiServerThread  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    server = ApiServerThread(namespaces=[NAMESPACE]).start()
    tmp = Path(tempfile.mkdtemp(prefix="kubetune-bench-"))
    kubeconfig = server.write_kubeconfig(tmp / "kubeconfig", NAMESPACE)
    kubectl = str(Path(sys.executable).parent / "kubectl")
    subprocess.run(
        [
            kubectl,
            "--kubeconfig",
            str(kubeconfig),
            "--cache-dir",
            str(tmp / "cache"),
            "apply",
            "--validate=false",
            "-f",
            str(ROOT / "crds"),
        ],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBETUNE_METRICS_PORT": "0"}
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
    http = httpx.Client(base_url=server.url, timeout=30)
    try:
        time.sleep(3)  # the operator logs in and starts watching
        idle_rss = peak_rss_mib(op.pid)
        load_before = os.getloadavg()
        requests_before = server.request_counts()
        cpu_before = (cpu_seconds(op.pid), time.process_time())
        start = time.monotonic()
        for i in range(args.jobs):  # "at once": back to back, as `kubectl apply -f dir/` would
            http.post(FTJS, json=manifest(i)).raise_for_status()
        applied = time.monotonic() - start
        done = 0
        while time.monotonic() - start < args.timeout:
            done = len(server.objects("jobs", NAMESPACE))
            if done >= args.jobs:
                break
            time.sleep(0.2)
        all_jobs = time.monotonic() - start
        while time.monotonic() - start < args.timeout:
            ftjs = server.objects("finetunejobs", NAMESPACE).values()
            if all((obj.get("status") or {}).get("phase") for obj in ftjs):
                break
            time.sleep(0.2)
        all_phases = time.monotonic() - start
        time.sleep(2)  # what the last events still cause
        counts = server.request_counts()
        operator_requests = {
            key: n - requests_before.get(key, 0)
            for key, n in sorted(counts.items())
            if n - requests_before.get(key, 0) > 0 and key != "create finetunejobs"  # those are the benchmark's
        }
        phases: dict[str, int] = {}
        for obj in server.objects("finetunejobs", NAMESPACE).values():
            phase = (obj.get("status") or {}).get("phase", "-")
            phases[phase] = phases.get(phase, 0) + 1
        result = {
            "jobs": args.jobs,
            "batch_jobs_created": done,
            "apply_seconds": round(applied, 1),
            "seconds_until_every_job_has_its_batch_job": round(all_jobs, 1),
            "seconds_until_every_job_reports_a_phase": round(all_phases, 1),
            "operator_peak_rss_mib": round(peak_rss_mib(op.pid), 1),
            "operator_cpu_seconds": round(cpu_seconds(op.pid) - cpu_before[0], 1),
            "emulator_and_driver_cpu_seconds": round(time.process_time() - cpu_before[1], 1),
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
        http.close()
        server.stop()


if __name__ == "__main__":
    main()
