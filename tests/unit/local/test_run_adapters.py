"""`kubetune run` serves a ModelDeployment's LoRA adapters: the local server starts with runtime adapter loading
and the pod's sync sidecar (one round) loads each adapter, so `model: <adapter>` answers; status says per adapter
what is served."""

from __future__ import annotations

import json
import socket

import pytest

from kubetune.constants import EXIT_OK
from kubetune.local.cli import main
from kubetune.local.state import RunsDir
from tiny_adapters import lora_adapter

pytestmark = pytest.mark.timeout(300)
KEY = ("default", "ModelDeployment", "travel")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_run_loads_each_adapter_and_records_it(tmp_path, capsys, monkeypatch):
    from kubetune_trainer.tiny import init_tiny

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runs = RunsDir(tmp_path / "runs")
    pvc = tmp_path / "runs" / "pvc"
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": s, "completion": s}) + "\n" for s in ["the pool was warm"] * 8))
    base = init_tiny(pvc / "models" / "tiny", [data], size="nano", vocab_size=300)
    lora_adapter(base, pvc / "adapters" / "fr", 1)
    lora_adapter(base, pvc / "adapters" / "de", 2)
    manifest = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "travel"},
        "spec": {
            "model": {"uri": "pvc://models/tiny"},
            "resources": {"gpus": 0},
            "adapters": [
                {"name": "travel-fr", "uri": "pvc://adapters/fr"},
                {"name": "travel-de", "uri": "pvc://adapters/de"},
            ],
        },
    }
    path = tmp_path / "deploy.yaml"
    path.write_text(json.dumps(manifest))

    rc = main([str(path), "--runs-dir", str(runs.root), "--no-wait", "--port", str(_port())])

    out = " ".join(capsys.readouterr().out.split())
    assert rc == EXIT_OK, out
    assert "adapter travel-de: pvc://adapters/de (model: travel-de)" in out
    saved, _ = runs.load(KEY)
    assert [(a.name, a.served_uri) for a in saved.status.adapters] == [
        ("travel-fr", "pvc://adapters/fr"),
        ("travel-de", "pvc://adapters/de"),
    ]
    log = (runs.resource_dir(KEY) / "adapters-sync.log").read_text()
    assert "loaded travel-de from pvc://adapters/de" in log and "loaded travel-fr from pvc://adapters/fr" in log
