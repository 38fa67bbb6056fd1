"""What `spec.adapter.targetModules` means, and which module names a model offers for it.

PEFT matches a listed name against every module of the model: a module is targeted when its full name
equals the target or ends with `.` + target (`q_proj` targets `model.layers.0.self_attn.q_proj`). A
target that matches nothing fails deep inside PEFT; the output layer (`lm_head`) fails inside TRL, which
computes log-probabilities from its weight directly. Both are said here first, in kubetune's words, by
the trainer right after it loads the model and by `kubetune run` from a local model's weight files.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from pathlib import Path

ALL_LINEAR = "all-linear"
OUTPUT_LAYERS = frozenset({"lm_head"})  # the conventional name of a causal LM's output projection
FIELD = "spec.adapter.targetModules"


def targets(target_modules: str) -> list[str] | None:
    """The listed module names; None for all-linear (PEFT picks every linear layer but the output)."""
    if target_modules.strip() == ALL_LINEAR:
        return None
    return [t.strip() for t in target_modules.split(",") if t.strip()]


def matches(target: str, module: str) -> bool:
    return module == target or module.endswith("." + target)


def target_problem(
    target_modules: str, modules: Iterable[str], linear: Iterable[str] = (), output_layer: str | None = None
) -> str | None:
    """Why the targets cannot be trained on a model with these modules (full names); None when they can.

    `linear`: the full names of its linear layers, offered in the message; `output_layer`: the full name
    of its output projection when known (else the conventional `lm_head`).
    """
    wanted = targets(target_modules)
    if wanted is None:
        return None
    modules = set(modules)
    outputs = OUTPUT_LAYERS | ({output_layer} if output_layer else set())
    names = sorted({m.rsplit(".", 1)[-1] for m in linear if m not in outputs and m.rsplit(".", 1)[-1] not in outputs})
    offer = f"this model's linear layers are {', '.join(names)}, or use all-linear" if names else "use all-linear"
    problems = []
    for t in wanted:
        if any(matches(t, o) for o in outputs):
            problems.append(
                f"{t} is the output layer, which LoRA cannot train here (TRL computes the log-probabilities "
                "from its weight directly)"
            )
        elif not any(matches(t, m) for m in modules):
            problems.append(f"{t} names no module of the model")
    return f"{FIELD}: {'; '.join(problems)}; {offer}" if problems else None


def safetensors_modules(model_dir: Path) -> tuple[set[str], list[str]] | None:
    """(every module with weights, those with a 2-D weight) from the safetensors headers alone: no torch,
    nothing loaded. None when the folder has no safetensors weights (another format, or an adapter)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files or (model_dir / "adapter_config.json").is_file():
        return None
    modules: set[str] = set()
    linear: list[str] = []
    for f in files:
        header = _header(f)
        if header is None:
            return None
        for name, info in header.items():
            if name == "__metadata__" or "." not in name:
                continue
            module = name.rsplit(".", 1)[0]
            modules.add(module)
            shape = info.get("shape") if isinstance(info, dict) else None
            if name.endswith(".weight") and isinstance(shape, list) and len(shape) == 2 and "embed" not in module:
                linear.append(module)
    # every prefix of a module name is a module too (model.layers.0.self_attn)
    modules |= {m.rsplit(".", i)[0] for m in list(modules) for i in range(1, m.count(".") + 1)}
    return modules, linear


def _header(path: Path) -> dict | None:
    """The JSON header of a safetensors file: an 8-byte little-endian length, then that much JSON."""
    try:
        with path.open("rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > 100 << 20:
                return None
            header = json.loads(fh.read(size))
    except (OSError, struct.error, ValueError):
        return None
    return header if isinstance(header, dict) else None
