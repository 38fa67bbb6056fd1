"""Model sources: turn a model URI into something `from_pretrained` can read.

    resolve_model("pvc://models/qwen", storage)        -> "/mnt/pvc/models/qwen"
    resolve_model("file:///models/tiny", storage)      -> "/models/tiny"
    resolve_model("runs/tiny", storage)                -> "<base_dir>/runs/tiny"
    resolve_model("hf://Qwen/Qwen2.5-0.5B@main", ...)  -> local snapshot of the repository (token from env)
    resolve_model("s3://bucket/models/qwen", ...)      -> local copy under the cache directory (obstore)

Shared by training, evaluation and serving: one place knows the schemes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse

from kubetune.api.common import UriError, pinned_uri, split_hf_uri
from kubetune.api.runconfig import StorageMap
from kubetune.constants import ENV_HF_TOKEN

__all__ = ["ModelSourceError", "parse_hf_uri", "pinned_uri", "resolve_model"]


class ModelSourceError(ValueError):
    """A model URI that cannot be read; the message names the URI and what to change."""


def parse_hf_uri(uri: str) -> tuple[str, str | None]:
    """hf://ORG/NAME[@REVISION] -> (repo id, revision); the form is kubetune.api's (split_hf_uri)."""
    try:
        return split_hf_uri(uri)
    except UriError as err:
        raise ModelSourceError(f"model URI {err}") from None


def _cache_dir() -> Path:
    return Path(os.environ.get("KUBETUNE_CACHE", os.environ.get("HF_HOME", Path.home() / ".cache" / "kubetune")))


def resolve_model(
    uri: str,
    storage: StorageMap | None = None,
    *,
    token_env: str | None = ENV_HF_TOKEN,
    revision: str | None = None,
    download: bool = True,
) -> str:
    """The local directory (or, with `download=False`, the hub id) a model URI names.

    `token_env` names the environment variable holding the hub token (the pod gets the referenced
    Secret's key there); the token itself never appears in arguments, logs or errors.
    """
    storage = storage or StorageMap()
    try:
        local = storage.local_path(uri)
    except UriError as err:
        raise ModelSourceError(f"model URI {err}") from None
    if local is not None:
        if not local.exists():
            raise ModelSourceError(f"model URI {uri!r}: nothing at {local}; check the path (and the mounted PVC)")
        return str(local)
    scheme = urlparse(uri).scheme
    if scheme == "hf":
        repo, rev = parse_hf_uri(uri)
        rev = revision or rev
        if revision:
            parse_hf_uri(f"hf://{repo}@{revision}")  # spec.baseModel.revision has the same form
        if not download:
            return repo
        return _download_hf(uri, repo, rev, os.environ.get(token_env) if token_env else None)
    if scheme == "s3":
        return _download_s3(uri)
    raise ModelSourceError(
        f"model URI {uri!r}: scheme {scheme!r} is not supported; use hf://ORG/NAME, pvc://CLAIM/PATH, "
        "s3://BUCKET/PREFIX, file:///PATH or a relative path"
    )


# Files in model repositories that transformers never loads: other runtimes' copies of the same weights,
# often as large as the model itself (GGUF quantisations, ONNX/OpenVINO/Core ML exports, TF/Flax weights,
# Meta's original checkpoints).
HF_IGNORE = ["*.gguf", "*.onnx", "*.onnx_data", "onnx/*", "openvino/*", "coreml/*", "original/*", "*.h5", "*.msgpack"]


def _download_hf(uri: str, repo: str, revision: str | None, token: str | None) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return snapshot_download(repo, revision=revision, token=token or None, ignore_patterns=HF_IGNORE)
    except LocalEntryNotFoundError as err:
        raise ModelSourceError(
            f"model URI {uri!r}: not in the local cache and the hub cannot be reached (HF_HUB_OFFLINE?): {err}"
        ) from None
    except HfHubHTTPError as err:
        hint = " (gated or private: set baseModel.tokenSecretRef)" if not token else ""
        raise ModelSourceError(f"model URI {uri!r}: download failed{hint}: {err}") from None


def _download_s3(uri: str) -> str:
    """Copy every object under s3://BUCKET/PREFIX into the cache (once), with kubetune.objectstore: the
    endpoint and region from the resource's `s3` section, credentials from the environment or the pod's identity."""
    from kubetune.objectstore import ObjectStoreError, download_prefix

    dest = _cache_dir() / "s3" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    done = dest / ".complete"
    if done.exists():
        return str(dest)
    try:
        count = download_prefix(uri, dest)
    except ObjectStoreError as err:
        raise ModelSourceError(f"model URI {err}") from None
    if count == 0:
        raise ModelSourceError(f"model URI {uri!r}: no objects under that prefix")
    done.touch()
    return str(dest)
