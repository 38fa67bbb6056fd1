"""A Kubernetes API server for tests: KMock's emulator plus what a real API server adds.

KMock (0.8) stores objects, serves discovery, list/watch/get/create/merge-patch/delete, finalizers and
`deletionTimestamp`. This shim adds, as small as it could be:

- metadata a real server sets: uid, resourceVersion, generation (bumped when the spec changes),
  creationTimestamp, names from generateName;
- the status subresource: `PATCH .../status` changes only status, other writes never change status;
- CRDs: applying a CustomResourceDefinition registers its resource for discovery (kind, scope, short
  names, categories, status subresource) and its printer columns; `kubectl get` receives server-side
  Tables with those columns;
- label and field selectors on list and watch;
- server-side apply (PATCH as application/apply-patch+yaml): creates the object, or merges the applied
  fields and removes those the same field manager applied before and no longer applies (lists are atomic;
  conflicts between managers are not emulated: the real kube-apiserver backend judges those);
- pod logs (`GET pods/NAME/log`) from what a test wrote with `write_log`, as the kubelet would serve them;
- garbage collection: deleting an object deletes the objects whose ownerReferences point at it;
- lists read an index by resource and namespace (as a real API server's watch cache does), so a LIST costs
  what it returns, not every stored object;
- a count of the requests by verb and resource (`request_counts`), for the benchmarks.

It validates nothing (no OpenAPI schema, no CEL): admission is tested apart, in the CRD tests.
It runs in its own thread and event loop, so tests can call `kubectl` synchronously.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime as dt
import itertools
import re
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import kmock
import yaml
from kmock._internal import dicts, enums, rendering

ALL_VERBS = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
BUILTINS: dict[str, tuple[str, bool, Iterable[str], Iterable[str]]] = {
    # "group/version/plural": (kind, namespaced, short names, subresources)
    "v1/namespaces": ("Namespace", False, ["ns"], ["status"]),
    "v1/pods": ("Pod", True, ["po"], ["status", "log"]),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True, ["pvc"], ["status"]),
    "v1/configmaps": ("ConfigMap", True, ["cm"], []),
    "v1/secrets": ("Secret", True, [], []),
    "v1/serviceaccounts": ("ServiceAccount", True, ["sa"], []),
    "v1/services": ("Service", True, ["svc"], ["status"]),
    "v1/events": ("Event", True, ["ev"], []),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True, [], []),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True, [], []),
    "batch/v1/jobs": ("Job", True, [], ["status"]),
    "apps/v1/deployments": ("Deployment", True, ["deploy"], ["status", "scale"]),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True, ["hpa"], ["status"]),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True, ["netpol"], []),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, ["crd"], ["status"]),
    "coordination.k8s.io/v1/leases": ("Lease", True, [], []),
}
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
DEFAULT_COLUMNS = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
APPLY_PATCH = "application/apply-patch+yaml"
POD_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")
ResourceKey = tuple[str, str, str]  # group, version, plural


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_selector(text: str | None) -> list[tuple[str, str, str | None]]:
    """`a=b,c!=d,e` -> [(key, op, value)]; supports =, ==, != and existence."""
    out: list[tuple[str, str, str | None]] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            k, v = part.split("!=", 1)
            out.append((k.strip(), "!=", v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            out.append((k.strip(), "=", v.strip().lstrip("=")))
        elif part.startswith("!"):
            out.append((part[1:], "!", None))
        else:
            out.append((part, "exists", None))
    return out


def _matches(values: dict[str, Any], selector: list[tuple[str, str, str | None]]) -> bool:
    for key, op, value in selector:
        have = values.get(key)
        if op == "=" and (have is None or str(have) != value):
            return False
        if op == "!=" and have is not None and str(have) == value:
            return False
        if op == "exists" and key not in values:
            return False
        if op == "!" and key in values:
            return False
    return True


def _field_values(obj: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    out = {}
    for key in keys:
        node: Any = obj
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out[key] = node
    return out


def _selected(obj: dict[str, Any], params: dict[str, str]) -> bool:
    labels = _parse_selector(params.get("labelSelector"))
    fields = _parse_selector(params.get("fieldSelector"))
    meta = obj.get("metadata") or {}
    if labels and not _matches(meta.get("labels") or {}, labels):
        return False
    return not fields or _matches(_field_values(obj, [k for k, _, _ in fields]), fields)


def _json_path(obj: dict[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.strip(".").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _removals(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch that removes what `before` (a manager's last applied config) has and `after` lacks."""
    out: dict[str, Any] = {}
    for key, old in before.items():
        if key not in after:
            out[key] = None
        elif isinstance(old, Mapping) and isinstance(after[key], Mapping):
            nested = _removals(old, after[key])
            if nested:
                out[key] = nested
    return out


