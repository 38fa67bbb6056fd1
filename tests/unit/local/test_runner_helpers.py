"""Small decisions of `kubetune run`: where a resumed job starts, which request the server gets, CLI flags."""

import json
import socket

from kubetune.api import Evaluation
from kubetune.local.checkpoints import latest_checkpoint
from kubetune.local.cli import build_parser
from kubetune.local.context import Run
from kubetune.local.plan import Item
from kubetune.local.samples import sample_request
from kubetune.local.server import free_port
from kubetune.local.state import RunsDir


def test_resume_point_is_the_newest_complete_checkpoint(tmp_path):
    for name, complete in (("checkpoint-50", True), ("checkpoint-100", True), ("checkpoint-150", False)):
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / "kubetune.json").write_text("{}")
    assert latest_checkpoint(tmp_path) == "checkpoint-100"  # 150 was cut short: no kubetune.json
    assert latest_checkpoint(tmp_path / "missing") is None


def test_served_model_gets_the_first_held_out_question_without_its_answer(tmp_path):
    (tmp_path / "test.jsonl").write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "Translate."},
                    {"role": "user", "content": "Hotels in Rome"},
                    {"role": "assistant", "content": "SHOW hotels IN rome"},
                ]
            }
        )
        + "\n"
    )
    ev = Evaluation.model_validate(
        {
            "apiVersion": "kubetune.dev/v1alpha1",
            "kind": "Evaluation",
            "metadata": {"name": "e"},
            "spec": {"model": {"uri": "pvc://m/x"}, "dataset": {"uri": "test.jsonl"}},
        }
    )
    run = Run(runs=RunsDir(tmp_path / "runs"), console=None, manifest_path="x")  # type: ignore[arg-type]
    run.items = {("default", "Evaluation", "e"): Item(ev, "x.yaml", tmp_path)}
    messages, expected = sample_request(run, ev, None)
    assert [m["role"] for m in messages] == ["system", "user"] and expected == "SHOW hotels IN rome"


def test_free_port_skips_a_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert free_port(busy) != busy


def test_cli_defaults():
    args = build_parser().parse_args(["examples/quickstart"])
    assert str(args.runs_dir) == "runs" and args.port == 8000 and not (args.no_serve or args.no_wait or args.fresh)


def test_checkpoints_on_disk_become_status_entries(tmp_path):
    from kubetune.local.checkpoints import scan_checkpoints

    for name, step in (("checkpoint-10", 10), ("final", 20), ("checkpoint-20", 20)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "kubetune.json").write_text(json.dumps({"step": step, "metrics": {"eval_loss": 0.5}}))
    (tmp_path / "checkpoint-30").mkdir()  # incomplete
    entries = scan_checkpoints(tmp_path, "pvc://claim/output")
    assert [e["name"] for e in entries] == ["checkpoint-10", "checkpoint-20", "final"]
    assert entries[0]["uri"] == "pvc://claim/output/checkpoint-10" and entries[0]["metrics"] == {"eval_loss": 0.5}
