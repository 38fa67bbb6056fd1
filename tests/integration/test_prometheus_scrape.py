"""A real Prometheus server (Debian's, via hack/prometheus/setup.sh) scrapes the operator's /metrics on localhost the
way the chart's ServiceMonitor has it scraped (target labels namespace, pod, job; honor_labels false), and the
series are queried over its HTTP API by their final label names: none renamed to exported_*."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kubetune import metrics
from prometheus_tools import binary

OPERATOR_NAMESPACE = "kubetune-system"  # the scrape target's namespace: where the operator runs
TEAM = "team-scrape"  # where the resources are


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[str]:
    """The base URL of a Prometheus scraping the operator's metrics endpoint every second."""
    exporter = _free_port()
    metrics.start_server_once(exporter)
    root = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "kubetune",
                "honor_labels": False,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{exporter}"],
                        # what Kubernetes service discovery gives a ServiceMonitor's target
                        "labels": {"namespace": OPERATOR_NAMESPACE, "pod": "kubetune-0", "service": "kubetune-metrics"},
                    }
                ],
            }
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = (root / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary("prometheus"),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (root / "prometheus.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "Prometheus was not ready within 30 s"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def query(url: str, promql: str, timeout: float = 20) -> list[dict[str, Any]]:
    """The instant vector of `promql` once it is not empty (scrapes every second); [] after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}", timeout=5) as r:
            result = json.load(r)["data"]["result"]
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_scraped_series_keep_their_resource_labels(prometheus):
    recorder = metrics.Recorder()
    recorder.observe_job(
        {
            "metadata": {"namespace": TEAM, "name": "travel"},
            "spec": {"resources": {"gpus": 1}},
            "status": {
                "phase": "Running",
                "metrics": {"trainLoss": 0.75},
                "progress": {"step": 25, "totalSteps": 100},
            },
        }
    )
    recorder.observe_evaluation(
        {
            "metadata": {"namespace": TEAM, "name": "travel-eval"},
            "status": {"results": [{"model": "checkpoint-20", "metrics": {"exact_match": 0.5}}], "passed": False},
        }
    )

    (loss,) = query(prometheus, f'kubetune_training_loss{{resource_namespace="{TEAM}", finetunejob="travel"}}')
    assert loss["value"][1] == "0.75"
    labels = loss["metric"]
    # ours kept as they are; the target's own namespace and job beside them, nothing renamed
    assert labels["namespace"] == OPERATOR_NAMESPACE and labels["job"] == "kubetune"
    assert not [name for name in labels if name.startswith("exported_")]

    (progress,) = query(prometheus, f'kubetune_training_progress_ratio{{resource_namespace="{TEAM}"}}')
    assert progress["value"][1] == "0.25"
    (phase,) = query(prometheus, f'kubetune_finetunejob_status_phase{{resource_namespace="{TEAM}"}} == 1')
    assert (phase["metric"]["finetunejob"], phase["metric"]["phase"]) == ("travel", "Running")
    (running,) = query(prometheus, f'kubetune_finetunejobs{{resource_namespace="{TEAM}", phase="Running"}}')
    assert running["value"][1] == "1"
    score = f'kubetune_evaluation_score{{resource_namespace="{TEAM}", evaluation="travel-eval", metric="exact_match"}}'
    (scored,) = query(prometheus, score)
    assert (scored["metric"]["model"], scored["value"][1]) == ("checkpoint-20", "0.5")
    (verdict,) = query(prometheus, f'kubetune_evaluation_passed{{resource_namespace="{TEAM}"}}')
    assert verdict["value"][1] == "0"
    # no series of ours anywhere under a renamed label
    assert query(prometheus, '{__name__=~"kubetune_.*", exported_namespace!=""}', timeout=0) == []
    assert query(prometheus, '{__name__=~"kubetune_.*", exported_job!=""}', timeout=0) == []
    recorder.forget_job(TEAM, "travel")
    recorder.forget_evaluation(TEAM, "travel-eval")
