"""The one module that talks to the Kubernetes API: a small async REST client over aiohttp.

It uses the credentials Kopf logged in with (`login()` is the operator's `@kopf.on.login` handler), so
the operator's own calls and Kopf's watches share one identity. Everything else in kubetune passes
plain manifests (dicts) in and gets dicts back.

Why a hand-written client rather than kubernetes_asyncio or kr8s: kubetune makes seven kinds of call
(get, list, create, server-side apply, merge-patch of status, delete, post an Event) on plain dicts, with
the identity Kopf already resolved (kubeconfig, service account, exec plugins through `kopf.login_via_client`).
kubernetes_asyncio would add a second credential loader and typed models we would convert back to dicts;
kr8s a second client stack (httpx) beside Kopf's aiohttp. What a maintained client would give us is
written here, small and tested (tests/unit/shared/test_k8s_client.py):

- retries on 429 and 5xx, honouring `Retry-After`, bounded in attempts and in delay;
- a rotated service-account token (projected tokens rotate hourly) is read again when the file changes,
  and once more on a 401;
- TLS material given inline (kubeconfig `*-data`) never stays on disk: the CA is loaded from memory,
  a client certificate and key go through a private temporary folder that is removed right after loading.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import os
import ssl
import tempfile
import uuid
import weakref
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import kopf

from kubetune import constants as c

FIELD_MANAGER = "kubetune"  # the field manager of every server-side apply
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5  # one call and at most four retries
MAX_RETRY_DELAY = 10.0  # seconds; a longer Retry-After is cut to this


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


ENDPOINTS: dict[str, Kind] = {
    "PersistentVolumeClaim": Kind("", "v1", "persistentvolumeclaims"),
    "ConfigMap": Kind("", "v1", "configmaps"),
    "Secret": Kind("", "v1", "secrets"),
    "ServiceAccount": Kind("", "v1", "serviceaccounts"),
    "Service": Kind("", "v1", "services"),
    "Pod": Kind("", "v1", "pods"),
    "Event": Kind("", "v1", "events"),
    "Namespace": Kind("", "v1", "namespaces", namespaced=False),
    "Role": Kind("rbac.authorization.k8s.io", "v1", "roles"),
    "RoleBinding": Kind("rbac.authorization.k8s.io", "v1", "rolebindings"),
    "Job": Kind("batch", "v1", "jobs"),
    "Deployment": Kind("apps", "v1", "deployments"),
    "HorizontalPodAutoscaler": Kind("autoscaling", "v2", "horizontalpodautoscalers"),
    "JobSet": Kind("jobset.x-k8s.io", "v1alpha2", "jobsets"),  # multi-node training, where the cluster has it
    "NetworkPolicy": Kind("networking.k8s.io", "v1", "networkpolicies"),
    "ScaledObject": Kind("keda.sh", "v1alpha1", "scaledobjects"),  # autoscaling on LLM load, where KEDA is installed
    "PodMonitor": Kind("monitoring.coreos.com", "v1", "podmonitors"),  # scraping, where the Prometheus Operator is
    "HTTPRoute": Kind("gateway.networking.k8s.io", "v1", "httproutes"),  # canary weights, where the cluster has it
    c.FINETUNEJOB: Kind(c.GROUP, c.VERSION, c.PLURALS[c.FINETUNEJOB]),
    c.EVALUATION: Kind(c.GROUP, c.VERSION, c.PLURALS[c.EVALUATION]),
    c.MODELDEPLOYMENT: Kind(c.GROUP, c.VERSION, c.PLURALS[c.MODELDEPLOYMENT]),
}


async def _body(resp: aiohttp.ClientResponse) -> Any:
    """The response's JSON; a body that is not JSON (the API server's plain `404 page not found` for a group
    version it does not serve) becomes {"message": its text}."""
    if resp.content_length == 0:
        return {}
    try:
        return await resp.json(content_type=None)
    except ValueError:
        return {"message": (await resp.text()).strip()[:500]}


class ApiError(Exception):
    """A failed API call, with the server's status code, reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


def kind_of(kind: str) -> Kind:
    try:
        return ENDPOINTS[kind]
    except KeyError:
        raise ValueError(f"kubetune.k8s does not know the kind {kind!r}; add it to ENDPOINTS") from None


def _pem(data: str | bytes) -> bytes:
    """Inline TLS data of a kubeconfig (base64 text) or of a login handler (PEM bytes) as PEM bytes."""
    return base64.b64decode(data) if isinstance(data, str) else data


