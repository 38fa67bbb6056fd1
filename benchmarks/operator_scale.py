"""How the operator copes with many jobs at once: 500 FineTuneJobs applied together against the KMock
API emulator (tests/integration/apiserver.py); the time until every one has its batch Job, and the
operator process's peak memory (VmHWM).

    .venv/bin/python benchmarks/operator_scale.py [--jobs 500]

The emulator runs in this process; the operator is `kubetune operator` in a process of its own.
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
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": f"job-{i:04d}", "namespace": NAMESPACE},
        "spec": {
            "baseModel": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            "dataset": {"train": {"uri": "pvc://datasets/train.jsonl"}},
        },
    }


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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
        [sys.executable, "-c", code, "--standalone", f"--namespace={NAMESPACE}", "--quiet"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    http = httpx.Client(base_url=server.url, timeout=30)
    try:
        time.sleep(3)  # the operator logs in and starts watching
        idle_rss = peak_rss_mib(op.pid)
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
            "operator_idle_rss_mib": round(idle_rss, 1),
            "phases": phases,
            "cpus": os.cpu_count(),
        }
        print(json.dumps(result, indent=2))
    finally:
        op.terminate()
        op.wait(timeout=30)
        http.close()
        server.stop()


if __name__ == "__main__":
    main()
