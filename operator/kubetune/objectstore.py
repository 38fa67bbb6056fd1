"""s3:// objects: read one as a stream of lines, download a prefix, upload a folder. One module for the
operator side (`kubetune validate`), the trainer, the evaluator and `kubetune run`.

The client is obstore (Python bindings of the Rust `object_store` crate, as used by Arrow/DataFusion):
no botocore, so no `python-dateutil<3` pin against `kubernetes>=37`, one wheel without dependencies that
the operator image can carry too; streaming GETs, multipart PUTs for large files, path-style and custom
endpoints (MinIO, Ceph RGW). boto3 would have needed its own install in the trainer image only.

Configuration comes from the resource's `s3` section (`S3Options`, set for a block with `configured()`)
over the standard environment, which obstore reads itself:

- credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (the pod gets them from
  `s3.credentialsSecretRef` by secretKeyRef); without them the pod's identity: AWS_WEB_IDENTITY_TOKEN_FILE +
  AWS_ROLE_ARN (EKS IRSA), AWS_CONTAINER_CREDENTIALS_FULL_URI (EKS Pod Identity) or instance metadata;
- AWS_ENDPOINT_URL / AWS_REGION when the spec does not name an endpoint / region.

Secrets never pass through arguments, logs or errors here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config

__all__ = [
    "ObjectNotFoundError",
    "ObjectStoreError",
    "S3Options",
    "configured",
    "delete",
    "download_prefix",
    "is_s3",
    "list_objects",
    "open_lines",
    "put_bytes",
    "put_file",
    "read_bytes",
    "split_s3_uri",
    "stream",
    "upload_folder",
]

# Files at least this large go up in parts (S3 wants parts of 5 MiB or more, except the last).
MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
READ_CHUNK = 1024 * 1024


class ObjectStoreError(OSError):
    """An s3:// URI that cannot be read or written; the message names the URI and what to check."""


class ObjectNotFoundError(ObjectStoreError, FileNotFoundError):
    """No object at that key."""