def _load_cert_chain(ctx: ssl.SSLContext, info: kopf.ConnectionInfo) -> None:
    """The client certificate and key. `ssl` reads them only from files: inline data is written to a
    private temporary folder (mode 0700) that is removed as soon as they are loaded."""
    if info.certificate_path and (info.private_key_path or not info.private_key_data):
        ctx.load_cert_chain(str(info.certificate_path), str(info.private_key_path) if info.private_key_path else None)
        return
    with tempfile.TemporaryDirectory(prefix="kubetune-tls-") as folder:
        cert = Path(os.fsdecode(info.certificate_path)) if info.certificate_path else Path(folder) / "client.crt"
        if not info.certificate_path:
            cert.write_bytes(_pem(info.certificate_data))  # type: ignore[arg-type]  # checked by the caller
        key: Path | None = Path(os.fsdecode(info.private_key_path)) if info.private_key_path else None
        if key is None and info.private_key_data:
            key = Path(folder) / "client.key"
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(_pem(info.private_key_data))
        ctx.load_cert_chain(str(cert), str(key) if key else None)


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if not str(info.server).startswith("https"):
        return False
    if info.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif info.ca_path:
        ctx = ssl.create_default_context(cafile=str(info.ca_path))
    elif info.ca_data:
        ctx = ssl.create_default_context(cadata=_pem(info.ca_data).decode())
    else:
        ctx = ssl.create_default_context()
    if info.certificate_path or info.certificate_data:
        _load_cert_chain(ctx, info)
    return ctx


def _basic_headers() -> dict[str, str]:
    return {"Accept": "application/json", "User-Agent": "kubetune-operator"}


class _Token:
    """The bearer token: the one Kopf logged in with, or a file read again whenever it changes
    (a projected service-account token is rotated by the kubelet while the operator runs)."""

    def __init__(self, info: kopf.ConnectionInfo, path: Path | None) -> None:
        self.info, self.path = info, path
        self._value, self._stamp = info.token, None if path is None else self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def reread(self) -> None:
        """Read the file now (after a 401, or when it changed); keep the old token if it cannot be read."""
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            self._value = self.path.read_text().strip() or self._value
        self._stamp = self._file_stamp()

    def header(self) -> dict[str, str]:
        info = self.info
        if self.path is not None and self._file_stamp() != self._stamp:
            self.reread()
        if self._value:
            return {"Authorization": f"{info.scheme or 'Bearer'} {self._value}"}
        if info.username and info.password:
            raw = f"{info.username}:{info.password}".encode()
            return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
        return {}


def retry_delay(status: int, retry_after: str | None, attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...) of a call answered `status`:
    the server's Retry-After when it gives one in seconds, else exponential backoff from 0.2 s;
    never more than MAX_RETRY_DELAY."""
    if retry_after:
        with contextlib.suppress(ValueError):
            return min(MAX_RETRY_DELAY, max(0.0, float(retry_after)))
    return min(MAX_RETRY_DELAY, 0.2 * 2 ** (attempt - 1))


class Client:
    """REST calls against one API server; one aiohttp session per event loop."""

    def __init__(
        self,
        info: kopf.ConnectionInfo,
        *,
        timeout: float = 30.0,
        token_path: Path | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.info = info
        self.server = str(info.server).rstrip("/")
        self.max_attempts = max_attempts
        self._ssl = _ssl_context(info)
        self._token = _Token(info, token_path)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=64)
            session = aiohttp.ClientSession(headers=_basic_headers(), timeout=self._timeout, connector=connector)
            self._sessions[loop] = session
        return session

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One call, retried on 429/5xx (after Retry-After or a backoff) and once on 401 with the token read
        again; the last failure raises ApiError (NotFound, Conflict)."""
        reauthenticated = False
        attempt = 0
        while True:
            attempt += 1
            headers = {**self._token.header(), **({"Content-Type": content_type} if json is not None else {})}
            async with self._session().request(
                method, self.server + path, json=json, params=params, headers=headers
            ) as resp:
                body: Any = await _body(resp)
                if resp.status < 400:
                    return body if isinstance(body, dict) else {}
                if resp.status == 401 and not reauthenticated and self._token.path is not None:
                    reauthenticated = True
                    self._token.reread()
                    continue
                if resp.status in RETRY_STATUSES and attempt < self.max_attempts:
                    delay = retry_delay(resp.status, resp.headers.get("Retry-After"), attempt)
                else:
                    body = body if isinstance(body, dict) else {}
                    err = {404: NotFound, 409: Conflict}.get(resp.status, ApiError)
                    raise err(resp.status, body.get("reason") or resp.reason or "", body.get("message") or str(body))
            await asyncio.sleep(delay)

    async def stream_lines(self, path: str, *, params: Mapping[str, str] | None = None) -> AsyncGenerator[bytes, None]:
        """GET `path` and yield its body line by line as it arrives (a watch; a pod's log, with `follow`).
        No total timeout and no retry: the caller resumes from what it has seen. A failure raises ApiError."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout.total)
        async with self._session().get(
            self.server + path, params=params, headers=self._token.header(), timeout=timeout
        ) as resp:
            if resp.status >= 400:
                text = await resp.text()
                err = {404: NotFound, 409: Conflict}.get(resp.status, ApiError)
                raise err(resp.status, resp.reason or "", text[:1000])
            async for line in resp.content:
                yield line


_client: Client | None = None


def configure(info: kopf.ConnectionInfo, *, token_path: Path | None = None) -> Client:
    """Use these credentials from now on (called by the login handler); `token_path`: read the token
    from this file again whenever it changes."""
    global _client
    _client = Client(info, token_path=token_path)
    return _client


def client() -> Client:
    if _client is None:
        raise RuntimeError("kubetune.k8s is not configured: the operator's login handler has not run")
    return _client


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Kopf login handler: in-cluster service account, else the kubeconfig (exec plugins via `kubernetes`)."""
    info = kopf.login_with_service_account(**kwargs)
    token_path = SERVICE_ACCOUNT_TOKEN if info is not None else None
    info = info or kopf.login_with_kubeconfig(**kwargs)
    if info is not None and not (info.token or info.certificate_path or info.certificate_data or info.username):
        info = kopf.login_via_client(**kwargs) or info  # e.g. an exec credential plugin (EKS, GKE)
    if info is not None:
        configure(info, token_path=token_path)
    return info


