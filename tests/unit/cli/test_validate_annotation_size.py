"""`kubetune validate` refuses a manifest whose annotations would not fit with the operator's copy of them
(T2 D6: a 120 KB annotation applied with kubectl apply), naming the file, the field, the sizes and the limit."""

from __future__ import annotations

from pathlib import Path

from kubetune import cli

MANIFEST = """apiVersion: kubetune.dev/v1alpha1
kind: FineTuneJob
metadata:
  name: travel
  annotations:
    propagate.kubetune.dev/blob: {blob}
spec:
  baseModel: {{uri: hf://a/b}}
  dataset: {{train: {{uri: pvc://d/train.jsonl}}}}
"""


def validate(tmp_path: Path, capsys, blob_bytes: int) -> tuple[int, str, Path]:
    path = tmp_path / "job.yaml"
    path.write_text(MANIFEST.format(blob="y" * blob_bytes))
    rc = cli.main(["validate", str(path)])
    out = capsys.readouterr()
    return rc, out.out + out.err, path


def test_a_120_kb_annotation_is_refused_with_the_sizes_and_the_limit_20_kb_pass(tmp_path, capsys):
    rc, out, _ = validate(tmp_path, capsys, 20_000)
    assert rc == 0, out
    rc, out, path = validate(tmp_path, capsys, 120_000)
    assert rc == 1
    assert f"{path}: metadata.annotations: " in out
    assert "kubectl apply adds" in out and "kubetune.dev/last-handled-configuration" in out
    assert "over the API server's limit of 262,144 bytes" in out
