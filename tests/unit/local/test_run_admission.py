"""`kubetune run` admits manifests with the same function as `kubetune validate` and refuses before anything
starts: exit 1, the field named, nothing written under the runs folder."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from kubetune.api import adapters
from kubetune.local import preflight, runner

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
PREFERENCE = {"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}


def manifest(tmp_path: Path, spec_extra: str, rows: list[dict] | None = None, base: str = "hf://a/b") -> Path:
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (rows or [CHAT] * 12)))
    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: kubetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: travel}\nspec:\n"
        f"  baseModel: {{uri: {base}}}\n  dataset: {{train: {{uri: train.jsonl}}}}\n" + spec_extra
    )
    return path


def kubetune_run(tmp_path: Path, path: Path, capsys) -> tuple[int, str, Path]:
    runs = tmp_path / "runs"
    rc = runner.main([str(path), "--runs-dir", str(runs), "--no-serve"])
    out = capsys.readouterr()
    return rc, out.out + out.err, runs


def written(runs: Path) -> list[Path]:
    return sorted(p for p in runs.rglob("*") if p.is_file()) if runs.exists() else []


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("  freezeLayers: 2\n", "spec.freezeLayers: freezeLayers applies to full fine-tuning"),
        ("  rft: {graders: [{type: exact_match}]}\n", "spec.rft: method rft needs the rft section"),
        ("  method: rft\n  rft: {graders: [{type: regex}]}\n", "spec.rft.graders[0].pattern: a regex grader needs pattern"),
        ("  dataset: {train: {uri: train.jsonl}, validation: {uri: train.jsonl}, validationSplit: 0.1}\n", "spec.dataset: set at most one"),
    ],
    ids=["freeze-with-lora", "rft-on-sft", "regex-without-pattern", "validation-and-split"],
)  # fmt: skip
def test_run_refuses_a_spec_the_cel_rules_refuse_before_anything_starts(tmp_path, capsys, extra, expected):
    path = manifest(tmp_path, extra)
    if "validationSplit" in extra:
        path.write_text(path.read_text().replace("  dataset: {train: {uri: train.jsonl}}\n", "", 1))
    rc, out, runs = kubetune_run(tmp_path, path, capsys)
    assert rc == runner.EXIT_FAILED
    assert f"{path}: {expected}" in " ".join(out.split()), out
    assert written(runs) == []


def test_run_refuses_a_misspelled_select_by(tmp_path, capsys):
    path = manifest(tmp_path, "")
    path.write_text(
        path.read_text() + "---\napiVersion: kubetune.dev/v1alpha1\nkind: Evaluation\nmetadata: {name: ev}\nspec:\n"
        "  model: {fineTuneJob: {name: travel}}\n  dataset: {uri: train.jsonl}\n  selectBy: exact_mach\n"
    )
    rc, out, runs = kubetune_run(tmp_path, path, capsys)
    assert rc == runner.EXIT_FAILED and f"{path}#2: spec.selectBy: selectBy must be one of metrics" in out
    assert written(runs) == []


def test_run_refuses_data_of_a_format_the_method_cannot_train_on(tmp_path, capsys):
    path = manifest(tmp_path, "", rows=[PREFERENCE] * 12)
    rc, out, runs = kubetune_run(tmp_path, path, capsys)
    flat = " ".join(out.split())
    assert rc == runner.EXIT_FAILED and "spec.method sft trains on chat" in flat and "this data is preference" in flat
    assert written(runs) == []


def test_run_refuses_hostile_yaml_in_one_line(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text("a: &a [" + ",".join(["*a"] * 3) + "]\n")
    rc, out, runs = kubetune_run(tmp_path, path, capsys)
    assert rc == runner.EXIT_FAILED and f"{path}:1: not valid YAML: a[0]: an alias refers" in out
    assert written(runs) == []


def test_qlora_without_a_gpu_is_refused_in_preflight(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(preflight, "has_cuda", lambda: False)
    path = manifest(tmp_path, "  adapter: {type: qlora}\n")
    rc, out, runs = kubetune_run(tmp_path, path, capsys)
    flat = " ".join(out.split())
    assert rc == runner.EXIT_FAILED and f"{path}: spec.adapter.type: qlora" in flat and "needs a CUDA GPU" in flat
    assert written(runs) == []


def write_safetensors(folder: Path, shapes: dict[str, list[int]]) -> Path:
    """A safetensors file whose header names these tensors (the data is zeros)."""
    folder.mkdir(parents=True, exist_ok=True)
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4 * (shape[0] * (shape[1] if len(shape) > 1 else 1))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return folder


TINY_LLAMA = {
    "model.embed_tokens.weight": [8, 4],
    "model.layers.0.self_attn.q_proj.weight": [4, 4],
    "model.layers.0.self_attn.v_proj.weight": [4, 4],
    "model.layers.0.mlp.down_proj.weight": [4, 4],
    "model.layers.0.input_layernorm.weight": [4],
    "model.norm.weight": [4],
}


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ("lm_head", "lm_head is the output layer"),
        ("q_proj,c_attn", "c_attn names no module of the model; this model's linear layers are down_proj, q_proj, v_proj"),
    ],
)  # fmt: skip
def test_lora_targets_the_local_model_lacks_are_refused_in_preflight(tmp_path, capsys, targets, expected):
    model = write_safetensors(tmp_path / "model", TINY_LLAMA)
    path = manifest(tmp_path, f"  adapter: {{type: lora, targetModules: '{targets}'}}\n", base=str(model))
    rc, out, runs = kubetune_run(tmp_path, path, capsys)
    flat = " ".join(out.split())
    assert rc == runner.EXIT_FAILED and f"{path}: spec.adapter.targetModules: " in flat and expected in flat, flat
    assert written(runs) == []


def test_targets_the_model_has_pass(tmp_path):
    modules, linear = adapters.safetensors_modules(write_safetensors(tmp_path / "m", TINY_LLAMA))
    for ok in ("q_proj,v_proj", "all-linear", "self_attn", "embed_tokens", "model.layers.0.mlp.down_proj"):
        assert adapters.target_problem(ok, modules, linear) is None, ok
