"""kubetune.k8s against a small HTTP server: retries, a rotated token, server-side apply, no key left on disk."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kopf
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kubetune import k8s


class Api:
    """Answers each request with the next of `replies` ((status, headers)); records what it was sent."""

    def __init__(self, *replies: tuple[int, dict[str, str]]) -> None:
        self.replies = list(replies)
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "auth": request.headers.get("Authorization"),
                "content_type": request.headers.get("Content-Type"),
                "body": await request.text(),
            }
        )
        status, headers = self.replies.pop(0) if self.replies else (200, {})
        body = {"kind": "ConfigMap", "metadata": {"name": "x"}} if status < 400 else {"reason": "TooManyRequests"}
        return web.json_response(body, status=status, headers=headers)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Api], Any]]:
    servers: list[TestServer] = []

    async def start(api: Api) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", api.handle)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


def info(url: str, token: str = "first") -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=url, token=token)


async def test_429_and_5xx_are_retried_after_retry_after(serve, monkeypatch):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(k8s.asyncio, "sleep", sleep)
    api = Api((429, {"Retry-After": "3"}), (503, {}), (200, {}))
    client = k8s.Client(info(await serve(api)))
    assert (await client.request("GET", "/api/v1/namespaces/ns/configmaps/x"))["metadata"]["name"] == "x"
    await client.close()
    assert len(api.seen) == 3
    assert slept == [3.0, 0.4]  # the server's Retry-After, then the backoff of a second retry


async def test_retries_are_bounded(serve, monkeypatch):
    async def sleep(seconds: float) -> None:
        pass

    monkeypatch.setattr(k8s.asyncio, "sleep", sleep)
    api = Api(*[(503, {"Retry-After": "3600"})] * 10)
    client = k8s.Client(info(await serve(api)))
    with pytest.raises(k8s.ApiError) as err:
        await client.request("GET", "/api/v1/namespaces/ns/configmaps/x")
    await client.close()
    assert err.value.status == 503
    assert len(api.seen) == k8s.MAX_ATTEMPTS
    assert k8s.retry_delay(503, "3600", 1) == k8s.MAX_RETRY_DELAY  # a long Retry-After is cut
    assert k8s.retry_delay(500, None, 10) == k8s.MAX_RETRY_DELAY


async def test_a_client_error_is_not_retried(serve):
    api = Api((404, {}))
    client = k8s.Client(info(await serve(api)))
    with pytest.raises(k8s.NotFound):
        await client.request("GET", "/api/v1/namespaces/ns/configmaps/x")
    await client.close()
    assert len(api.seen) == 1


async def test_a_rotated_service_account_token_is_read_again(serve, tmp_path):
    token = tmp_path / "token"
    token.write_text("first\n")
    api = Api((200, {}), (200, {}), (401, {}), (200, {}))
    client = k8s.Client(info(await serve(api)), token_path=token)
    await client.request("GET", "/api/v1/namespaces/ns/configmaps/x")
    token.write_text("second\n")  # the kubelet rotates the projected token
    os.utime(token, ns=(1, 2_000_000_000_000_000_000))
    await client.request("GET", "/api/v1/namespaces/ns/configmaps/x")
    # Rotated between two calls and refused: read once more, and the call is made again.
    token.write_text("third\n")
    os.utime(token, ns=(1, 2_000_000_000_000_000_000))  # same stamp: only the 401 makes it read again
    await client.request("GET", "/api/v1/namespaces/ns/configmaps/x")
    await client.close()
    assert [s["auth"] for s in api.seen] == ["Bearer first", "Bearer second", "Bearer second", "Bearer third"]


async def test_apply_is_a_server_side_apply_by_the_kubetune_field_manager(serve):
    api = Api()
    k8s.configure(info(await serve(api)))
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}}
    await k8s.apply(manifest)
    await k8s.apply(manifest, force=True)
    await k8s.client().close()
    first, forced = api.seen
    assert first["method"] == "PATCH" and first["path"] == "/api/v1/namespaces/ns/configmaps/x"
    assert first["content_type"] == "application/apply-patch+yaml"
    assert first["query"] == {"fieldManager": "kubetune", "force": "false"}
    assert forced["query"]["force"] == "true"


def _self_signed() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubetune-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


def test_inline_client_key_and_certificate_leave_nothing_on_disk(tmp_path: Path, monkeypatch):
    import base64
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cert, key = _self_signed()
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731  (kubeconfig *-data fields)
    connection = kopf.ConnectionInfo(
        server="https://127.0.0.1:6443",
        ca_data=b64(cert),
        certificate_data=b64(cert),
        private_key_data=b64(key),
    )
    client = k8s.Client(connection)
    assert client._ssl is not False  # TLS set up with the client certificate
    assert list(tmp_path.iterdir()) == []  # no key, no certificate, no folder left behind