def _merged(patch: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`patch` with `over` merged into it (dicts recursively, everything else replaced)."""
    out = dict(patch)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _is_apply(request: rendering.Request) -> bool:
    content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
    return request.method == "PATCH" and APPLY_PATCH in content_type


def _verb(request: rendering.Request) -> str:
    if request.action == enums.action.UPDATE:
        return "apply" if _is_apply(request) else ("patch" if request.method == "PATCH" else "update")
    names = {
        enums.action.LIST: "list",
        enums.action.WATCH: "watch",
        enums.action.FETCH: "get",
        enums.action.CREATE: "create",
        enums.action.DELETE: "delete",
    }
    return names.get(request.action, str(request.method).lower())  # type: ignore[arg-type]


def _age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    seconds = int((dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))).total_seconds())
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


class ApiServer(kmock.KubernetesEmulator):
    """KMock's emulator with the metadata, subresource, CRD, selector and GC semantics of an API server."""

    extra_namespaces: tuple[str, ...] = ()  # namespaces that exist besides "default" (Kopf checks)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._rv = itertools.count(1)
        # (group, version, plural) -> namespace -> name -> KMock object; filled as objects appear.
        self._by_namespace: dict[ResourceKey, dict[str | None, dict[str, Any]]] = collections.defaultdict(
            lambda: collections.defaultdict(dict)
        )
        self._indexed = 0  # how many of KMock's (append-only) object keys are in _by_namespace
        self._index_lock = threading.Lock()
        # (resource, namespace, name) -> field manager -> what it applied last
        self._applied: dict[tuple[Any, str | None, str], dict[str, dict[str, Any]]] = {}
        self.request_counts: collections.Counter[str] = collections.Counter()
        self._status_subresource: set[kmock.resource] = set()
        self._columns: dict[kmock.resource, list[dict[str, Any]]] = {}
        # (namespace, pod) -> its log: the kubelet's part, which tests play (`ApiServerThread.write_log`)
        self.pod_logs: dict[tuple[str, str], str] = {}
        for key, (kind, namespaced, short, subs) in BUILTINS.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=kind,
                singular=kind.lower(),
                namespaced=namespaced,
                verbs=ALL_VERBS,
                shortnames=set(short),
                subresources=set(subs),
            )
            if "status" in subs:
                self._status_subresource.add(kmock.resource(key))

    async def __call__(self, raw_request: Any) -> Any:
        # KMock 0.8 cannot parse `/api/v1/namespaces` (it reads "namespaces" as the start of a namespaced
        # path); Kopf lists and watches namespaces, so answer that one path here.
        if raw_request.path.rstrip("/") == "/api/v1/namespaces":
            return await self._serve_namespaces(raw_request)
        log = POD_LOG.match(raw_request.path)
        if log and raw_request.method == "GET":
            return self._serve_log(*log.groups())
        return await super().__call__(raw_request)

    def _serve_log(self, namespace: str, pod: str) -> Any:
        """A pod's log as the kubelet would stream it, of a container that has ended (so `follow` ends too)."""
        import aiohttp.web

        text = self.pod_logs.get((namespace, pod))
        if text is None:
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            return aiohttp.web.json_response({**status, "message": f'pods "{pod}" has no log'}, status=404)
        return aiohttp.web.Response(text=text, content_type="text/plain")

    async def _serve_namespaces(self, raw_request: Any) -> Any:
        import aiohttp.web

        names = {"default", *self.extra_namespaces} | {
            ns for (_, ns, _), obj in list(self.objects.items()) if ns and not obj.deleted
        }
        items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in sorted(names)]
        if raw_request.query.get("watch") != "true":
            body = {"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "1"}, "items": items}
            return aiohttp.web.json_response(body)
        response = aiohttp.web.StreamResponse()
        await response.prepare(raw_request)
        await asyncio.sleep(float(raw_request.query.get("timeoutSeconds") or 300))
        return response

    # --- writes ---

    async def _handle(self, request: rendering.Request) -> Any:
        # KMock keeps every request for assertions and matches each new one against them all: with
        # thousands of requests that is quadratic. Keep only the one in flight.
        del self._requests[:-1]
        for payload in self._payloads:
            payload._requests.clear()
        res = request.resource
        if res is None:
            return await super()._handle(request)
        verb = _verb(request)
        what = f"{res.plural}/{request.subresource}" if request.subresource else res.plural
        self.request_counts[f"{verb} {what}" if res.plural else "discovery"] += 1
        if verb == "apply" and request.name:
            request = self._server_side_apply(request)
            self._requests[:] = [request]  # KMock finds its reaction by the identity of the request it keeps
        if request.action == enums.action.CREATE and isinstance(request.data, dict):
            self._on_create(request)
        elif request.action == enums.action.UPDATE and request.name and isinstance(request.data, dict):
            self._on_update(request)
        elif request.action == enums.action.UPDATE and request.name and isinstance(request.data, list):
            self._on_json_patch(request)
        response = await super()._handle(request)
        if request.action in (enums.action.DELETE, enums.action.UPDATE) and request.name:
            key = (res, request.namespace, request.name)
            if key in self.objects and self.objects[key].deleted:
                await self._collect_garbage()
        if res == CRDS and request.action in (enums.action.CREATE, enums.action.UPDATE):
            self._register_crds()
        return response

    def _server_side_apply(self, request: rendering.Request) -> rendering.Request:
        """An apply as a create (absent object) or as a merge patch of the applied fields plus the removal of
        those this field manager applied last time and not now."""
        applied = request.data if isinstance(request.data, dict) else yaml.safe_load(request.text or "{}")
        manager = request.params.get("fieldManager", "")
        key = (request.resource, request.namespace, request.name)
        obj = self.objects._objects.get(key)
        records = self._applied.setdefault(key, {})
        if obj is None or obj.deleted:
            records.clear()
        before = records.get(manager)
        records[manager] = copy.deepcopy(applied)
        if obj is None or obj.deleted:
            applied.setdefault("metadata", {}).setdefault("name", request.name)
            return attrs.evolve(request, method="POST", action=enums.action.CREATE, name=None, data=applied)
        return attrs.evolve(request, data=_merged(_removals(before or {}, applied), applied))

    def _on_create(self, request: rendering.Request) -> None:
        data = request.data
        meta = data.setdefault("metadata", {})
        if not _is_apply(request):  # a new object: what managers applied to an earlier namesake is gone
            self._applied.pop((request.resource, request.namespace or meta.get("namespace"), meta.get("name")), None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if request.namespace:
            meta["namespace"] = request.namespace
        meta.update(uid=str(uuid.uuid4()), resourceVersion=str(next(self._rv)), generation=1, creationTimestamp=_now())
        meta.pop("deletionTimestamp", None)
        if request.resource in self._status_subresource:
            data.pop("status", None)
        if request.resource == CRDS:
            data["status"] = {
                "conditions": [
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                ],
                "acceptedNames": (data.get("spec") or {}).get("names", {}),
            }

    def _on_update(self, request: rendering.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return  # KMock answers 404
        old = self.objects[key].raw
        data = request.data
        if request.subresource == "status":
            status = data.get("status")
            data.clear()
            data["status"] = status
        elif request.resource in self._status_subresource:
            data.pop("status", None)
        meta = data.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        for immutable in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "name", "namespace"):
            meta.pop(immutable, None)
        if isinstance(data.get("spec"), dict):
            new_spec = dicts.merge_patch_dict(old.get("spec") or {}, data["spec"])
            if new_spec != (old.get("spec") or {}):
                meta["generation"] = int((old.get("metadata") or {}).get("generation") or 1) + 1
        meta["resourceVersion"] = str(next(self._rv))
        data["metadata"] = meta

    def _on_json_patch(self, request: rendering.Request) -> None:
        """JSON patches (Kopf adds finalizers this way): `test` ops guard resourceVersion; bump it."""
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return
        current = self.objects[key].raw
        version = str((current.get("metadata") or {}).get("resourceVersion"))
        for op in request.data:
            if op.get("op") == "test" and op.get("path") == "/metadata/resourceVersion" and str(op["value"]) != version:
                raise kmock.KubernetesError(409, "Conflict", "the object has been modified; please retry")
        request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": str(next(self._rv))})

    async def _collect_garbage(self) -> None:
        """Delete objects whose owners are all gone (foreground finalizers are not emulated)."""
        async with self._lock:
            changed = True
            while changed:
                changed = False
                alive = {obj.raw["metadata"].get("uid") for obj in self.objects.values() if not obj.deleted}
                for (res, _ns, _name), obj in list(self.objects.items()):
                    if obj.deleted:
                        continue
                    meta = obj.raw.get("metadata") or {}
                    owners = [ref.get("uid") for ref in meta.get("ownerReferences") or []]
                    if not owners or any(uid in alive for uid in owners):
                        continue
                    if meta.get("finalizers"):
                        if not meta.get("deletionTimestamp"):
                            obj.patch(
                                {"metadata": {"deletionTimestamp": _now(), "resourceVersion": str(next(self._rv))}}
                            )
                            await self._buses[res].put({"type": "MODIFIED", "object": obj.raw})
                        continue
                    raw = obj.raw
                    obj.delete()
                    await self._buses[res].put({"type": "DELETED", "object": raw})
                    changed = True

    def _register_crds(self) -> None:
        for (res, _, _), obj in list(self.objects.items()):
            if res != CRDS or obj.deleted:
                continue
            spec = obj.raw.get("spec") or {}
            names = spec.get("names") or {}
            for version in spec.get("versions") or []:
                resource = kmock.resource(spec["group"], version["name"], names["plural"])
                self.resources[resource] = kmock.ResourceInfo(
                    kind=names.get("kind"),
                    singular=names.get("singular"),
                    namespaced=spec.get("scope") == "Namespaced",
                    verbs=ALL_VERBS,
                    shortnames=set(names.get("shortNames") or []),
                    categories=set(names.get("categories") or []),
                    subresources={"status"} if "status" in (version.get("subresources") or {}) else set(),
                )
                if "status" in (version.get("subresources") or {}):
                    self._status_subresource.add(resource)
                self._columns[resource] = version.get("additionalPrinterColumns") or DEFAULT_COLUMNS

    # --- reads: by key (KMock scans every object per request, too slow for the 500-job benchmark) ---

    def _get_resources(self) -> list[kmock.resource]:
        return kmock.KubernetesScaffold._get_resources(self)  # declared ones only, not one per object

    def _lookup(self, request: rendering.Request, namespace: str | None, name: str | None) -> Any:
        obj = self.objects._objects.get((request.resource, namespace, name))
        if obj is None or obj.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return obj

    def _index_new_objects(self) -> None:
        """Add the objects KMock stored since the last call to the index (its store only ever grows: a
        deleted object stays, marked deleted, and a namesake re-created later reuses its entry)."""
        store = self.objects._objects
        if len(store) == self._indexed:
            return
        with self._index_lock:  # the test thread reads too (ApiServerThread.objects)
            keys = list(store)  # a snapshot: the server thread may add objects meanwhile
            for res, ns, name in keys[self._indexed :]:
                self._by_namespace[(res.group, res.version, res.plural)][ns][name] = store[(res, ns, name)]
            self._indexed = max(self._indexed, len(keys))

    def live(self, resource: ResourceKey, namespace: str | None = None) -> list[dict[str, Any]]:
        """The live objects of a resource, in one namespace or (None) in all."""
        self._index_new_objects()
        by_namespace = self._by_namespace.get(resource) or {}
        spaces = by_namespace.values() if namespace is None else [by_namespace.get(namespace) or {}]
        return [obj.raw for objects in spaces for obj in list(objects.values()) if not obj.deleted]

    def _live(self, request: rendering.Request) -> list[dict[str, Any]]:
        res = request.resource
        return self.live((res.group, res.version, res.plural), request.namespace)

    async def _serve_create(self, request: rendering.Request) -> Any:
        meta = request.data.get("metadata") or {}
        return self._lookup(request, request.namespace or meta.get("namespace"), meta.get("name")).raw

    async def _serve_update(self, request: rendering.Request) -> Any:
        obj = self.objects._objects.get((request.resource, request.namespace, request.name))
        return obj.last.raw  # may have just been deleted (its last finalizer removed)

    async def _serve_delete(self, request: rendering.Request) -> Any:
        return self.objects._objects[(request.resource, request.namespace, request.name)].last.raw

    async def _serve_version(self, request: rendering.Request) -> Any:
        body = await super()._serve_version(request)
        for entry in body.get("resources") or []:  # subresources have no short names or categories
            if "/" in entry["name"]:
                entry.update(shortNames=[], categories=[], verbs=["get", "patch", "update"])
        return body

    async def _serve_list(self, request: rendering.Request) -> Any:
        if request.resource not in self.resources:
            raise kmock.KubernetesResourceNotFoundError()
        params = dict(request.params)
        body: dict[str, Any] = {"items": [item for item in self._live(request) if _selected(item, params)]}
        body["metadata"] = {"resourceVersion": str(next(self._rv))}
        info = self.resources.get(request.resource)
        if info and info.kind:
            body["kind"] = f"{info.kind}List"
            body["apiVersion"] = (
                f"{request.resource.group}/{request.resource.version}"
                if request.resource.group
                else request.resource.version
            )
        if self._wants_table(request):
            return self._table(request.resource, body["items"])
        return body

    async def _serve_fetch(self, request: rendering.Request) -> Any:
        obj = self._lookup(request, request.namespace, request.name).raw
        return self._table(request.resource, [obj]) if self._wants_table(request) else obj

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        params = dict(request.params)
        async for item in super()._serve_watch(request):
            if isinstance(item, dict) and not _selected(item.get("object") or {}, params):
                continue
            yield item

    @staticmethod
    def _wants_table(request: rendering.Request) -> bool:
        return "as=Table" in (request.headers.get("Accept") or "")

    def _table(self, resource: kmock.resource, items: list[dict[str, Any]]) -> dict[str, Any]:
        columns = self._columns.get(resource, DEFAULT_COLUMNS)  # kubectl shows priority > 0 with -o wide only
        defs = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
        defs += [
            {
                "name": c["name"],
                "type": c.get("type", "string"),
                "format": "",
                "description": "",
                "priority": c.get("priority", 0),
            }
            for c in columns
        ]
        rows = []
        for item in items:
            cells: list[Any] = [(item.get("metadata") or {}).get("name")]
            for col in columns:
                value = _json_path(item, col["jsonPath"])
                cells.append(_age(value) if col.get("type") == "date" else ("" if value is None else value))
            partial = {
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadata",
                "metadata": item.get("metadata"),
            }
            rows.append({"cells": cells, "object": partial})
        return {
            "apiVersion": "meta.k8s.io/v1",
            "kind": "Table",
            "metadata": {},
            "columnDefinitions": defs,
            "rows": rows,
        }


class ApiServerThread:
    """Run an ApiServer on 127.0.0.1 in a thread of its own; write a kubeconfig pointing at it."""

    def __init__(self, namespaces: Iterable[str] = ()) -> None:
        self.namespaces = tuple(namespaces)
        self.handler: ApiServer | None = None
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kmock-apiserver", daemon=True)

    def start(self, timeout: float = 10) -> ApiServerThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the KMock API server did not start")
        return self

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        handler = ApiServer()
        handler.extra_namespaces = self.namespaces
        async with handler, kmock.Server(handler, host="127.0.0.1") as server:
            self.handler = handler
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "kmock-test-token"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": namespace}}],
            "current-context": "kmock",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def write_log(self, namespace: str, pod: str, text: str) -> None:
        """What `GET pods/POD/log` answers from now on (the kubelet's part)."""
        assert self.handler is not None
        self.handler.pod_logs[(namespace, pod)] = text

    def objects(self, plural: str, namespace: str | None = None) -> dict[str, dict[str, Any]]:
        """A snapshot of the live objects of a resource (by plural), keyed by name."""
        assert self.handler is not None
        handler = self.handler
        handler._index_new_objects()
        out = {}
        for (_, _, res_plural), by_namespace in list(handler._by_namespace.items()):
            if res_plural != plural:
                continue
            for ns, objects in list(by_namespace.items()):
                if namespace is None or ns == namespace:
                    out.update({name: obj.raw for name, obj in list(objects.items()) if not obj.deleted})
        return out

    def request_counts(self) -> dict[str, int]:
        """Requests served so far, by "verb resource[/subresource]" (e.g. "create jobs", "patch finetunejobs/status")."""
        assert self.handler is not None
        return dict(self.handler.request_counts)
