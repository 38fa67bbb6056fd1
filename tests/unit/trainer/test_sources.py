"""Model URIs -> local paths: pvc://, file://, relative paths, hf:// (offline), unknown schemes."""

import pytest

from kubetune.api.runconfig import StorageMap
from kubetune_trainer.sources import ModelSourceError, parse_hf_uri, resolve_model


def test_local_schemes(tmp_path):
    (tmp_path / "pvc" / "models" / "tiny").mkdir(parents=True)
    (tmp_path / "base" / "runs" / "tiny").mkdir(parents=True)
    storage = StorageMap(pvc_root=str(tmp_path / "pvc"), base_dir=str(tmp_path / "base"))
    assert resolve_model("pvc://models/tiny", storage) == str(tmp_path / "pvc" / "models" / "tiny")
    assert resolve_model(f"file://{tmp_path}/pvc/models/tiny", storage) == str(tmp_path / "pvc" / "models" / "tiny")
    assert resolve_model("runs/tiny", storage) == str(tmp_path / "base" / "runs" / "tiny")


def test_a_missing_local_model_names_the_uri_and_path(tmp_path):
    with pytest.raises(ModelSourceError, match=r"pvc://models/nope.*nothing at"):
        resolve_model("pvc://models/nope", StorageMap(pvc_root=str(tmp_path)))


def test_hf_uri_with_revision():
    assert parse_hf_uri("hf://Qwen/Qwen2.5-0.5B-Instruct@main") == ("Qwen/Qwen2.5-0.5B-Instruct", "main")
    assert resolve_model("hf://Qwen/Qwen2.5-0.5B-Instruct", download=False) == "Qwen/Qwen2.5-0.5B-Instruct"


def test_hf_offline_without_cache_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelSourceError, match="hf://kubetune/does-not-exist"):
        resolve_model("hf://kubetune/does-not-exist")


def test_unknown_scheme():
    with pytest.raises(ModelSourceError, match="not supported"):
        resolve_model("ftp://x/y")
