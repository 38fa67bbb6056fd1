"""A base model's config.json, and nothing else of it, from where a FineTuneJob names the model.

hf://ORG/NAME[@REVISION]: that one file through huggingface_hub's `hf_hub_download` (cached; never the
weights; a token from HF_TOKEN when the repository is gated). pvc://CLAIM/PATH, file:// and paths: read
through a StorageMap (the runs folder for local runs, /mnt/pvc in a pod). An adapter checkpoint (PEFT's
adapter_config.json, no config.json) leads to its base model. s3:// and baseModel.fromJob are not read here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kubetune.api.common import split_hf_uri
from kubetune.api.memoryplan import ModelConfigError, ModelShape
from kubetune.api.runconfig import StorageMap


class ModelConfigUnavailable(Exception):
    """config.json cannot be read from here; the message says why (the plan is then skipped, not failed)."""


def parse_model_config(text: str, where: str) -> dict[str, Any]:
    """config.json's text as a dict; ModelConfigError naming `where` when it is not JSON or not an object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelConfigError(f"{where}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ModelConfigError(f"{where}: a JSON {type(value).__name__}, not an object of model settings")
    if where.endswith("adapter_config.json"):
        return value
    try:
        ModelShape.from_config(value)  # sizes present and positive: say so with the file's name
    except ModelConfigError as err:
        raise ModelConfigError(f"{where}: {str(err).removeprefix('config.json: ')}") from err
    return value


def read_model_config(
    uri: str,
    storage: StorageMap | None = None,
    *,
    revision: str | None = None,
    token: str | None = None,
    hub_cache_only: bool = False,
) -> dict[str, Any]:
    """The parsed config.json of the model at `uri`; `hub_cache_only`: never ask the Hub, only its local cache."""
    storage = storage or StorageMap()
    if uri.startswith("hf://"):
        return _from_hub(uri, revision, token, hub_cache_only)
    try:
        path = storage.local_path(uri)
    except ValueError as err:
        raise ModelConfigUnavailable(str(err)) from err
    if path is None:
        raise ModelConfigUnavailable(f"{uri}: config.json is read from hf://, pvc:// and local paths only")
    return _from_folder(path, storage)


def _from_folder(path: Path, storage: StorageMap, depth: int = 0) -> dict[str, Any]:
    config, adapter = path / "config.json", path / "adapter_config.json"
    try:
        if config.is_file():
            return parse_model_config(config.read_text(), str(config))
        if adapter.is_file() and depth == 0:
            base = str(parse_model_config(adapter.read_text(), str(adapter)).get("base_model_name_or_path") or "")
            if base.startswith("hf://") or (base.count("/") == 1 and not Path(base).exists()):
                return _from_hub(base if base.startswith("hf://") else f"hf://{base}", None, None, True)
            return _from_folder(Path(base), storage, depth + 1)
    except OSError as err:
        raise ModelConfigUnavailable(f"{config}: {err}") from err
    raise ModelConfigUnavailable(f"no config.json in {path}")


def _from_hub(uri: str, revision: str | None, token: str | None, cache_only: bool = False) -> dict[str, Any]:
    repo, pinned = split_hf_uri(uri)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise ModelConfigUnavailable(f"{uri}: reading config.json from the Hub needs huggingface_hub") from err
    try:
        path = hf_hub_download(
            repo,
            "config.json",
            revision=pinned or revision,
            token=token or os.environ.get("HF_TOKEN"),
            local_files_only=cache_only,
        )
        text = Path(path).read_text()
    except Exception as err:  # offline, gated, no such repository: the plan is skipped with the reason
        where = "in the local Hub cache" if cache_only else "from the Hub"
        raise ModelConfigUnavailable(f"{uri}: no config.json {where} ({type(err).__name__})") from err
    return parse_model_config(text, f"{uri}: config.json")
