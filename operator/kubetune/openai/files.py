"""A namespace's files (`/v1/files`) in its dataset storage, behind one small interface with two back ends:

- `FolderFileStore`: a folder the API server mounts (a PVC). Layout under the root:
  `NAMESPACE/files/FILE_ID.jsonl` (the content) and `FILE_ID.json` (the `file` object). A training pod reads
  the content through `uri_template` (by default `pvc://kubetune-files/{namespace}/files/{id}.jsonl`: a claim
  of that name in each team namespace, bound to the same volume as the API server's mount).
- `S3FileStore` (kubetune.openai.files_s3): `s3://BUCKET/PREFIX/NAMESPACE/files/FILE_ID.jsonl` and `.json`;
  the FineTuneJob reads the `s3://` URI itself, with `spec.s3` from the API server's config.

No database: listing reads the `FILE_ID.json` objects beside the contents; the namespace prefix is the team's
isolation. Uploads are written to a temporary file chunk by chunk (never held in memory), cut off at
`max_bytes`, validated with kubetune.data, and only then committed (moved into place, or uploaded): an invalid
or broken upload leaves nothing behind. The metadata is written after the content and removed before it, so a
listed file always has its content.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import os
import secrets
import tempfile
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
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
READ_CHUNK = 1024 * 1024


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def check_id(file_id: str) -> str:
    """A file id of this API (`file-HEX`); anything else (a path, '..') is simply not found."""
    if not file_id.startswith("file-") or "/" in file_id or "\\" in file_id or file_id.startswith("."):
        raise not_found("file", file_id)
    return file_id


def too_large(max_bytes: int) -> OpenAIError:
    return OpenAIError(
        413, f"The file is larger than this server's limit of {max_bytes:,} bytes.", param="file", code="file_too_large"
    )


async def receive(chunks: AsyncIterator[bytes], dest: Path, max_bytes: int) -> int:
    """Write the upload's chunks to `dest` as they come; refuse it once it passes `max_bytes`. The size."""
    size = 0
    with dest.open("wb") as out:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            out.write(chunk)
    return size


async def validated(path: Path, filename: str) -> Any:
    """kubetune.data's report of a received upload; an invalid file raises OpenAIError naming the lines."""
    report = await asyncio.to_thread(validate_file, path)  # a large file: off the event loop
    if not report.ok:
        lines = [line.replace(str(path), filename) for line in report.rendered_errors(ERRORS_SHOWN)]
        raise OpenAIError(
            400,
            f"Invalid file format for fine-tuning: {filename} has {report.error_count} error(s):\n" + "\n".join(lines),
            param="file",
            code="invalid_file_format",
        )
    return report


