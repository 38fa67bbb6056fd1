"""kubetune.objectstore against a real S3-compatible server (moto's server mode on localhost)."""

from __future__ import annotations

import json

import pytest

import s3server
from kubetune import objectstore
from kubetune.data import validate_file

s3_server, s3_env = s3server.s3_server, s3server.s3_env  # the real local S3 server's fixtures


def test_an_object_streams_line_by_line_as_a_local_file_would(s3_env, tmp_path):
    s3_env.create_bucket("lines")
    body = b"\xef\xbb\xbffirst\r\n\nthird\nno newline at the end"
    s3_env.put("lines", "a/b.txt", body)
    with objectstore.open_lines("s3://lines/a/b.txt") as stream:
        remote = list(stream)
    (tmp_path / "b.txt").write_bytes(body)
    with open(tmp_path / "b.txt", "rb") as fh:
        assert remote == list(fh)


def test_lines_split_across_chunks_come_out_whole():
    chunks = [b"ab", b"c\nde", b"\n", b"\nf"]
    assert list(objectstore._split_lines(chunks)) == [b"abc\n", b"de\n", b"\n", b"f"]


def test_validation_of_an_s3_dataset_names_the_broken_line(s3_env):
    s3_env.create_bucket("data")
    msg = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    lines = [json.dumps({"messages": [{**msg[0], "content": f"q{i}"}, msg[1]]}) for i in range(12)]
    lines[6] = '{"messages": [ broken'
    s3_env.put("data", "train.jsonl", ("\n".join(lines) + "\n").encode())
    report = validate_file("s3://data/train.jsonl")
    assert not report.ok
    assert [e.line for e in report.errors] == [7]
    assert "s3://data/train.jsonl:7" in report.render()


def test_a_folder_goes_up_and_comes_back_with_multipart_for_large_files(s3_env, tmp_path, monkeypatch):
    monkeypatch.setattr(objectstore, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "small.json").write_text("{}")
    (src / "big.bin").write_bytes(bytes(range(256)) * (7 * 4096))  # 7 MiB: two parts
    s3_env.create_bucket("models")
    uploaded = objectstore.upload_folder(src, "s3://models/exp/one/")
    assert [p for p, _, _ in uploaded] == ["big.bin", "sub/small.json"]
    assert objectstore.list_objects("s3://models/exp/one") == [
        ("exp/one/big.bin", 7 * 1024 * 1024),
        ("exp/one/sub/small.json", 2),
    ]
    dest = tmp_path / "dest"
    assert objectstore.download_prefix("s3://models/exp/one", dest) == 2
    assert (dest / "big.bin").read_bytes() == (src / "big.bin").read_bytes()


def test_a_missing_object_is_an_error_that_names_it_and_the_endpoint(s3_env):
    s3_env.create_bucket("empty")
    with pytest.raises(objectstore.ObjectStoreError, match=r"s3://empty/nope.jsonl: cannot read it at http://127"):
        objectstore.read_bytes("s3://empty/nope.jsonl")
    report = validate_file("s3://empty/nope.jsonl")
    assert not report.ok and "no such object" in report.render()


def test_the_spec_endpoint_wins_over_the_environment(s3_env, monkeypatch):
    s3_env.create_bucket("spec")
    s3_env.put("spec", "x", b"from the spec's endpoint\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with objectstore.configured(objectstore.S3Options(endpoint=s3_env.endpoint)):
        assert objectstore.read_bytes("s3://spec/x") == b"from the spec's endpoint\n"
    with pytest.raises(objectstore.ObjectStoreError, match=r"127\.0\.0\.1:9\b"):
        objectstore.read_bytes("s3://spec/x")


def test_an_unreadable_object_is_one_error_not_also_an_empty_file(s3_env):
    s3_env.create_bucket("gone")
    report = validate_file("s3://gone/train.jsonl")
    assert len(report.errors) == 1, report.render()
    assert "no such object" in report.render() and "empty" not in report.render()


def test_validate_reads_no_s3_dataset_of_a_manifest_that_does_not_validate(s3_env, tmp_path):
    """Its spec.s3 (endpoint) is not known then: the read would go to the environment's or AWS's endpoint."""
    from kubetune.cli import validate_paths

    s3_env.create_bucket("mlteam")
    s3_env.put("mlteam", "train.jsonl", b'{"messages": [{"role": "user", "content": "hi"}]}\n' * 20)
    manifest = tmp_path / "job.yaml"
    manifest.write_text(
        "apiVersion: kubetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: x}\n"
        "spec:\n  baseModel: {uri: hf://a/b}\n  dataset: {train: {uri: s3://mlteam/train.jsonl}}\n"
        "  s3: {endpoint: 'http://127.0.0.1:9'}\n  noSuchField: 1\n"
    )
    found = validate_paths([manifest])
    assert any("noSuchField" in e for e in found.errors), found.errors
    assert found.datasets == 0
    assert any("s3://mlteam/train.jsonl not read: fix the errors above first" in w for w in found.warnings)
