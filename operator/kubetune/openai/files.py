"""A namespace's files (`/v1/files`) in its dataset storage: a folder the API server mounts.

Layout under the storage root: `NAMESPACE/files/FILE_ID.jsonl` (the content) and `FILE_ID.json` (the
`file` object: name, bytes, purpose, created_at). No database: listing reads the folder. A training pod
reads the same content through `uri_template` (by default `pvc://kubetune-files/{namespace}/files/{id}.jsonl`:
a claim of that name in each team namespace, bound to the same volume as the API server's mount).

Uploads are written to a temporary file chunk by chunk (never held in memory), cut off at `max_bytes`,
validated with kubetune.data, and only then moved into place: an invalid file leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.data import validate_file
from kubetune.openai.errors import OpenAIError, invalid, not_found

PURPOSES = ("fine-tune",)
ERRORS_SHOWN = 20  # error lines in the refusal's message
DEFAULT_URI_TEMPLATE = "pvc://kubetune-files/{namespace}/files/{id}.jsonl"


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


@dataclass
class FileStore:
    root: Path
    uri_template: str = DEFAULT_URI_TEMPLATE
    max_bytes: int = 512 * 1024 * 1024

    def folder(self, namespace: str) -> Path:
        return self.root / namespace / "files"

    def _paths(self, namespace: str, file_id: str) -> tuple[Path, Path]:
        if not file_id.startswith("file-") or "/" in file_id or file_id.startswith("."):
            raise not_found("file", file_id)
        folder = self.folder(namespace)
        return folder / f"{file_id}.jsonl", folder / f"{file_id}.json"

    def uri(self, namespace: str, file_id: str) -> str | None:
        """Where a training pod finds this file; None when the namespace has no such file."""
        try:
            _, meta = self._paths(namespace, file_id)
        except OpenAIError:
            return None
        if not meta.exists():
            return None
        return self.uri_template.format(namespace=namespace, id=file_id)

    async def upload(
        self, namespace: str, filename: str, purpose: str, chunks: AsyncIterator[bytes], file_id: str | None = None
    ) -> dict[str, Any]:
        """Store an upload and return its `file` object; an invalid one raises OpenAIError naming the lines."""
        if purpose not in PURPOSES:
            raise invalid(f"purpose must be one of {', '.join(PURPOSES)}; got {purpose!r}", "purpose")
        file_id = file_id or new_file_id()
        content, meta = self._paths(namespace, file_id)
        content.parent.mkdir(parents=True, exist_ok=True)
        partial = content.with_suffix(".partial")
        size = 0
        try:
            with partial.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise OpenAIError(
                            413,
                            f"The file is larger than this server's limit of {self.max_bytes:,} bytes.",
                            param="file",
                            code="file_too_large",
                        )
                    out.write(chunk)
            report = await asyncio.to_thread(validate_file, partial)  # a large file: off the event loop
            if not report.ok:
                lines = [line.replace(str(partial), filename) for line in report.rendered_errors(ERRORS_SHOWN)]
                raise OpenAIError(
                    400,
                    f"Invalid file format for fine-tuning: {filename} has {report.error_count} error(s):\n"
                    + "\n".join(lines),
                    param="file",
                    code="invalid_file_format",
                )
            os.replace(partial, content)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": size,
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
            "kubetune": {"format": report.format, "examples": report.examples, "warnings": report.warnings},
        }
        meta.write_text(json.dumps(obj))
        return obj

    def get(self, namespace: str, file_id: str) -> dict[str, Any]:
        _, meta = self._paths(namespace, file_id)
        try:
            return json.loads(meta.read_text())
        except FileNotFoundError:
            raise not_found("file", file_id) from None

    def format(self, namespace: str, file_id: str) -> str | None:
        """The dataset format kubetune.data detected at upload (chat, preference...); None when unknown."""
        try:
            return (self.get(namespace, file_id).get("kubetune") or {}).get("format")
        except OpenAIError:
            return None

    def content_path(self, namespace: str, file_id: str) -> Path:
        self.get(namespace, file_id)
        return self._paths(namespace, file_id)[0]

    def list(self, namespace: str, purpose: str | None = None) -> list[dict[str, Any]]:
        """The namespace's files, newest first."""
        folder = self.folder(namespace)
        files = []
        for meta in folder.glob("file-*.json") if folder.is_dir() else ():
            with contextlib.suppress(OSError, ValueError):
                obj = json.loads(meta.read_text())
                if purpose is None or obj.get("purpose") == purpose:
                    files.append(obj)
        files.sort(key=lambda f: (f.get("created_at", 0), f["id"]), reverse=True)
        return files

    def delete(self, namespace: str, file_id: str) -> dict[str, Any]:
        content, meta = self._paths(namespace, file_id)
        if not meta.exists():
            raise not_found("file", file_id)
        meta.unlink()
        with contextlib.suppress(FileNotFoundError):
            content.unlink()
        return {"id": file_id, "object": "file", "deleted": True}
