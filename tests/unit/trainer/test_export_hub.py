"""spec.export to hf://ORG/NAME, run by the training pod's own command against a local stand-in of the Hub.

The stand-in (tests/hubstub.py) is not the Hub: it implements create_repo, repo_info, preupload, the LFS
batch API with basic transfer, and the ndjson commit; the client runs with HF_HUB_DISABLE_XET=1 because the
stub has no Xet storage (a pod with hf_xet installed uploads weights through Xet, untested here).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from trainer_helpers import events, make_config, quickstart_rows, trainer_command, write_config, write_jsonl

from hubstub import hub_stub

TOKEN = "hf_" + "Zq7" * 12  # token-shaped, as a real Hub token is
REPO = "acme/travel-assistant"


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory) -> Path:
    """A finished LoRA run (final/ and kept checkpoints) of the tiny model; each test exports a copy."""
    from kubetune_trainer.train import EXIT_OK, run

    d = tmp_path_factory.mktemp("hub-export-run")
    train = write_jsonl(d / "train.jsonl", quickstart_rows(16))
    validation = write_jsonl(d / "validation.jsonl", quickstart_rows(4, "validation"))
    cfg = make_config(
        d, tiny_model, train, validation=validation, hyperparameters={"maxSteps": 4}, checkpoints={"every": 2}
    )
    assert run(cfg) == EXIT_OK
    return Path(cfg.output_dir)


def _export_run(trained: Path, tmp_path: Path, hub_url: str, **export) -> tuple[subprocess.CompletedProcess, Path]:
    """The pod's command (`kubetune_trainer train`) on a copy of the finished run with spec.export set: it
    finds final/ and only exports. Returns the process and the termination log path."""
    if not (tmp_path / "output").exists():
        shutil.copytree(trained, tmp_path / "output")
    cfg = make_config(
        tmp_path,
        trained.parent,  # not read: the run is finished
        trained.parent / "train.jsonl",
        validation=trained.parent / "validation.jsonl",
        hyperparameters={"maxSteps": 4},
        checkpoints={"every": 2},
        export={"uri": f"hf://{REPO}", "tokenSecretRef": {"name": "hub", "key": "token"}, **export},
    )
    termination = tmp_path / "termination-log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=hub_url,
        HF_EXPORT_TOKEN=TOKEN,  # what spec.export.tokenSecretRef becomes in the pod
        HF_HUB_DISABLE_XET="1",  # the stub has no Xet storage
        HF_HOME=str(tmp_path / "hf-home"),  # no token saved on this machine is used
        KUBETUNE_TERMINATION_LOG=str(termination),
        PYTHONUNBUFFERED="1",
    )
    done = subprocess.run(
        trainer_command(write_config(tmp_path, cfg)), capture_output=True, text=True, env=env, timeout=300, check=False
    )
    return done, termination


def _evaluation_results(tmp_path: Path, trained: Path) -> dict[str, float]:
    """An Evaluation's results.json where the evaluator writes it (the job output's sibling evaluations/NAME/):
    a different score per checkpoint, so the card shows which one it took."""
    shutil.copytree(trained, tmp_path / "output")
    checkpoints = sorted(p.name for p in (tmp_path / "output").iterdir() if (p / "kubetune.json").is_file())
    scores = {name: round(0.5 + i / 10, 2) for i, name in enumerate(checkpoints)}
    results = {
        "evaluation": "holdout",
        "createdAt": "2026-01-01T00:00:00+00:00",
        "dataset": "pvc://evals/holdout.jsonl",
        "results": [
            {"model": name, "uri": f"pvc://test-job-data/output/{name}", "metrics": {"exact_match": score}}
            for name, score in scores.items()
        ],
    }
    write_jsonl(tmp_path / "evaluations" / "holdout" / "results.json", [])  # the folder
    (tmp_path / "evaluations" / "holdout" / "results.json").write_text(json.dumps(results))
    return scores


def test_export_to_the_hub_creates_a_private_repo_with_every_file_and_the_card(trained, tmp_path):
    scores = _evaluation_results(tmp_path, trained)
    with hub_stub(TOKEN) as hub:
        done, termination = _export_run(trained, tmp_path, hub.url)
    logs = done.stdout + done.stderr
    assert done.returncode == 0, logs
    repo = hub.repos[REPO]
    assert repo.private  # spec.export: "created private if missing"
    assert {auth for _, _, auth in hub.requests if auth} == {f"Bearer {TOKEN}"}  # the token, as a bearer token
    repo_calls = [
        auth for _, path, auth in hub.requests if path.startswith(("/api/repos/", "/api/models/", f"/{REPO}"))
    ]
    assert repo_calls and set(repo_calls) == {f"Bearer {TOKEN}"}, hub.requests

    (exported,) = [e["export"] for e in events(tmp_path) if e["event"] == "exported"]
    ((commit,),) = [[c["oid"] for c in repo.commits]]
    assert exported["uri"] == f"hf://{REPO}@{commit}"
    assert repo.commits[0]["summary"] == f"kubetune export of {exported['checkpoint']}"
    assert json.loads((tmp_path / "output" / "export.json").read_text()) == exported

    # Every file of the checkpoint arrived with its bytes: the manifest names each one, and its digest is status'.
    manifest = repo.files["MANIFEST.sha256"]
    assert exported["digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
    listed = {}
    for line in manifest.decode().splitlines():
        sha, size, path = line.split("  ")
        listed[path] = (sha, int(size))
    assert set(repo.files) == {*listed, "MANIFEST.sha256"}
    for path, (sha, size) in listed.items():
        assert (hashlib.sha256(repo.files[path]).hexdigest(), len(repo.files[path])) == (sha, size), path
    checkpoint = tmp_path / "output" / exported["checkpoint"]
    for name in ("adapter_model.safetensors", "adapter_config.json", "kubetune.json"):
        assert repo.files[name] == (checkpoint / name).read_bytes(), name
    assert any(n.startswith("tokenizer") for n in repo.files)
    assert "adapter_model.safetensors" in repo.lfs_paths  # weights went through the LFS batch API
    assert not any(n.startswith(("optimizer", "scheduler", "rng_state")) for n in repo.files)

    card = repo.files["README.md"].decode()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "peft" and "kubetune" in front["tags"]
    meta = json.loads(repo.files["kubetune.json"])
    assert meta["dataset"]["hash"] in card and "method `sft`" in card
    # The Evaluation's score of the exported checkpoint (not another one's), on the Evaluation's dataset
    (result,) = ModelCard(card).data.eval_results
    assert (result.metric_type, result.metric_value) == ("exact_match", scores[exported["checkpoint"]])
    assert result.dataset_type == "pvc://evals/holdout.jsonl"

    # The token is sent only as the bearer token: never in logs, status, the card or the termination log.
    assert TOKEN not in logs and TOKEN not in (tmp_path / "progress.jsonl").read_text()
    assert not any(TOKEN.encode() in body for body in repo.files.values())
    assert not termination.exists() or TOKEN not in termination.read_text()


@pytest.mark.parametrize(
    ("fail", "token", "says", "server_says"),
    [
        ({}, "hf_" + "Wr0ng" * 8, "401", "Invalid credentials"),  # a token the Hub refuses
        ({"commit": 500}, TOKEN, "500", "commit fails with 500"),  # the Hub fails the commit
    ],
)
def test_a_failed_hub_export_ends_with_one_line_and_the_termination_message(
    trained, tmp_path, fail, token, says, server_says
):
    with hub_stub(token, fail=fail) as hub:
        done, termination = _export_run(trained, tmp_path, hub.url)
    logs = done.stdout + done.stderr
    assert done.returncode == 1, logs
    assert "Traceback" not in logs
    (line,) = [ln for ln in logs.splitlines() if "export to" in ln and "failed" in ln]
    assert f"hf://{REPO}" in line and says in line and server_says in line  # the Hub's answer on the same line
    message = termination.read_text()
    assert message.startswith("export error: export failed:") and server_says in message and "\n" not in message
    assert TOKEN not in logs and TOKEN not in message
    assert not (tmp_path / "output" / "export.json").exists()
    assert not [e for e in events(tmp_path) if e["event"] == "exported"]
