"""An MLflow server that does not answer costs seconds, not minutes: the trainer's connect check at start fails
fast, says so in one warning and switches MLflow off for the run (no MLflowCallback left to retry)."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from kubetune.api import FineTuneJobSpec, StorageMap
from kubetune.api.runconfig import TrainRunConfig
from kubetune_trainer import tracking


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def run_config(tmp_path: Path, uri: str) -> TrainRunConfig:
    spec = {
        "baseModel": {"uri": "pvc://models/tiny"},
        "dataset": {"train": {"uri": "pvc://d/t.jsonl"}},
        "tracking": {"mlflow": {"uri": uri}},
    }
    return TrainRunConfig(
        job={"name": "j", "namespace": "ns"},
        storage=StorageMap(pvc_root=str(tmp_path / "pvc")),
        output_dir=str(tmp_path / "out"),
        spec=FineTuneJobSpec.model_validate(spec),
        base_model_uri="pvc://models/tiny",
    )


def test_an_unreachable_mlflow_server_switches_tracking_off_within_seconds(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(tracking, "_switched_off", set())
    monkeypatch.delenv("DISABLE_MLFLOW_INTEGRATION", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    cfg = run_config(tmp_path, f"http://127.0.0.1:{free_port()}")
    tracking.configure_environment(cfg)
    assert tracking.report_to(cfg.spec.tracking) == ["mlflow"]

    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=tracking.log.name):
        assert tracking.start(cfg) is None
    assert time.monotonic() - began < tracking.CONNECT_TIMEOUT_S + 2

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "MLflow tracking is off for this run" in warnings[0]
    # nothing left that would reach for the server again during training
    assert tracking.report_to(cfg.spec.tracking) == []
    assert os.environ.get("DISABLE_MLFLOW_INTEGRATION") == "TRUE"
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert not (tmp_path / "out" / tracking.RUN_FILE).exists()
