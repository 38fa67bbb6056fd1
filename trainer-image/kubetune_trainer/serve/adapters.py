"""Several LoRA adapters on one base model (PEFT multi-adapter), loaded and unloaded while serving.

The first adapter wraps the engine's model in a PeftModel; later ones are added to it. A batch runs with
one adapter active (`set_adapter`), or with the adapters off for the base model. Loading and unloading hold
the engine's lock, so they happen between batches, never during one.

A load is atomic: the adapter is checked first (its config is a LoRA config, every module it targets exists
in the base model with the shapes its weights have), and a load that fails anyway is rolled back (the
adapter deleted; the plain model restored when it was the first), so a failed load leaves the server as it
was. Unloading the last adapter restores the plain model too. Should a rollback itself fail, the engine is
marked broken (`engine.broken`): /healthz answers 503 and Kubernetes restarts the server.

PEFT knows each adapter by an internal name (`kt<n>`): user names never reach module names (PEFT refuses
a '.'), and `replace` loads a new version beside the old one and swaps the name over between batches,
so requests for the name never see a gap (vLLM's `load_inplace`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubetune_trainer.serve.loading import ADAPTER_CONFIG, is_adapter

log = logging.getLogger(__name__)

# A DNS-label-like name, as ModelDeployment spec.adapters[].name (vLLM accepts any string; PEFT no '.').
NAME_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_ids = itertools.count()


class AdapterError(ValueError):
    """An adapter that cannot be loaded or unloaded, said in terms the caller can act on.

    `param`: the request field at fault (`lora_name`, `lora_path`, or `model` for a request's adapter)."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = "lora_path") -> None:
        super().__init__(message)
        self.status, self.param = status, param


class EngineBroken(RuntimeError):
    """A failed load could not be rolled back: the model's state is unknown and the server must restart."""


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise AdapterError(
            f"lora_name {name[:80]!r} is not a valid adapter name: use 1-63 letters, digits, '-' or '_', "
            "starting and ending with a letter or digit",
            param="lora_name",
        )


@contextlib.contextmanager
def active_adapter(engine: Any, name: str | None) -> Iterator[None]:
    """`name` active for the duration (None: the base model, adapters off)."""
    if engine.broken:
        raise EngineBroken(engine.broken)
    if name is not None and name not in engine.adapter_ids:
        raise AdapterError(f"the LoRA adapter {name!r} is not loaded (it was unloaded)", status=404, param="model")
    if engine.peft_model is None:
        yield
    elif name is None:
        with engine.model.disable_adapter():
            yield
    else:
        engine.model.set_adapter(engine.adapter_ids[name])
        yield


def _read_config(path: Path, shown: str) -> dict[str, Any]:
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AdapterError(f"lora_path {shown!r}: {ADAPTER_CONFIG} cannot be read as JSON ({e})") from None
    if not isinstance(config, dict):
        raise AdapterError(f"lora_path {shown!r}: {ADAPTER_CONFIG} is not a JSON object")
    kind = config.get("peft_type")
    if kind != "LORA":
        got = f"a {kind} adapter" if isinstance(kind, str) else "not a PEFT adapter config (no peft_type)"
        raise AdapterError(f"lora_path {shown!r}: {ADAPTER_CONFIG} is {got}; this server serves LoRA adapters")
    return config


def _weight_shapes(path: Path, shown: str) -> dict[str, tuple[int, ...]]:
    """The adapter's tensor names and shapes (safetensors: from the header, without reading the tensors)."""
    try:
        if (path / WEIGHT_FILES[0]).is_file():
            from safetensors import safe_open

            with safe_open(str(path / WEIGHT_FILES[0]), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - not a dict
        if (path / WEIGHT_FILES[1]).is_file():
            import torch

            state = torch.load(path / WEIGHT_FILES[1], map_location="cpu", weights_only=True)
            return {k: tuple(v.shape) for k, v in state.items()}
    except Exception as e:  # a truncated or foreign file: the library's words, no local path
        raise AdapterError(f"lora_path {shown!r}: the adapter's weights cannot be read ({type(e).__name__})") from None
    raise AdapterError(f"lora_path {shown!r} holds no {' or '.join(WEIGHT_FILES)}: the adapter has no weights")


def _module_dims(module: Any) -> tuple[int, int] | None:
    """(in, out) features of a linear-like module (a LoRA-wrapped one too); None for other kinds."""
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    if hasattr(base, "in_features") and hasattr(base, "out_features"):
        return int(base.in_features), int(base.out_features)
    return None


def check_fits(base: Any, path: Path, shown: str) -> None:
    """Refuse (400, lora_path) an adapter whose weights name modules the base lacks or have other shapes."""
    _read_config(path, shown)
    for key, shape in sorted(_weight_shapes(path, shown).items()):
        m = re.match(r"^(?:base_model\.model\.)?(.+)\.(lora_A|lora_B)(?:\.[^.]+)?\.weight$", key)
        if not m:
            continue
        module_name, part = m.groups()
        try:
            module = base.get_submodule(module_name)
        except AttributeError:
            raise AdapterError(
                f"lora_path {shown!r}: the adapter targets module {module_name!r}, which this base model does not "
                "have: it is an adapter of another base model"
            ) from None
        dims = _module_dims(module)
        if dims is None or len(shape) != 2:
            continue
        want, got, what = (dims[0], shape[1], "in") if part == "lora_A" else (dims[1], shape[0], "out")
        if want != got:
            raise AdapterError(
                f"lora_path {shown!r}: the adapter does not fit this base model: {module_name} has {want} "
                f"{what}put features, the adapter's {part} has {got}; it is an adapter of another base model"
            )


def _strip_tuner_layers(model: Any) -> None:
    """Put every PEFT-wrapped module of `model` back to its base layer and drop PEFT's config: the plain model."""
    wrapped = [name for name, module in model.named_modules() if hasattr(module, "base_layer") and name]
    outer = [n for n in wrapped if not any(n.startswith(w + ".") for w in wrapped)]
    for name in outer:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, getattr(parent, child).get_base_layer())
    if "peft_config" in vars(model):
        del model.peft_config


def _rollback(engine: Any, peft_id: str, plain: Any) -> None:
    """Undo a failed load; `plain`: the model before it, when it had no adapter yet (PEFT changed it in place)."""
    try:
        if plain is not None:
            _strip_tuner_layers(plain)
            engine.model, engine.peft_model = plain, None
        else:
            if peft_id in engine.model.peft_config:
                engine.model.delete_adapter(peft_id)
            _restore_active(engine)
    except Exception as e:
        engine.broken = f"a failed LoRA adapter load could not be undone ({type(e).__name__}: {e}); restart the server"
        log.exception("rolling back a failed adapter load failed: the server must restart")


def _restore_active(engine: Any) -> None:
    """PEFT makes the newest adapter active; keep one that exists active (batches set their own)."""
    if engine.adapter_ids:
        engine.model.set_adapter(next(iter(engine.adapter_ids.values())))


def _inject(engine: Any, peft_id: str, path: Path) -> None:
    if engine.peft_model is None:
        from peft import PeftModel

        engine.model = PeftModel.from_pretrained(engine.model, str(path), adapter_name=peft_id)
        engine.peft_model = engine.model
    else:
        engine.model.load_adapter(str(path), adapter_name=peft_id)
    engine.model.eval()


def load_adapter(engine: Any, name: str, path: str, *, uri: str | None = None, replace: bool = False) -> None:
    """Load the PEFT adapter at local directory `path` as `name` (holding the engine's lock); atomic.

    `replace`: a name already loaded gets the new adapter between two batches (else that is a 400)."""
    check_name(name)
    shown = uri or path
    if not is_adapter(path):
        raise AdapterError(f"lora_path {shown!r} holds no {ADAPTER_CONFIG}: it is not a LoRA adapter")
    with engine.lock:
        if engine.broken:
            raise EngineBroken(engine.broken)
        if name in engine.adapter_ids and not replace:
            raise AdapterError(
                f"the LoRA adapter {name!r} has already been loaded (load_inplace: true replaces it)", param="lora_name"
            )
        base = engine.model.base_model.model if engine.peft_model is not None else engine.model
        check_fits(base, Path(path), shown)
        peft_id = f"kt{next(_ids)}"
        plain = engine.model if engine.peft_model is None else None
        try:
            _inject(engine, peft_id, Path(path))
        except Exception as e:
            _rollback(engine, peft_id, plain)
            log.warning("loading LoRA adapter %s failed and was undone: %s", name, e)
            raise AdapterError(
                f"lora_path {shown!r}: the adapter cannot be loaded onto this base model ({e})"
            ) from None
        old = engine.adapter_ids.get(name)
        engine.adapter_ids[name] = peft_id
        engine.adapters[name] = shown
        if old is not None:
            engine.model.delete_adapter(old)
        _restore_active(engine)
    log.info("LoRA adapter %s %s", name, "replaced" if old else "loaded")


def unload_adapter(engine: Any, name: str, *, base_name: str | None = None) -> None:
    with engine.lock:
        if name not in engine.adapter_ids:
            if name == base_name:
                raise AdapterError(
                    f"{name!r} is the base model, not a LoRA adapter: it cannot be unloaded", param="lora_name"
                )
            raise AdapterError(f"the LoRA adapter {name!r} cannot be found", status=404, param="lora_name")
        engine.model.delete_adapter(engine.adapter_ids.pop(name))
        del engine.adapters[name]
        if not engine.adapter_ids:  # the last one: back to the plain model (PEFT cannot run with no adapter)
            plain = engine.model.base_model.model  # get_base_model() needs an active adapter
            _strip_tuner_layers(plain)
            engine.model, engine.peft_model = plain, None
        else:
            _restore_active(engine)
    log.info("LoRA adapter %s unloaded", name)