class FileStore(abc.ABC):
    """The files of every namespace: upload (validated), get, list, content, delete, and where a job reads one.

    The back ends implement storage only; validation, size limit and the `file` object are shared here. The
    blocking methods (get, list, delete, uri, format) are called off the event loop by the server."""

    max_bytes: int

    @abc.abstractmethod
    def _partial(self, namespace: str, file_id: str) -> Path:
        """Where an upload is received before it is validated (a temporary file this store removes)."""

    @abc.abstractmethod
    def _commit(self, namespace: str, file_id: str, received: Path, obj: dict[str, Any]) -> None:
        """Put the validated content, then its `file` object, in place; on failure leave neither behind."""

    @abc.abstractmethod
    def _read_meta(self, namespace: str, file_id: str) -> dict[str, Any] | None:
        """The stored `file` object, None when there is none."""

    @abc.abstractmethod
    def _metas(self, namespace: str) -> list[dict[str, Any]]:
        """Every stored `file` object of the namespace (unreadable ones skipped)."""

    @abc.abstractmethod
    def _remove(self, namespace: str, file_id: str) -> None:
        """Remove the `file` object, then the content."""

    @abc.abstractmethod
    def object_uri(self, namespace: str, file_id: str) -> str:
        """Where a training pod reads the content (whether or not the file exists: `uri` checks)."""

    @abc.abstractmethod
    def content(self, namespace: str, file_id: str) -> AsyncIterator[bytes]:
        """The content in chunks, read as they are sent (after `get` said the file exists)."""

    def job_spec(self) -> dict[str, Any]:
        """What a FineTuneJob's spec needs to read these files (merged into the jobs the API creates)."""
        return {}

    async def upload(
        self, namespace: str, filename: str, purpose: str, chunks: AsyncIterator[bytes], file_id: str | None = None
    ) -> dict[str, Any]:
        """Store an upload and return its `file` object; an invalid one raises OpenAIError naming the lines."""
        if purpose not in PURPOSES:
            raise invalid(f"purpose must be one of {', '.join(PURPOSES)}; got {purpose!r}", "purpose")
        file_id = check_id(file_id or new_file_id())
        partial = self._partial(namespace, file_id)
        try:
            size = await receive(chunks, partial, self.max_bytes)
            report = await validated(partial, filename)
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
            await asyncio.to_thread(self._commit, namespace, file_id, partial, obj)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return obj

    def get(self, namespace: str, file_id: str) -> dict[str, Any]:
        obj = self._read_meta(namespace, check_id(file_id))
        if obj is None:
            raise not_found("file", file_id)
        return obj

    def uri(self, namespace: str, file_id: str) -> str | None:
        """Where a training pod finds this file; None when the namespace has no such file."""
        try:
            self.get(namespace, file_id)
        except OpenAIError:
            return None
        return self.object_uri(namespace, file_id)

    def format(self, namespace: str, file_id: str) -> str | None:
        """The dataset format kubetune.data detected at upload (chat, preference...); None when unknown."""
        try:
            return (self.get(namespace, file_id).get("kubetune") or {}).get("format")
        except OpenAIError:
            return None

    def list(self, namespace: str, purpose: str | None = None) -> list[dict[str, Any]]:
        """The namespace's files, newest first."""
        files = [f for f in self._metas(namespace) if purpose is None or f.get("purpose") == purpose]
        files.sort(key=lambda f: (f.get("created_at", 0), f["id"]), reverse=True)
        return files

    def delete(self, namespace: str, file_id: str) -> dict[str, Any]:
        self.get(namespace, file_id)
        self._remove(namespace, file_id)
        return {"id": file_id, "object": "file", "deleted": True}


@dataclass
class FolderFileStore(FileStore):
    """Files in a mounted folder (a PVC shared with the training pods)."""

    root: Path
    uri_template: str = DEFAULT_URI_TEMPLATE
    max_bytes: int = DEFAULT_MAX_BYTES

    def folder(self, namespace: str) -> Path:
        return self.root / namespace / "files"

    def _paths(self, namespace: str, file_id: str) -> tuple[Path, Path]:
        folder = self.folder(namespace)
        return folder / f"{file_id}.jsonl", folder / f"{file_id}.json"

    def _partial(self, namespace: str, file_id: str) -> Path:
        content, _ = self._paths(namespace, file_id)
        content.parent.mkdir(parents=True, exist_ok=True)
        return content.with_suffix(".partial")  # on the same volume: the commit is a rename

    def _commit(self, namespace: str, file_id: str, received: Path, obj: dict[str, Any]) -> None:
        content, meta = self._paths(namespace, file_id)
        os.replace(received, content)
        try:
            meta.write_text(json.dumps(obj))
        except BaseException:
            content.unlink(missing_ok=True)
            raise

    def _read_meta(self, namespace: str, file_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._paths(namespace, file_id)[1].read_text())
        except FileNotFoundError:
            return None

    def _metas(self, namespace: str) -> list[dict[str, Any]]:
        folder = self.folder(namespace)
        out = []
        for meta in folder.glob("file-*.json") if folder.is_dir() else ():
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(meta.read_text()))
        return out

    def _remove(self, namespace: str, file_id: str) -> None:
        content, meta = self._paths(namespace, file_id)
        meta.unlink(missing_ok=True)
        content.unlink(missing_ok=True)

    def object_uri(self, namespace: str, file_id: str) -> str:
        return self.uri_template.format(namespace=namespace, id=file_id)

    def content_path(self, namespace: str, file_id: str) -> Path:
        self.get(namespace, file_id)
        return self._paths(namespace, file_id)[0]

    async def content(self, namespace: str, file_id: str) -> AsyncIterator[bytes]:
        with self._paths(namespace, file_id)[0].open("rb") as fh:
            while chunk := await asyncio.to_thread(fh.read, READ_CHUNK):
                yield chunk


def temporary_upload(namespace: str, file_id: str, folder: str | None = None) -> Path:
    """A fresh temporary file for an upload received before it goes to object storage."""
    fd, name = tempfile.mkstemp(prefix=f"{namespace}-{file_id}-", suffix=".partial", dir=folder)
    os.close(fd)
    return Path(name)