@dataclass(frozen=True)
class S3Options:
    """The non-secret settings of a resource's `s3` section."""

    endpoint: str | None = None
    region: str | None = None
    force_path_style: bool | None = None

    @classmethod
    def from_spec(cls, s3: Any | None) -> S3Options:
        """From an `S3Spec` (kubetune.api.objectstorage) or None."""
        if s3 is None:
            return cls()
        return cls(s3.endpoint, s3.region, s3.force_path_style)

    def env(self) -> dict[str, str]:
        """The same settings as environment variables (for a child process: `kubetune run`'s trainer)."""
        out = {}
        if self.endpoint:
            out["AWS_ENDPOINT_URL"] = self.endpoint
        if self.region:
            out["AWS_REGION"] = self.region
        if self.force_path_style is not None:
            out["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false" if self.force_path_style else "true"
        return out


_current: ContextVar[S3Options] = ContextVar("kubetune_s3_options", default=S3Options())  # noqa: B039 (frozen)


@contextlib.contextmanager
def configured(options: S3Options) -> Iterator[S3Options]:
    """Use `options` for every s3:// access inside the block (kubetune.data reads files by URI alone)."""
    token = _current.set(options)
    try:
        yield options
    finally:
        _current.reset(token)


def is_s3(uri: str | os.PathLike[str]) -> bool:
    return isinstance(uri, str) and uri.startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """s3://BUCKET/KEY -> (bucket, key); the key may be empty (the whole bucket)."""
    if not is_s3(uri):
        raise ObjectStoreError(f"{uri!r} is not an s3:// URI (s3://BUCKET/KEY)")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ObjectStoreError(f"{uri!r} names no bucket: expected s3://BUCKET/KEY")
    return bucket, key


def _store(bucket: str, options: S3Options | None = None) -> Any:
    try:
        from obstore.store import S3Store
    except ImportError:
        raise ObjectStoreError(
            "reading s3:// needs obstore (pip install 'kubetune[s3]'; the operator and trainer images have it)"
        ) from None
    opts = options or _current.get()
    endpoint = opts.endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config: S3Config = {}
    path_style = opts.force_path_style
    if path_style is None:
        env = os.environ.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST")
        path_style = env.lower() not in ("1", "true") if env else bool(endpoint)
    if endpoint:
        if not path_style:  # object_store wants the bucket in a virtual-hosted endpoint
            scheme, _, host = endpoint.partition("://")
            endpoint = f"{scheme}://{bucket}.{host}"
        config["endpoint"] = endpoint.rstrip("/")
    config["virtual_hosted_style_request"] = not path_style
    region = opts.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        config["region"] = region
    client: ClientConfig | None = {"allow_http": True} if endpoint and endpoint.startswith("http://") else None
    return S3Store(bucket, config=config, client_options=client)


def _where(options: S3Options | None = None) -> str:
    opts = options or _current.get()
    endpoint = opts.endpoint or os.environ.get("AWS_ENDPOINT_URL")
    return f" at {endpoint}" if endpoint else ""


def _failed(uri: str, action: str, err: Exception, options: S3Options | None = None) -> ObjectStoreError:
    import obstore.exceptions as oe

    kind = type(err).__name__
    hint = ""
    if isinstance(err, oe.NotFoundError | FileNotFoundError):
        hint = "; no such object: check the bucket and key"
    elif isinstance(err, oe.PermissionDeniedError | oe.UnauthenticatedError):
        hint = "; check s3.credentialsSecretRef (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or the pod's identity"
    first = str(err).strip().splitlines()[0] if str(err).strip() else kind
    error = ObjectNotFoundError if isinstance(err, oe.NotFoundError | FileNotFoundError) else ObjectStoreError
    return error(f"{uri}: cannot {action}{_where(options)}{hint} ({kind}: {first[:300]})")


class LineStream:
    """An s3:// object as the lines of a file opened "rb": iterating yields each line with its b"\\n" (the last
    one may lack it), read in chunks as it goes, so memory stays flat however large the object is."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def __enter__(self) -> LineStream:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __iter__(self) -> Iterator[bytes]:
        return _split_lines(_chunks(self.uri))


def _chunks(uri: str, options: S3Options | None = None) -> Iterator[bytes]:
    import obstore

    bucket, key = split_s3_uri(uri)
    try:
        result = obstore.get(_store(bucket, options), key)
        for chunk in result.stream(min_chunk_size=READ_CHUNK):
            yield bytes(chunk)
    except ObjectStoreError:
        raise
    except Exception as err:
        raise _failed(uri, "read it", err, options) from None


def _split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        data = rest + chunk if rest else chunk
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            yield data[start : end + 1]
            start = end + 1
        rest = data[start:]
    if rest:
        yield rest


def open_lines(path: str | os.PathLike[str]) -> Any:
    """A context manager whose value iterates over the lines (bytes) of a local file or an s3:// object."""
    if is_s3(path):
        return LineStream(str(path))
    return open(path, "rb")


def read_bytes(uri: str, options: S3Options | None = None) -> bytes:
    return b"".join(_chunks(uri, options))


async def stream(uri: str, options: S3Options | None = None) -> AsyncIterator[bytes]:
    """The object's bytes in chunks of about READ_CHUNK, fetched as they are consumed (for an asyncio server)."""
    import obstore

    bucket, key = split_s3_uri(uri)
    try:
        result = await obstore.get_async(_store(bucket, options), key)
        async for chunk in result.stream(min_chunk_size=READ_CHUNK):
            yield bytes(chunk)
    except Exception as err:
        raise _failed(uri, "read it", err, options) from None


def put_file(path: Path, uri: str, options: S3Options | None = None) -> None:
    """Upload one local file to s3://BUCKET/KEY: a multipart upload from MULTIPART_THRESHOLD bytes (read from
    the file part by part; an upload that fails is aborted, so no half object appears)."""
    import obstore

    bucket, key = split_s3_uri(uri)
    size = path.stat().st_size
    try:
        obstore.put(_store(bucket, options), key, path, use_multipart=size >= MULTIPART_THRESHOLD, chunk_size=PART_SIZE)
    except Exception as err:
        raise _failed(uri, "upload it", err, options) from None


def put_bytes(data: bytes, uri: str, options: S3Options | None = None) -> None:
    """Write a small object (one PUT)."""
    import obstore

    bucket, key = split_s3_uri(uri)
    try:
        obstore.put(_store(bucket, options), key, data, use_multipart=False)
    except Exception as err:
        raise _failed(uri, "write it", err, options) from None


def delete(uri: str, options: S3Options | None = None) -> None:
    """Delete one object; deleting an object that is not there is not an error (as S3 itself answers)."""
    import obstore

    bucket, key = split_s3_uri(uri)
    try:
        obstore.delete(_store(bucket, options), key)
    except FileNotFoundError:
        return
    except Exception as err:
        raise _failed(uri, "delete it", err, options) from None


def list_objects(uri: str, options: S3Options | None = None) -> list[tuple[str, int]]:
    """(key, size) of every object under s3://BUCKET/PREFIX, sorted by key."""
    import obstore

    bucket, prefix = split_s3_uri(uri)
    out: list[tuple[str, int]] = []
    try:
        for batch in obstore.list(_store(bucket, options), prefix=prefix or None):
            out += [(meta["path"], int(meta["size"])) for meta in batch]
    except Exception as err:
        raise _failed(uri, "list it", err, options) from None
    return sorted(out)


def download_prefix(uri: str, dest: Path) -> int:
    """Copy every object under s3://BUCKET/PREFIX/ into `dest`, keeping the key paths below PREFIX; the count.

    A key that would land outside `dest` ('..') is refused.
    """
    import obstore

    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.strip("/")
    store = _store(bucket)
    listed = list_objects(f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/")
    root = dest.resolve()
    count = 0
    for key, _size in listed:
        rel = key[len(prefix) :].lstrip("/")
        if not rel or rel.endswith("/"):
            continue
        target = dest / rel
        if not target.resolve().is_relative_to(root):
            raise ObjectStoreError(f"{uri}: the object key {key!r} leads outside the download folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        try:
            with part.open("wb") as fh:
                for chunk in obstore.get(store, key).stream(min_chunk_size=READ_CHUNK):
                    fh.write(chunk)
        except Exception as err:
            raise _failed(f"s3://{bucket}/{key}", "download it", err) from None
        part.replace(target)
        count += 1
    return count


def upload_folder(folder: Path, uri: str) -> list[tuple[str, int, str]]:
    """Upload every file under `folder` to s3://BUCKET/PREFIX/<relative path>; (path, size, sha256) per file.

    Large files go up as multipart uploads (obstore splits them into parts as it reads the file).
    """
    import obstore

    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.strip("/")
    store = _store(bucket)
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        key = f"{prefix}/{rel}" if prefix else rel
        size = path.stat().st_size
        try:
            obstore.put(
                store,
                key,
                path,
                use_multipart=size >= MULTIPART_THRESHOLD,
                chunk_size=PART_SIZE,
            )
        except Exception as err:
            raise _failed(f"s3://{bucket}/{key}", "upload it", err) from None
        out.append((rel, size, file_sha256(path)))
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(READ_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
