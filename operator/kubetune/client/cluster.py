"""The cluster back end of `kubetune.client`: kubetune's resources on a Kubernetes API server.

Calls go through `kubetune.k8s.Client` (the operator's own client: retries on 429/5xx, token rotation, TLS
material kept off disk), driven from a private event loop in a background thread, so the synchronous API
works in scripts and inside notebooks, whose own loop is already running.

Credentials: an explicit kubeconfig (and context); else the in-cluster ServiceAccount; else $KUBECONFIG or
~/.kube/config; an exec credential plugin (EKS, GKE) through Kopf's `login_via_client`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import AsyncGenerator, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import kopf
import yaml

from kubetune import constants as c
from kubetune import k8s
from kubetune.api import KINDS, FineTuneJob, Resource
from kubetune.api.admission import admit_resource
from kubetune.builders.training import pod_labels
from kubetune.client.backend import AdmissionError, Admitted, Event, NotFoundError, merged

FIELD_MANAGER = "kubetune-client"  # apart from the operator's "kubetune": `kubectl get --show-managed-fields`
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
T = TypeVar("T")


def _kubeconfig_info(path: Path, context: str | None) -> tuple[kopf.ConnectionInfo, str]:
    """The connection of one context of a kubeconfig file (relative file paths against its folder), and the
    context's namespace."""
    config = yaml.safe_load(path.read_text()) or {}
    name = context or config.get("current-context")
    by_name = {
        kind: {i["name"]: i.get(kind[:-1]) or {} for i in config.get(kind) or []}
        for kind in ("contexts", "clusters", "users")
    }
    if name not in by_name["contexts"]:
        raise ValueError(f"{path}: no context {name!r}; it has {', '.join(by_name['contexts']) or 'none'}")
    ctx = by_name["contexts"][name]
    cluster, user = by_name["clusters"].get(ctx.get("cluster"), {}), by_name["users"].get(ctx.get("user"), {})

    def file(value: str | None) -> str | None:
        return str((path.parent / os.path.expanduser(value)).resolve()) if value else None

    if not cluster.get("server"):
        raise ValueError(f"{path}: context {name!r} names cluster {ctx.get('cluster')!r}, which has no server")
    info = kopf.ConnectionInfo(
        server=cluster["server"],
        ca_path=file(cluster.get("certificate-authority")),
        ca_data=cluster.get("certificate-authority-data"),
        insecure=cluster.get("insecure-skip-tls-verify"),
        certificate_path=file(user.get("client-certificate")),
        certificate_data=user.get("client-certificate-data"),
        private_key_path=file(user.get("client-key")),
        private_key_data=user.get("client-key-data"),
        username=user.get("username"),
        password=user.get("password"),
        token=user.get("token")
        or (Path(file(user["tokenFile"]) or "").read_text().strip() if user.get("tokenFile") else None),
        default_namespace=ctx.get("namespace"),
    )
    return info, ctx.get("namespace") or "default"


