"""Scraping the serving pods: a Prometheus Operator PodMonitor (monitoring.coreos.com/v1) per ModelDeployment,
made where the cluster serves PodMonitors. Both runtimes export /metrics on the serving port (vLLM's `vllm:*`,
the built-in server's `kubetune_serve_*`); the KEDA ScaledObject queries these series."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetune import constants as c
from kubetune.api.modeldeployment import ModelDeployment
from kubetune.builders.meta import child_metadata
from kubetune.builders.serving import all_tracks_selector, serving_name

SCRAPE_INTERVAL = "15s"


def build_pod_monitor(deployment: ModelDeployment, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A PodMonitor selecting the serving pods' `http` port (stable and canary), path /metrics; `labels` (operator
    settings) are added to its own labels, for a Prometheus whose podMonitorSelector wants them (e.g. `release`)."""
    meta = child_metadata(deployment, c.ROLE_SERVE, name=serving_name(deployment))
    meta["labels"] = {**dict(labels or {}), **meta["labels"]}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": meta,
        "spec": {
            "selector": all_tracks_selector(deployment),
            "podMetricsEndpoints": [
                # honorLabels false: our `model` label survives (no clash); namespace and pod come from the target.
                {"port": "http", "path": "/metrics", "interval": SCRAPE_INTERVAL, "honorLabels": False}
            ],
        },
    }
