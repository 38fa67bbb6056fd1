"""What `kubetune run` prints about serving: spec.auth is said to be unenforced locally, a deployment that failed
gets no "Serving ... at None" or curl line, and an answer of blank lines does not fill the screen."""

from __future__ import annotations

import io
import json

from rich.console import Console
from test_run_pin import deployment, trained_job

from kubetune.api import ModelDeployment
from kubetune.constants import EXIT_FAILED
from kubetune.local.cli import main
from kubetune.local.context import Run
from kubetune.local.executors.modeldeployment import _one_block, serve_until_interrupted
from kubetune.local.state import RunsDir


def test_spec_auth_is_said_to_be_unenforced_by_kubetune_run(tmp_path, capsys):
    runs = RunsDir(tmp_path / "runs")
    trained_job(runs)
    md = deployment("checkpoint-999")  # fails fast at the pin: no model is loaded for this test
    md["spec"]["auth"] = {"apiKeySecretRef": {"name": "travel-key", "key": "api-key"}}
    path = tmp_path / "deploy.yaml"
    path.write_text(json.dumps(md))
    main([str(path), "--runs-dir", str(runs.root), "--no-serve"])
    flat = " ".join(capsys.readouterr().out.split())
    assert (
        "spec.auth is not enforced by kubetune run (no Secrets locally); the server listens on 127.0.0.1 only" in flat
    )


class _Exited:
    def poll(self) -> int:
        return 1

    def tail(self) -> str:
        return "it failed"


def test_a_failed_deployment_gets_no_endpoint_lines(tmp_path):
    out = io.StringIO()
    run = Run(runs=RunsDir(tmp_path / "runs"), console=Console(file=out, width=200), manifest_path="m.yaml")
    md = ModelDeployment.model_validate({**deployment(""), "status": {"phase": "Failed"}})
    run.resources[("team", "ModelDeployment", "travel")] = md
    run.servers.append((md, _Exited()))  # pyright: ignore[reportArgumentType]  # a stand-in for a Child
    assert serve_until_interrupted(run) == EXIT_FAILED
    text = out.getvalue()
    assert "None" not in text and "curl" not in text, text
    assert "the server of travel stopped" in text


def test_an_answer_of_blank_lines_is_one_short_block():
    assert _one_block("\n\n\n  \n\nHello\n\n\n\nthere\n\n") == "Hello\nthere"
    assert _one_block("\n" * 60) == "(an empty answer)"
