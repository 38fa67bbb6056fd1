"""The one YAML loader refuses hostile or non-JSON input at once, naming the line (and the field)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from kubetune.api import iter_documents, yamlload
from kubetune.api.runconfig import TrainRunConfig

HEAD = "apiVersion: kubetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: x}\n"


def billion_laughs(levels: int = 9) -> str:
    lines = [HEAD, 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    lines.append(f"spec: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def refusal(tmp_path: Path, text: str) -> yaml.MarkedYAMLError:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(yaml.MarkedYAMLError) as info:
        list(iter_documents(path))
    return info.value


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    started = time.monotonic()
    err = refusal(tmp_path, billion_laughs())
    assert time.monotonic() - started < 2
    assert "excessive aliasing" in err.problem and err.problem_mark.line >= 3


def test_go_yaml_alias_ratio_refuses_a_document_made_mostly_of_aliases():
    # 300 aliases to a 1,000-item list: 300,000 nodes from 1,000 written ones.
    text = "a: &a [" + ",".join(["1"] * 1000) + "]\nb: [" + ",".join(["*a"] * 300) + "]\n"
    with pytest.raises(yamlload.LimitError, match="aliasing"):
        yamlload.load_all(text)


def test_moderate_aliases_and_merge_keys_are_fine():
    docs = yamlload.load_all("base: &b {cpu: '4'}\none: *b\ntwo: {<<: *b, gpus: 1}\n")
    assert docs == [{"base": {"cpu": "4"}, "one": {"cpu": "4"}, "two": {"cpu": "4", "gpus": 1}}]


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nested more than 100 levels deep"),
        (HEAD + "spec:\n  backoffLimit: 99999999999999999999999\n", 5, "spec.backoffLimit: integer 99999999999999999999999 is out of range"),
        (HEAD + "spec:\n  backoffLimit: " + "9" * 5000 + "\n", 5, "spec.backoffLimit: integer 9999"),
        (HEAD + "spec:\n  hyperparameters: {learningRate: .nan}\n", 5, "spec.hyperparameters.learningRate: .nan is not a finite number"),
        ("a: &a [*a]\n", 1, "a[0]: an alias refers to a value that contains it"),
        ("a: !!binary aGVsbG8=\n", 1, "a: the tag tag:yaml.org,2002:binary is not a JSON value"),
        ("a: !custom x\n", 1, "a: the tag !custom is not a JSON value"),
        ("spec:\n  1: x\n", 2, "spec: mapping key '1' is not a string"),
        ("spec:\n  [a]: x\n", 2, "spec: mapping key 'a collection' is not a string"),
    ],
    ids=["deep", "int64", "huge-int", "nan", "recursive-alias", "binary", "custom-tag", "int-key", "complex-key"],
)  # fmt: skip
def test_input_json_cannot_hold_is_one_error_with_line_and_field(tmp_path, text, line, expected):
    err = refusal(tmp_path, text)
    assert err.problem.startswith(expected), err.problem
    assert err.problem_mark.line + 1 == line


def test_timestamps_stay_strings():
    assert yamlload.load_all("when: 2024-01-01\n") == [{"when": "2024-01-01"}]


def test_run_configs_are_read_with_the_same_loader(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("a: &a [" + ",".join(["*a"] * 2) + "]\n")
    with pytest.raises(yaml.YAMLError, match="recursive alias"):
        TrainRunConfig.load(path)
