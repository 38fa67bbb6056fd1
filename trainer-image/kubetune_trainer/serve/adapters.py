"""Several LoRA adapters on one base model (PEFT multi-adapter), loaded and unloaded while serving.

The first adapter wraps the engine's model in a PeftModel; later ones are added to it by name. A batch
runs with one adapter active (`set_adapter`), or with the adapters off for the base model. Loading and
unloading hold the engine's lock, so they happen between batches, never during one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from kubetune_trainer.serve.loading import ADAPTER_CONFIG, is_adapter

log = logging.getLogger(__name__)


class AdapterError(ValueError):
    """An adapter that cannot be loaded or unloaded, said in terms the caller can act on."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config")


@contextlib.contextmanager
def active_adapter(model: Any, name: str | None) -> Iterator[None]:
    """`name` active for the duration (None: the base model, adapters off)."""
    if not _is_peft(model):
        if name is not None:
            raise AdapterError(f"the LoRA adapter {name!r} is not loaded", status=404)
        yield
        return
    if name is None:
        with model.disable_adapter():
            yield
        return
    if name not in model.peft_config:
        raise AdapterError(f"the LoRA adapter {name!r} is not loaded (it was unloaded)", status=404)
    model.set_adapter(name)
    yield


def load_adapter(engine: Any, name: str, path: str, *, uri: str | None = None) -> None:
    """Load the PEFT adapter at local directory `path` as `name` onto `engine.model` (holding its lock)."""
    if not is_adapter(path):
        raise AdapterError(f"lora_path {uri or path!r} holds no {ADAPTER_CONFIG}: it is not a LoRA adapter")
    with engine.lock:
        if name in engine.adapters:
            raise AdapterError(f"the LoRA adapter {name!r} has already been loaded")
        if _is_peft(engine.model):
            engine.model.load_adapter(path, adapter_name=name)
        else:
            from peft import PeftModel

            engine.model = PeftModel.from_pretrained(engine.model, path, adapter_name=name)
        engine.model.eval()
        engine.adapters[name] = uri or path
    log.info("LoRA adapter %s loaded", name)


def unload_adapter(engine: Any, name: str) -> None:
    with engine.lock:
        if name not in engine.adapters:
            raise AdapterError(f"the LoRA adapter {name!r} cannot be found", status=404)
        engine.model.delete_adapter(name)
        del engine.adapters[name]
    log.info("LoRA adapter %s unloaded", name)
