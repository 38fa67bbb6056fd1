"""`kubetune validate` runs the one admission and the method/format table: what the cluster or the trainer
would refuse is refused here, naming the file and the field (or the line)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from kubetune import cli

HEADER = "apiVersion: kubetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: x}\n"
CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
PREFERENCE = {"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}
PROMPT_CHAT = {"messages": [{"role": "user", "content": "Hotels in Lisbon?"}]}
PROMPT_ONLY = {"prompt": "Hotels in Lisbon?"}


def run(capsys, *argv: str) -> tuple[int, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


def job(tmp_path: Path, rows: list[dict], spec: str, name: str = "m.yaml") -> Path:
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / name
    path.write_text(HEADER + "spec:\n  baseModel: {uri: hf://a/b}\n  dataset: {train: {uri: train.jsonl}}\n" + spec)
    return path


def test_a_preference_file_for_an_sft_job_is_refused_with_file_and_reason(tmp_path, capsys):
    path = job(tmp_path, [PREFERENCE] * 12, "")
    rc, out = run(capsys, "validate", str(path))
    assert rc == 1
    expected = f"{path}: spec.dataset.train.uri: {tmp_path / 'train.jsonl'}: spec.method sft trains on chat"
    assert expected in out and "but this data is preference" in out, out


def test_chat_data_for_a_dpo_job_is_refused(tmp_path, capsys):
    rc, out = run(capsys, "validate", str(job(tmp_path, [CHAT] * 12, "  method: dpo\n")))
    assert rc == 1 and "spec.method dpo trains on preference" in out and "this data is chat" in out


def test_a_local_teacher_needs_answers(tmp_path, capsys):
    spec = "  method: distillation\n  distillation: {teacher: {uri: hf://big/teacher}}\n"
    rc, out = run(capsys, "validate", str(job(tmp_path, [PROMPT_CHAT] * 12, spec)))
    assert rc == 1 and "the last message must be the assistant's answer" in out


ENDPOINT = "  method: distillation\n  distillation: {teacher: {endpoint: {url: 'http://t:8000/v1', model: big}}}\n"


@pytest.mark.parametrize("rows", [[PROMPT_CHAT] * 12, [PROMPT_ONLY] * 12, [CHAT] * 6 + [PROMPT_CHAT] * 6])
@pytest.mark.parametrize("fmt", ["auto", "chat"])
def test_endpoint_distillation_accepts_prompts_only(tmp_path, capsys, rows, fmt):
    if fmt == "chat" and "prompt" in rows[0]:
        pytest.skip("a {prompt} line is prompt-completion data, not chat")
    path = job(tmp_path, rows, ENDPOINT + f"  dataset: {{train: {{uri: train.jsonl}}, format: {fmt}}}\n")
    path.write_text(path.read_text().replace("  dataset: {train: {uri: train.jsonl}}\n", "", 1))
    rc, out = run(capsys, "validate", str(path))
    assert rc == 0, out


def test_the_distillation_endpoint_example_promises_prompts_only_and_gets_it(tmp_path, capsys):
    example = (Path(__file__).parents[3] / "examples" / "distillation-endpoint.yaml").read_text()
    assert "prompts only" in example and "format: chat" in example
    text = example.replace("pvc://datasets/travel/prompts.jsonl", "prompts.jsonl")
    (tmp_path / "prompts.jsonl").write_text((json.dumps(PROMPT_CHAT) + "\n") * 12)
    (tmp_path / "m.yaml").write_text(text)
    rc, out = run(capsys, "validate", str(tmp_path / "m.yaml"))
    assert rc == 0, out


def test_run_style_cel_mistakes_are_refused_by_validate(tmp_path, capsys):
    text = HEADER + textwrap.dedent(
        """\
        spec:
          baseModel: {uri: hf://a/b}
          dataset: {train: {uri: pvc://d/t.jsonl}, validation: {uri: pvc://d/v.jsonl}, validationSplit: 0.1}
          freezeLayers: 2
        """
    )
    path = tmp_path / "m.yaml"
    path.write_text(text)
    rc, out = run(capsys, "validate", str(path))
    assert rc == 1
    assert f"{path}: spec.dataset: set at most one" in out and f"{path}: spec.freezeLayers: " in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEADER.replace("kubetune.dev", "Kubetune.dev"), "apiVersion: unsupported apiVersion 'Kubetune.dev/v1alpha1'"),
        (HEADER.replace("apiVersion: kubetune.dev/v1alpha1\n", ""), "apiVersion: apiVersion is missing"),
        (HEADER.replace("{name: x}", "{name: x, namespace: ../../x}"), "metadata.namespace: '../../x' is not a DNS-1123 label"),
    ],
    ids=["capitalised-group", "no-api-version", "namespace-path"],
)  # fmt: skip
def test_wrong_api_version_and_bad_names_exit_1(tmp_path, capsys, text, expected):
    path = tmp_path / "m.yaml"
    path.write_text(text + "spec:\n  baseModel: {uri: hf://a/b}\n  dataset: {train: {uri: pvc://d/t.jsonl}}\n")
    rc, out = run(capsys, "validate", str(path))
    assert rc == 1 and f"{path}: {expected}" in out, out
    assert "all valid" not in out


def test_a_foreign_kind_beside_the_jobs_is_still_skipped(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n")
    rc, out = run(capsys, "validate", str(path))
    assert rc == 0 and "0 resource(s)" in out


def test_an_evaluation_of_another_job_cannot_promote_a_deployment(tmp_path, capsys):
    docs = [
        HEADER + "spec:\n  baseModel: {uri: hf://a/b}\n  dataset: {train: {uri: pvc://d/t.jsonl}}\n",
        "apiVersion: kubetune.dev/v1alpha1\nkind: Evaluation\nmetadata: {name: ev}\n"
        "spec:\n  model: {fineTuneJob: {name: other}}\n  dataset: {uri: pvc://d/test.jsonl}\n",
        "apiVersion: kubetune.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\n"
        "spec:\n  model: {fineTuneJob: {name: x}}\n  promotion: {evaluation: {name: ev}}\n",
    ]
    (tmp_path / "a.yaml").write_text(docs[0] + "---\n" + docs[1])
    (tmp_path / "b.yaml").write_text(docs[2])
    rc, out = run(capsys, "validate", str(tmp_path))
    assert rc == 1
    assert f"{tmp_path / 'b.yaml'}: spec.promotion.evaluation.name: Evaluation 'ev' scores FineTuneJob 'other'" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a: &a ["x","x","x","x","x","x","x","x"]\n' + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 8) + "]\n" for i in range(8)
        ), "excessive aliasing"),
        (HEADER + "spec:\n  backoffLimit: 99999999999999999999\n", ":5: not valid YAML: spec.backoffLimit: integer"),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", ":1: not valid YAML: nested more than 100 levels deep"),
    ],
    ids=["alias-bomb", "int64", "deep"],
)  # fmt: skip
def test_hostile_yaml_is_one_line_and_exit_1(tmp_path, capsys, text, expected):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    rc, out = run(capsys, "validate", str(path))
    assert rc == 1 and expected in out, out
    assert "Traceback" not in out and len(out.splitlines()) == 2