def connect(kubeconfig: str | Path | None = None, context: str | None = None) -> tuple[k8s.Client, str]:
    """A kubetune.k8s client and the default namespace (see the module docstring for the order tried)."""
    settings = kopf.OperatorSettings()
    token_path: Path | None = None
    info: kopf.ConnectionInfo | None = None
    namespace = "default"
    if kubeconfig is None and context is None:
        info = kopf.login_with_service_account(settings=settings)
        if info is not None:
            token_path = k8s.SERVICE_ACCOUNT_TOKEN
            namespace = SA_NAMESPACE.read_text().strip() if SA_NAMESPACE.exists() else namespace
    if info is None:
        path = Path(kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config")
        path = path.expanduser()
        if not path.exists():
            raise FileNotFoundError(f"no kubeconfig at {path}, and not running in a cluster; pass kubeconfig=PATH")
        info, namespace = _kubeconfig_info(path, context)
        if not (info.token or info.certificate_path or info.certificate_data or info.username):
            info = kopf.login_via_client(settings=settings, logger=logging.getLogger(__name__)) or info  # exec plugin
    return k8s.Client(info, token_path=token_path), namespace


class _Loop:
    """An event loop in a daemon thread: synchronous calls run coroutines on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kubetune-client", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def iterate(self, agen: AsyncGenerator[T, None], timeout: float | None) -> Iterator[T]:
        """The items of an async generator, pulled one by one; ends at `timeout` seconds (None: never)."""
        deadline = None if timeout is None else self.loop.time() + timeout
        try:
            while True:
                left = None if deadline is None else deadline - self.loop.time()
                if left is not None and left <= 0:
                    return
                try:
                    yield self.run(asyncio.wait_for(agen.__anext__(), left))
                except (StopAsyncIteration, TimeoutError):
                    return
        finally:
            self.run(agen.aclose())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def _typed(kind: str, obj: dict[str, Any]) -> Resource:
    """An object as the API server returns it (list items carry no kind) as the pydantic model."""
    return KINDS[kind].model_validate({**obj, "apiVersion": c.API_VERSION, "kind": kind})


def _event(obj: Mapping[str, Any]) -> Event:
    return Event(
        type=obj.get("type") or "Normal",
        reason=obj.get("reason") or "",
        message=obj.get("message") or "",
        time=obj.get("lastTimestamp") or obj.get("eventTime") or obj.get("firstTimestamp"),
        count=obj.get("count") or 1,
    )


class ClusterBackend:
    """kubetune's resources on a cluster, typed; see `kubetune.client.Client` for what each call means."""

    def __init__(self, client: k8s.Client, default_namespace: str = "default") -> None:
        self.client, self.default_namespace = client, default_namespace
        self._loop = _Loop()

    @classmethod
    def connect(cls, kubeconfig: str | Path | None = None, context: str | None = None) -> ClusterBackend:
        client, namespace = connect(kubeconfig, context)
        return cls(client, namespace)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return self._loop.run(self.client.request(method, path, **kwargs))
        except k8s.NotFound as err:
            raise NotFoundError(f"{path}: {err.message}") from None

    def apply(self, items: list[Admitted], *, create_only: bool = False) -> list[Resource]:
        out = []
        for resource in (item.resource for item in items):
            doc = resource.to_k8s()
            doc.pop("status", None)
            kind = k8s.kind_of(resource.kind)
            ns, name = resource.metadata.namespace or self.default_namespace, resource.metadata.name
            if create_only:
                obj = self._call("POST", kind.path(ns), json=doc)
            else:  # server-side apply as this client's field manager; takes over fields `kubectl edit` set
                obj = self._call(
                    "PATCH",
                    kind.path(ns, name),
                    json=doc,
                    params={"fieldManager": FIELD_MANAGER, "force": "true"},
                    content_type="application/apply-patch+yaml",
                )
            out.append(_typed(resource.kind, obj))
        return out

    def get(self, kind: str, namespace: str, name: str) -> Resource:
        return _typed(kind, self._call("GET", k8s.kind_of(kind).path(namespace, name)))

    def list(self, kind: str, namespace: str) -> list[Resource]:
        items = self._call("GET", k8s.kind_of(kind).path(namespace)).get("items") or []
        return sorted((_typed(kind, i) for i in items), key=lambda r: r.metadata.name)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        try:
            self._call("DELETE", k8s.kind_of(kind).path(namespace, name), json=body)
        except NotFoundError:
            return False
        return True

    def patch_spec(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> Resource:
        """Merge-patch the spec, after the patched object passed admission (nothing sent when it does not)."""
        current = self._call("GET", k8s.kind_of(kind).path(namespace, name))
        errors = admit_resource(merged({**current, "apiVersion": c.API_VERSION, "kind": kind}, {"spec": patch}))
        if errors:
            raise AdmissionError(errors)
        obj = self._call(
            "PATCH",
            k8s.kind_of(kind).path(namespace, name),
            json={"spec": dict(patch)},
            content_type="application/merge-patch+json",
        )
        return _typed(kind, obj)

    def events(self, kind: str, namespace: str, name: str, *, follow: bool, timeout: float | None) -> Iterator[Event]:
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        path = k8s.kind_of("Event").path(namespace)
        body = self._call("GET", path, params={"fieldSelector": selector})
        items = sorted(body.get("items") or [], key=lambda e: _event(e).time or "")
        yield from (_event(e) for e in items)
        if not follow:
            return
        params = {
            "fieldSelector": selector,
            "watch": "true",
            "resourceVersion": (body.get("metadata") or {}).get("resourceVersion", ""),
        }
        if timeout is not None:
            params["timeoutSeconds"] = str(max(1, int(timeout)))
        seen = {(e.get("metadata") or {}).get("uid") for e in items}
        for line in self._loop.iterate(self.client.stream_lines(path, params=params), timeout):
            change = json.loads(line)
            obj = change.get("object") or {}
            if change.get("type") in ("ADDED", "MODIFIED") and (obj.get("metadata") or {}).get("uid") not in seen:
                yield _event(obj)

    def logs(self, job: str, namespace: str, *, follow: bool, timeout: float | None) -> Iterator[str]:
        """The log of the job's newest training pod (index 0 of a multi-node job)."""
        resource = self.get(c.FINETUNEJOB, namespace, job)
        assert isinstance(resource, FineTuneJob)
        selector = k8s.label_selector(pod_labels(resource))
        pods = self._call("GET", k8s.kind_of("Pod").path(namespace), params={"labelSelector": selector}).get("items")
        if not pods:
            raise NotFoundError(f"FineTuneJob {namespace}/{job} has no training pod (yet)")
        pods.sort(key=lambda p: ((p.get("metadata") or {}).get("creationTimestamp") or "", p["metadata"]["name"]))
        path = k8s.kind_of("Pod").path(namespace, pods[-1]["metadata"]["name"], "log")
        params = {"follow": "true"} if follow else None
        for line in self._loop.iterate(self.client.stream_lines(path, params=params), timeout):
            yield line.decode(errors="replace").rstrip("\n")

    def close(self) -> None:
        if not self._loop.thread.is_alive():  # closed already (close() and then the finalizer)
            return
        self._loop.run(self.client.close())
        self._loop.close()
