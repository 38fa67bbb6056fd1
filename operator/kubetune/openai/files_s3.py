"""The `/v1/files` back end on object storage: `s3://BUCKET/PREFIX/NAMESPACE/files/FILE_ID.jsonl`, with the
`file` object beside it as `FILE_ID.json`, through kubetune.objectstore (obstore).

An upload is received into a temporary file on the API server's own disk (cut off at `max_bytes`), validated
with kubetune.data, and only then uploaded (a multipart upload from 16 MiB; a failed one is aborted): a
refused or broken upload never reaches the bucket. The FineTuneJobs the API creates read the `s3://` URI
themselves, with `spec.s3` from the same settings (`job_spec`); credentials reach the training pod from the
Secret the config names (`credentialsSecretRef`, in the job's namespace), never through the spec's values.
The API server's own credentials are the standard AWS environment variables (or the pod's identity).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune import objectstore
from kubetune.api.objectstorage import S3Spec
from kubetune.openai.files import DEFAULT_MAX_BYTES, FileStore, temporary_upload


@dataclass
class S3FileStore(FileStore):
    """Files under s3://BUCKET/PREFIX/ (one prefix per namespace)."""

    location: str  # s3://BUCKET/PREFIX
    s3: S3Spec
    max_bytes: int = DEFAULT_MAX_BYTES
    temp_dir: str | None = None  # where uploads are received before validation (default: the system's)

    def __post_init__(self) -> None:
        bucket, prefix = objectstore.split_s3_uri(self.location)
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.options = objectstore.S3Options.from_spec(self.s3)

    @classmethod
    def from_config(cls, section: Mapping[str, Any], max_bytes: int = DEFAULT_MAX_BYTES) -> S3FileStore:
        """From the config's `filesS3` section: uri, and the FineTuneJob `s3` fields (endpoint, region,
        forcePathStyle, credentialsSecretRef); a bad value raises ValueError naming the field."""
        if not isinstance(section, Mapping):
            raise ValueError("filesS3: expected a mapping with uri, endpoint, region, forcePathStyle")
        rest = dict(section)
        uri = rest.pop("uri", None)
        temp_dir = rest.pop("tempDir", None)
        if not isinstance(uri, str) or not objectstore.is_s3(uri):
            raise ValueError(f"filesS3.uri: expected s3://BUCKET/PREFIX; got {uri!r}")
        objectstore.split_s3_uri(uri)
        try:
            s3 = S3Spec.model_validate(rest)
        except Exception as err:  # pydantic's ValidationError names the field
            raise ValueError(f"filesS3: {err}") from None
        return cls(location=uri, s3=s3, max_bytes=max_bytes, temp_dir=temp_dir)

    def _key_uri(self, namespace: str, file_id: str, ext: str) -> str:
        folder = f"{self.prefix}/{namespace}/files" if self.prefix else f"{namespace}/files"
        return f"s3://{self.bucket}/{folder}/{file_id}.{ext}"

    def _partial(self, namespace: str, file_id: str) -> Path:
        return temporary_upload(namespace, file_id, self.temp_dir)

    def _commit(self, namespace: str, file_id: str, received: Path, obj: dict[str, Any]) -> None:
        content = self._key_uri(namespace, file_id, "jsonl")
        objectstore.put_file(received, content, self.options)
        try:
            objectstore.put_bytes(json.dumps(obj).encode(), self._key_uri(namespace, file_id, "json"), self.options)
        except BaseException:
            with contextlib.suppress(objectstore.ObjectStoreError):
                objectstore.delete(content, self.options)
            raise

    def _read_meta(self, namespace: str, file_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(objectstore.read_bytes(self._key_uri(namespace, file_id, "json"), self.options))
        except objectstore.ObjectNotFoundError:
            return None

    def _metas(self, namespace: str) -> list[dict[str, Any]]:
        folder = self._key_uri(namespace, "x", "json").rsplit("/", 1)[0] + "/"
        out = []
        for key, _size in objectstore.list_objects(folder, self.options):
            name = key.rsplit("/", 1)[-1]
            if name.startswith("file-") and name.endswith(".json"):
                with contextlib.suppress(objectstore.ObjectStoreError, ValueError):
                    out.append(json.loads(objectstore.read_bytes(f"s3://{self.bucket}/{key}", self.options)))
        return out

    def _remove(self, namespace: str, file_id: str) -> None:
        objectstore.delete(self._key_uri(namespace, file_id, "json"), self.options)
        objectstore.delete(self._key_uri(namespace, file_id, "jsonl"), self.options)

    def object_uri(self, namespace: str, file_id: str) -> str:
        return self._key_uri(namespace, file_id, "jsonl")

    def content(self, namespace: str, file_id: str) -> AsyncIterator[bytes]:
        return objectstore.stream(self._key_uri(namespace, file_id, "jsonl"), self.options)

    def job_spec(self) -> dict[str, Any]:
        """spec.s3 for the jobs that read these files (endpoint, region, path style, the credentials Secret)."""
        return {"s3": self.s3.model_dump(by_alias=True, exclude_none=True, mode="json")}
