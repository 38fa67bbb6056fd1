"""`kubetune run` with the training data on a real local S3 server (moto) and spec.export back to it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import yaml
from test_quickstart_local import JOB_DIR, mini_quickstart, resource

import s3server
from kubetune import objectstore

s3_server, s3_env = s3server.s3_server, s3server.s3_env  # the real local S3 server's fixtures


@pytest.mark.slow
def test_a_job_reads_s3_data_and_exports_its_best_checkpoint_with_a_model_card(s3_env, tmp_path):
    folder = mini_quickstart(tmp_path, max_steps=4, every=2)
    namespaced = tmp_path / "runs" / "namespaces" / "team-travel" / "pvc" / "models"
    if not namespaced.exists():  # claims are per namespace in kubetune run (runs/namespaces/NS/pvc/CLAIM)
        namespaced.parent.mkdir(parents=True)
        (tmp_path / "runs" / "pvc" / "models").rename(namespaced)
    s3_env.create_bucket("team-travel")
    for split in ("train", "validation"):
        s3_env.put("team-travel", f"data/{split}.jsonl", (folder / "data" / f"{split}.jsonl").read_bytes())
        (folder / "data" / f"{split}.jsonl").unlink()  # only the bucket has the data now
    docs = list(yaml.safe_load_all((folder / "quickstart.yaml").read_text()))
    job = docs[0]
    job["spec"]["dataset"]["train"]["uri"] = "s3://team-travel/data/train.jsonl"
    job["spec"]["dataset"]["validation"]["uri"] = "s3://team-travel/data/validation.jsonl"
    job["spec"]["s3"] = {"endpoint": s3_env.endpoint, "region": "us-east-1"}
    job["spec"]["export"] = {"uri": "s3://team-travel/export/travel-assistant/", "checkpoint": "best"}
    (folder / "quickstart.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    runs = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "run", str(folder), "--runs-dir", str(runs), "--no-serve"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    status = resource(runs, *JOB_DIR)["status"]
    assert status["phase"] == "Succeeded"
    export = status["export"]
    assert export["uri"] == "s3://team-travel/export/travel-assistant/"
    assert export["checkpoint"] == status["bestCheckpoint"]

    listed = dict(objectstore.list_objects("s3://team-travel/export/travel-assistant/"))
    names = {k.removeprefix("export/travel-assistant/") for k in listed}
    assert {"README.md", "MANIFEST.sha256", "config.json", "model.safetensors", "kubetune.json"} <= names
    assert any(n.startswith("tokenizer") for n in names)
    manifest = objectstore.read_bytes("s3://team-travel/export/travel-assistant/MANIFEST.sha256")
    assert export["digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
    for line in manifest.decode().splitlines():  # every file in the bucket is what the manifest says
        sha, size, path = line.split("  ")
        body = objectstore.read_bytes(f"s3://team-travel/export/travel-assistant/{path}")
        assert (hashlib.sha256(body).hexdigest(), len(body)) == (sha, int(size))
    card = objectstore.read_bytes("s3://team-travel/export/travel-assistant/README.md").decode()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "transformers" and "kubetune" in front["tags"]
    meta = json.loads(objectstore.read_bytes("s3://team-travel/export/travel-assistant/kubetune.json"))
    assert meta["dataset"]["hash"] in card and "s3://team-travel/data/train.jsonl" in card
    assert "learningRate" in card and "method `sft`" in card


def test_kubetune_validate_names_line_7_of_a_broken_s3_dataset(s3_env, tmp_path):
    folder = mini_quickstart(tmp_path, model=False)
    lines = (folder / "data" / "train.jsonl").read_text().splitlines()
    lines[6] = '{"messages": [ oops'
    s3_env.create_bucket("broken")
    s3_env.put("broken", "train.jsonl", ("\n".join(lines) + "\n").encode())
    job = next(yaml.safe_load_all((folder / "quickstart.yaml").read_text()))
    job["spec"]["dataset"] = {"train": {"uri": "s3://broken/train.jsonl"}, "format": "chat"}
    job["spec"]["s3"] = {"endpoint": s3_env.endpoint}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    out = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "validate", str(tmp_path / "job.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "s3://broken/train.jsonl:7" in out.stdout + out.stderr