# --- Calls, by kind name; manifests are plain dicts. ---


def _ns_name(manifest: Mapping[str, Any]) -> tuple[str | None, str]:
    meta = manifest.get("metadata") or {}
    return meta.get("namespace"), meta.get("name", "")


async def create(manifest: Mapping[str, Any]) -> dict[str, Any]:
    kind = kind_of(manifest["kind"])
    namespace, _ = _ns_name(manifest)
    return await client().request("POST", kind.path(namespace), json=dict(manifest))


async def create_if_absent(manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """(object, created): creates it, or returns the existing one of that name (409 tolerated)."""
    try:
        return await create(manifest), True
    except Conflict:
        namespace, name = _ns_name(manifest)
        return await get(manifest["kind"], namespace, name), False


async def get(kind: str, namespace: str | None, name: str) -> dict[str, Any]:
    return await client().request("GET", kind_of(kind).path(namespace, name))


async def get_or_none(kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    try:
        return await get(kind, namespace, name)
    except NotFound:
        return None


async def served(kind: str) -> bool:
    """Whether the API server serves `kind` (API discovery of its group version: a CRD installed and
    established); False when the group version is unknown."""
    k = kind_of(kind)
    try:
        body = await client().request("GET", f"/apis/{k.group}/{k.version}" if k.group else f"/api/{k.version}")
    except NotFound:
        return False
    return any(r.get("name") == k.plural for r in body.get("resources") or [])


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


async def list_objects(
    kind: str,
    namespace: str | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    fields: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Objects of `kind`; `labels` a label selector, `fields` a field selector (equality, dotted paths such as
    `involvedObject.name` for Events)."""
    params = {"labelSelector": label_selector(labels)} if labels else {}
    if fields:
        params["fieldSelector"] = ",".join(f"{k}={v}" for k, v in fields.items())
    body = await client().request("GET", kind_of(kind).path(namespace), params=params or None)
    items = body.get("items") or []
    if labels:  # also filter here: not every API emulator honours labelSelector
        items = [
            i
            for i in items
            if all(((i.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in labels.items())
        ]
    if fields:  # and fieldSelector
        items = [i for i in items if all(_field(i, k) == v for k, v in fields.items())]
    return items


def _field(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


async def apply(manifest: Mapping[str, Any], *, force: bool = False) -> dict[str, Any]:
    """Server-side apply of `manifest` as field manager `kubetune`: creates the object or sets exactly the
    fields given, and removes the fields kubetune set before and no longer gives. `force` takes fields over
    from other managers (raises Conflict without it when another manager set one of them differently)."""
    kind = kind_of(manifest["kind"])
    namespace, name = _ns_name(manifest)
    return await client().request(
        "PATCH",
        kind.path(namespace, name),
        json=dict(manifest),
        params={"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"},
        content_type="application/apply-patch+yaml",
    )


async def patch_merge(kind: str, namespace: str | None, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    return await client().request(
        "PATCH", kind_of(kind).path(namespace, name), json=dict(patch), content_type="application/merge-patch+json"
    )


async def patch_status(kind: str, namespace: str | None, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """Merge-patch `status` through the status subresource (only the fields given change)."""
    return await client().request(
        "PATCH",
        kind_of(kind).path(namespace, name, "status"),
        json={"status": dict(status)},
        content_type="application/merge-patch+json",
    )


async def delete(kind: str, namespace: str | None, name: str, *, propagation: str = "Background") -> bool:
    """Delete; False when it was already gone."""
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
    try:
        await client().request("DELETE", kind_of(kind).path(namespace, name), json=body)
    except NotFound:
        return False
    return True


async def post_event(obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """A Kubernetes Event about `obj` (what `kubectl describe` shows). Never raises: events are best effort."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.get('name', 'kubetune')}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": namespace,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": c.EVENT_COMPONENT},
        "reportingComponent": c.EVENT_COMPONENT,
        "reportingInstance": c.EVENT_COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "eventTime": None,
        "count": 1,
    }
    with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
        await create(event)
