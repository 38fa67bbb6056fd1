"""The one module that talks to the Kubernetes API: a small async REST client over aiohttp.

It uses the credentials Kopf logged in with (`login()` is the operator's `@kopf.on.login` handler), so
the operator's own calls and Kopf's watches share one identity. Everything else in kubetune passes
plain manifests (dicts) in and gets dicts back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ssl
import tempfile
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf

from kubetune import constants as c


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


KINDS: dict[str, Kind] = {
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
    c.FINETUNEJOB: Kind(c.GROUP, c.VERSION, c.PLURALS[c.FINETUNEJOB]),
    c.EVALUATION: Kind(c.GROUP, c.VERSION, c.PLURALS[c.EVALUATION]),
    c.MODELDEPLOYMENT: Kind(c.GROUP, c.VERSION, c.PLURALS[c.MODELDEPLOYMENT]),
}


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
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"kubetune.k8s does not know the kind {kind!r}; add it to KINDS") from None


def _write_temp(data: str | bytes, suffix: str) -> str:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    with tempfile.NamedTemporaryFile(delete=False, suffix=suffix) as fh:
        fh.write(raw)
        return fh.name


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if not str(info.server).startswith("https"):
        return False
    if info.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif info.ca_path or info.ca_data:
        ca_path = info.ca_path or _write_temp(info.ca_data, ".crt")  # type: ignore[arg-type]
        ctx = ssl.create_default_context(cafile=str(ca_path))
    else:
        ctx = ssl.create_default_context()
    if info.certificate_path or info.certificate_data:
        cert = info.certificate_path or _write_temp(info.certificate_data, ".crt")  # type: ignore[arg-type]
        key = info.private_key_path or (_write_temp(info.private_key_data, ".key") if info.private_key_data else None)
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    return ctx


def _headers(info: kopf.ConnectionInfo) -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": "kubetune-operator"}
    if info.token:
        headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
    elif info.username and info.password:
        raw = f"{info.username}:{info.password}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(raw).decode()}"
    return headers


class Client:
    """REST calls against one API server; one aiohttp session per event loop."""

    def __init__(self, info: kopf.ConnectionInfo, *, timeout: float = 30.0) -> None:
        self.info = info
        self.server = str(info.server).rstrip("/")
        self._ssl = _ssl_context(info)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=64)
            session = aiohttp.ClientSession(headers=_headers(self.info), timeout=self._timeout, connector=connector)
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
        headers = {"Content-Type": content_type} if json is not None else {}
        async with self._session().request(
            method, self.server + path, json=json, params=params, headers=headers
        ) as resp:
            body: Any = await resp.json(content_type=None) if resp.content_length != 0 else {}
            if resp.status >= 400:
                body = body if isinstance(body, dict) else {}
                err = {404: NotFound, 409: Conflict}.get(resp.status, ApiError)
                raise err(resp.status, body.get("reason") or resp.reason or "", body.get("message") or str(body))
            return body if isinstance(body, dict) else {}


_client: Client | None = None


def configure(info: kopf.ConnectionInfo) -> Client:
    """Use these credentials from now on (called by the login handler)."""
    global _client
    _client = Client(info)
    return _client


def client() -> Client:
    if _client is None:
        raise RuntimeError("kubetune.k8s is not configured: the operator's login handler has not run")
    return _client


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Kopf login handler: in-cluster service account, else the kubeconfig (exec plugins via `kubernetes`)."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is not None and not (info.token or info.certificate_path or info.certificate_data or info.username):
        info = kopf.login_via_client(**kwargs) or info  # e.g. an exec credential plugin (EKS, GKE)
    if info is not None:
        configure(info)
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


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


async def list_objects(
    kind: str, namespace: str | None = None, *, labels: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    params = {"labelSelector": label_selector(labels)} if labels else None
    body = await client().request("GET", kind_of(kind).path(namespace), params=params)
    items = body.get("items") or []
    if labels:  # also filter here: not every API emulator honours labelSelector
        items = [
            i
            for i in items
            if all(((i.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in labels.items())
        ]
    return items


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
