"""What kubectl refuses or expands in a manifest file, `kubetune validate` and `kubetune run` do too:
duplicate keys, `kind: List` wrappers, files without objects."""

from __future__ import annotations

from pathlib import Path

from kubetune import cli
from kubetune.local import runner

JOB = (
    "apiVersion: kubetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: x}\n"
    "spec:\n  baseModel: {uri: hf://a/b}\n  dataset: {train: {uri: hf://d/e}}\n"
)


def validate(capsys, *paths: Path) -> tuple[int, str]:
    rc = cli.main(["validate", *map(str, paths)])
    out = capsys.readouterr()
    return rc, out.out + out.err


def kubetune_run(tmp_path: Path, path: Path, capsys) -> tuple[int, str]:
    rc = runner.main([str(path), "--runs-dir", str(tmp_path / "runs"), "--no-serve"])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_a_duplicate_mapping_key_is_refused_with_its_line(tmp_path, capsys):
    path = tmp_path / "dup.yaml"
    path.write_text(JOB + "  method: sft\n  method: dpo\n")
    rc, out = validate(capsys, path)
    assert rc == 1
    assert f"{path}:8: not valid YAML: spec: mapping key 'method' already defined at line 7" in out, out
    # a key a merge (`<<`) brought in may still be set again, as in go-yaml
    merged = JOB.replace("{train: {uri: hf://d/e}}", "{<<: {train: {uri: hf://d/f}}, train: {uri: hf://d/e}}")
    path.write_text(merged)
    assert validate(capsys, path)[0] == 0


def list_of(*items: str) -> str:
    body = "".join("- " + item.replace("\n", "\n  ").rstrip() + "\n" for item in items)
    return "apiVersion: v1\nkind: List\nitems:\n" + body


def test_the_items_of_a_list_are_admitted_like_documents(tmp_path, capsys):
    path = tmp_path / "list.yaml"
    path.write_text(list_of(JOB, JOB.replace("name: x", "name: y").replace("hf://a/b", "ftp://nope")))
    rc, out = validate(capsys, path)
    assert rc == 1
    assert "2 resource(s)" in out and f"{path}.items[1]: spec.baseModel.uri" in out, out


def test_run_sees_the_items_of_a_list(tmp_path, capsys):
    path = tmp_path / "list.yaml"
    path.write_text(list_of(JOB.replace("hf://a/b", "ftp://nope")))
    rc, out = kubetune_run(tmp_path, path, capsys)
    assert rc == 1 and f"{path}.items[0]: spec.baseModel.uri" in out, out


def test_an_empty_file_named_explicitly_has_no_objects(tmp_path, capsys):
    path = tmp_path / "empty.yaml"
    path.write_text("  \n# nothing\n")
    rc, out = validate(capsys, path)
    assert rc == 1 and f"{path}: no objects" in out, out
    rc, out = kubetune_run(tmp_path, path, capsys)
    assert rc == 1 and f"{path}: no objects" in out, out


def test_an_empty_file_in_a_folder_is_skipped_with_a_warning(tmp_path, capsys):
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "job.yaml").write_text(JOB)
    rc, out = validate(capsys, tmp_path)
    assert rc == 0 and "warning: " in out and "empty.yaml: no objects" in out, out
