"""A local stand-in for the few Hugging Face Hub HTTP endpoints that `HfApi.create_repo` and
`HfApi.upload_folder` call (huggingface_hub's legacy, non-Xet upload path). It is NOT the Hub: no git,
no Xet storage, no permissions beyond one accepted token, no gitattributes; just enough to receive an
upload the way the client sends it and keep what arrived.

A real HTTP server (http.server, threads) on 127.0.0.1. Point the client at it with HF_ENDPOINT (read by
huggingface_hub at import) and HF_HUB_DISABLE_XET=1: with hf_xet installed the client would upload LFS
files through the Xet protocol (`/api/models/{repo}/xet-write-token/{rev}` and a CAS server), which this
stub does not implement (it answers 501 there).

Endpoints (model repositories only):
- POST /api/repos/create                            {name, organization, visibility} -> {url}; 409 if it exists
- GET  /api/models/{org}/{name}[/revision/{rev}]     repo_info: {id, sha, private}; 404 if missing
- POST /api/models/{org}/{name}/preupload/{rev}      {files: [{path, sample, size}]} -> uploadMode per file:
                                                     "lfs" for weight-like suffixes or >= 10 MiB, else "regular"
- POST /{org}/{name}.git/info/lfs/objects/batch       LFS batch API, "basic" transfer: a PUT href per object
- PUT  /lfs/{oid}                                     the object's bytes (refused if their sha256 is not oid)
- POST /lfs/verify                                    {oid, size} -> 200 if stored
- POST /api/models/{org}/{name}/commit/{rev}         ndjson: header {summary}, file (base64), lfsFile (oid)
- POST /api/validate-yaml                            {content}: README.md; 400 unless its front matter is a YAML
                                                     mapping (the Hub checks far more: only YAML here)

Any other path is answered 404 (huggingface_hub also asks GET /api/agent-harnesses, without a token, and
carries on). Every request to the endpoints above needs `Authorization: Bearer <token>` with the stub's token (else 401, as the Hub answers a bad
token). `fail` maps an endpoint name (create, repo_info, preupload, lfs_batch, lfs_upload, commit) to an HTTP
status the stub answers there instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".msgpack", ".model", ".gguf")
LFS_MIN_BYTES = 10 * 1024 * 1024

_REPO = r"(?P<repo>[^/]+/[^/]+?)"
ROUTES: list[tuple[str, str, re.Pattern[str]]] = [
    ("POST", "create", re.compile(r"/api/repos/create")),
    ("POST", "preupload", re.compile(rf"/api/models/{_REPO}/preupload/(?P<rev>.+)")),
    ("POST", "commit", re.compile(rf"/api/models/{_REPO}/commit/(?P<rev>.+)")),
    ("GET", "xet_token", re.compile(rf"/api/models/{_REPO}/xet-write-token/(?P<rev>.+)")),
    ("GET", "repo_info", re.compile(rf"/api/models/{_REPO}(?:/revision/(?P<rev>.+))?")),
    ("POST", "lfs_batch", re.compile(rf"/{_REPO}\.git/info/lfs/objects/batch")),
    ("PUT", "lfs_upload", re.compile(r"/lfs/(?P<oid>[0-9a-f]{64})")),
    ("POST", "lfs_verify", re.compile(r"/lfs/verify")),
    ("POST", "validate_yaml", re.compile(r"/api/validate-yaml")),
]


@dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    lfs_paths: set[str] = field(default_factory=set)  # committed as lfsFile (not inline)
    commits: list[dict[str, Any]] = field(default_factory=list)  # {oid, summary, description}


@dataclass
class HubStub:
    token: str
    url: str = ""
    fail: dict[str, int] = field(default_factory=dict)
    repos: dict[str, Repo] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)  # oid -> bytes
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Authorization
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, method: str, path: str, auth: str | None, body: bytes) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, auth))
        for verb, name, pattern in ROUTES:
            m = pattern.fullmatch(path)
            if verb != method or m is None:
                continue
            if name in self.fail:
                return self.fail[name], {"error": f"hubstub: {name} fails with {self.fail[name]} (as told)"}
            if name not in ("lfs_upload", "lfs_verify") and auth != f"Bearer {self.token}":
                return 401, {"error": "Invalid credentials in Authorization header"}
            with self.lock:
                return getattr(self, f"_{name}")(body=body, **m.groupdict())
        return 404, {"error": f"hubstub: no route {method} {path}"}

    def _create(self, body: bytes) -> tuple[int, Any]:
        req = json.loads(body)
        repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
        self.repos[repo_id] = Repo(private=req.get("visibility") == "private" or req.get("private") is True)
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def _repo_info(self, body: bytes, repo: str, rev: str | None = None) -> tuple[int, Any]:
        if repo not in self.repos:
            return 404, {"error": "Repository not found"}
        r = self.repos[repo]
        sha = r.commits[-1]["oid"] if r.commits else "0" * 40
        return 200, {"id": repo, "sha": sha, "private": r.private, "siblings": [{"rfilename": p} for p in r.files]}

    def _xet_token(self, body: bytes, repo: str, rev: str) -> tuple[int, Any]:
        return 501, {"error": "hubstub does not implement Xet storage (set HF_HUB_DISABLE_XET=1)"}

    def _preupload(self, body: bytes, repo: str, rev: str) -> tuple[int, Any]:
        if repo not in self.repos:
            return 404, {"error": "Repository not found"}
        files = json.loads(body)["files"]
        modes = [
            {
                "path": f["path"],
                "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) or f["size"] >= LFS_MIN_BYTES else "regular",
                "shouldIgnore": False,
                "oid": None,
            }
            for f in files
        ]
        return 200, {"files": modes, "commitOid": None}

    def _lfs_batch(self, body: bytes, repo: str) -> tuple[int, Any]:
        if repo not in self.repos:
            return 404, {"message": "Repository not found"}
        objects = []
        for obj in json.loads(body)["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{self.url}/lfs/{obj['oid']}"},
                    "verify": {"href": f"{self.url}/lfs/verify"},
                }
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}

    def _lfs_upload(self, body: bytes, oid: str) -> tuple[int, Any]:
        if hashlib.sha256(body).hexdigest() != oid:
            return 400, {"error": "sha256 of the body is not the oid"}
        self.lfs[oid] = body
        return 200, {}

    def _lfs_verify(self, body: bytes) -> tuple[int, Any]:
        req = json.loads(body)
        ok = req["oid"] in self.lfs and len(self.lfs[req["oid"]]) == req["size"]
        return (200, {}) if ok else (404, {"error": "object not found"})

    def _validate_yaml(self, body: bytes) -> tuple[int, Any]:
        content = json.loads(body)["content"]
        parts = content.split("---\n", 2)
        try:
            front = yaml.safe_load(parts[1]) if content.startswith("---\n") and len(parts) == 3 else None
        except yaml.YAMLError as err:
            return 400, {"errors": [{"message": f"YAML: {err}"}]}
        if not isinstance(front, dict):
            return 400, {"errors": [{"message": "README.md has no YAML front matter mapping"}]}
        return 200, {"warnings": []}

    def _commit(self, body: bytes, repo: str, rev: str) -> tuple[int, Any]:
        if repo not in self.repos:
            return 404, {"error": "Repository not found"}
        r = self.repos[repo]
        header: dict[str, Any] = {}
        added: dict[str, bytes] = {}
        lfs_paths: set[str] = set()
        for line in body.decode().splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                header = value
            elif item["key"] == "file":
                added[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "lfsFile":
                if value["oid"] not in self.lfs:
                    return 422, {"error": f"LFS object {value['oid']} of {value['path']} was never uploaded"}
                added[value["path"]] = self.lfs[value["oid"]]
                lfs_paths.add(value["path"])
            else:
                return 400, {"error": f"hubstub: unsupported commit operation {item['key']!r}"}
        r.files.update(added)
        r.lfs_paths |= lfs_paths
        oid = hashlib.sha1(body).hexdigest()
        r.commits.append({"oid": oid, "summary": header.get("summary"), "description": header.get("description")})
        return 200, {"commitUrl": f"{self.url}/{repo}/commit/{oid}", "commitOid": oid, "success": True}


def _handler(stub: HubStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            body = self._body()
            path = self.path.split("?", 1)[0]
            status, answer = stub.handle(self.command, path, self.headers.get("Authorization"), body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # a streamed PUT
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


@contextmanager
def hub_stub(token: str, **kwargs: Any) -> Iterator[HubStub]:
    """A running stub on 127.0.0.1 (an ephemeral port); `stub.url` is what HF_ENDPOINT should be."""
    stub = HubStub(token=token, **kwargs)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
