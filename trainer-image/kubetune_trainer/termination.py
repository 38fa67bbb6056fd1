"""Why the container failed, in its termination message, so `kubectl describe` and the job's status say it.

Kubernetes reads the file at the container's `terminationMessagePath` (/dev/termination-log; $KUBETUNE_TERMINATION_LOG
overrides it) when the container ends and keeps at most 4 KiB of it. Without it the status shows whatever
the process printed last ("basic_ios::clear: iostream error" for a full disk). Here each failure becomes one
short line, `<reason>: <detail>`, with the reason one of: data error, model source error, out of disk, out
of memory, configuration error, error. Secret values (tokens and keys in the environment, bearer tokens)
never appear in it.

Outside a pod (no such file and no variable) nothing is written.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from kubetune import constants as c

LIMIT_BYTES = 4096  # what Kubernetes keeps of a termination message

DATA_ERROR = "data error"
MODEL_SOURCE_ERROR = "model source error"
OUT_OF_DISK = "out of disk"
OUT_OF_MEMORY = "out of memory"
CONFIG_ERROR = "configuration error"
EXPORT_ERROR = "export error"  # spec.export could not be written (destination, credentials)
OTHER = "error"

# How a full disk shows when it is not an OSError: torch.save's C++ stream, safetensors' Rust error, ...
_DISK_FULL = re.compile(r"No space left on device|basic_ios::clear|file write failed|StorageFull|Errno 28", re.I)
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|API_?KEY|ACCESS_KEY|CREDENTIAL", re.I)
_SECRET_TEXT = [
    re.compile(r"\bhf_[A-Za-z0-9]{16,}"),  # Hugging Face tokens
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),  # OpenAI-style keys
    re.compile(r"(?i)(bearer\s+)[^\s'\"]+"),
    re.compile(r"(?i)((?:token|api_key|apikey|password|secret)=)[^&\s'\"]+"),
]


def path() -> Path | None:
    """The termination log: $KUBETUNE_TERMINATION_LOG (empty: none), else /dev/termination-log if it exists."""
    configured = os.environ.get(c.ENV_TERMINATION_LOG)
    if configured is not None:
        return Path(configured) if configured else None
    default = Path(c.TERMINATION_LOG_PATH)
    return default if default.exists() else None


def redact(text: str) -> str:
    """`text` without the values of secret-looking environment variables and token-shaped strings."""
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and len(value) >= 8:
            text = text.replace(value, "***")
    for pattern in _SECRET_TEXT:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text


def clip(text: str, limit: int = LIMIT_BYTES) -> str:
    """At most `limit` bytes of UTF-8, cut at a character boundary with an ellipsis."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", errors="ignore") + "..."


def write(reason: str, detail: str) -> str | None:
    """Write `reason: detail` (one line, redacted, at most 4 KiB) as the termination message; returns it."""
    target = path()
    if target is None:
        return None
    detail = " ".join(redact(str(detail)).split())
    message = clip(f"{reason}: {detail}" if detail else reason)
    try:
        target.write_text(message, encoding="utf-8")
    except OSError:
        return None  # never let reporting a failure fail
    return message


def _chain(err: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while err is not None and err not in out and len(out) < 10:
        out.append(err)
        err = err.__cause__ or err.__context__
    return out


def describe(err: BaseException) -> tuple[str, str]:
    """(reason, detail) of an exception, with what to change where there is something to change."""
    chain = _chain(err)
    names = {cls.__name__ for e in chain for cls in type(e).__mro__}
    text = "; ".join(f"{type(e).__name__}: {e}" for e in chain)
    if any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain) or _DISK_FULL.search(text):
        return (
            OUT_OF_DISK,
            f"{err} (the volume being written is full: raise spec.storage.size or keep fewer checkpoints)",
        )
    if "OutOfMemoryError" in names or "CUDA out of memory" in text:
        return OUT_OF_MEMORY, (
            f"GPU memory: {err} (lower hyperparameters.batchSize or maxSeqLength, turn on gradientCheckpointing, "
            "or use more GPUs)"
        )
    if "MemoryError" in names:
        return OUT_OF_MEMORY, f"host memory{': ' + str(err) if str(err) else ''} (raise spec.resources.memory)"
    if "ModelSourceError" in names:
        return MODEL_SOURCE_ERROR, str(err)
    if names & {"DataValidationError", "DatasetError"}:
        return DATA_ERROR, str(err)
    if "TrainerConfigError" in names:
        return CONFIG_ERROR, str(err)
    return OTHER, f"{type(err).__name__}: {err}"


def record_failure(err: BaseException) -> str | None:
    """Write why `err` ended the process; returns the message (None outside a pod)."""
    return write(*describe(err))
