"""Model URIs -> local paths: pvc://, file://, relative paths, hf:// (offline), unknown schemes."""

import pytest

import s3server
from kubetune.api.runconfig import StorageMap
from kubetune_trainer.sources import ModelSourceError, parse_hf_uri, resolve_model

s3_server, s3_env = s3server.s3_server, s3server.s3_env  # the real local S3 server's fixtures


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


def test_a_revision_given_in_the_spec_is_recorded_with_the_base_model(tmp_path, tiny_model, monkeypatch):
    """kubetune.json's base_model is what continual runs, merges and evaluations load the adapter onto:
    spec.baseModel.revision must travel with it, or they apply the adapter to the hub's newest weights."""
    from kubetune.api.finetunejob import FineTuneJobSpec
    from kubetune_trainer import modeling

    seen = []

    def fake_resolve(uri, storage=None, *, token_env=None, revision=None, download=True):
        seen.append((uri, revision))
        return str(tiny_model)

    monkeypatch.setattr(modeling, "resolve_model", fake_resolve)
    spec = FineTuneJobSpec.model_validate(
        {
            "method": "sft",
            "baseModel": {"uri": "hf://acme/tiny", "revision": "v1.2"},
            "dataset": {"train": {"uri": "train.jsonl"}},
            "adapter": {"type": "lora", "r": 4, "alpha": 8},
        }
    )
    loaded = modeling.load_model(spec, "hf://acme/tiny", None, modeling.Precision())
    assert seen == [("hf://acme/tiny", "v1.2")]
    assert loaded.base_model == "hf://acme/tiny@v1.2"


def test_qlora_loads_each_worker_s_copy_on_its_own_gpu(monkeypatch):
    """Under accelerate/torchrun every rank loads the 4-bit model before the Trainer picks its GPU."""
    from kubetune_trainer import modeling

    monkeypatch.setenv("LOCAL_RANK", "3")
    assert modeling.quantized_device_map() == {"": 3}
    monkeypatch.delenv("LOCAL_RANK")
    assert modeling.quantized_device_map() == {"": 0}


def test_hf_downloads_skip_weights_transformers_never_loads(monkeypatch):
    import fnmatch

    import huggingface_hub

    from kubetune_trainer import sources

    seen = {}

    def fake_snapshot_download(repo, **kwargs):
        seen.update(repo=repo, **kwargs)
        return "/cache/model"

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert sources._download_hf("hf://meta/llama@v1", "meta/llama", "v1", None) == "/cache/model"
    assert seen["repo"] == "meta/llama" and seen["revision"] == "v1"
    skipped = ["original/consolidated.00.pth", "model-q4.gguf", "onnx/model.onnx"]
    kept = ["model-00001-of-00002.safetensors", "tokenizer.json", "config.json"]
    assert all(any(fnmatch.fnmatch(f, p) for p in seen["ignore_patterns"]) for f in skipped)
    assert not any(fnmatch.fnmatch(f, p) for f in kept for p in seen["ignore_patterns"])


@pytest.mark.parametrize("uri", ["hf://../x", "hf://a/b/c/d", "hf://org/na me", "hf://org/name@"])
def test_odd_hf_names_are_a_model_source_error_not_a_hub_traceback(uri):
    with pytest.raises(ModelSourceError, match="model URI 'hf://"):
        resolve_model(uri)


def test_a_bad_revision_from_the_spec_is_a_model_source_error():
    with pytest.raises(ModelSourceError, match="is not a revision"):
        resolve_model("hf://org/name", revision="a b")


def test_a_pvc_uri_cannot_read_outside_its_claim(tmp_path):
    """In the pod claims are mounted side by side under one root: pvc://a/../b (or a link) must not reach b."""
    (tmp_path / "pvc" / "a").mkdir(parents=True)
    (tmp_path / "pvc" / "b" / "secret-model").mkdir(parents=True)
    (tmp_path / "pvc" / "a" / "link").symlink_to(tmp_path / "pvc" / "b")
    storage = StorageMap(pvc_root=str(tmp_path / "pvc"))
    with pytest.raises(ModelSourceError, match=r"'\.\.' may not appear"):
        resolve_model("pvc://a/../b/secret-model", storage)
    with pytest.raises(ModelSourceError, match="outside the claim 'a'"):
        resolve_model("pvc://a/link/secret-model", storage)


def test_an_s3_object_key_with_dot_dot_cannot_write_outside_the_download(s3_env, tmp_path, monkeypatch):
    """Against the real test S3 server (tests/s3server.py): a key with '..' never becomes a file outside."""
    s3_env.create_bucket("bucket")
    s3_env.put("bucket", "models/m/config.json", b"{}")
    s3_env.put("bucket", "models/m/../../../../escaped.txt", b"outside")
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelSourceError, match="s3://bucket/models/m"):
        resolve_model("s3://bucket/models/m")
    assert not list(tmp_path.rglob("escaped.txt"))
