"""`kubetune-trainer serve-adapters-sync`: keep a server's LoRA adapters equal to the adapter set the operator writes.

The operator writes `{"adapters": [{"name", "path"}]}` to a ConfigMap mounted into the serving pod; the kubelet
refreshes the file when the ConfigMap changes. This loop reads it and calls the server's runtime adapter API on
localhost (vLLM's, which the built-in server speaks too): `GET /v1/models` (adapters are the cards with a
`parent`), `POST /v1/unload_lora_adapter {"lora_name"}` for adapters no longer listed, `POST /v1/load_lora_adapter
{"lora_name", "lora_path", "load_inplace": true}` for an adapter whose path changed (a promotion: the server swaps
it between batches, so its clients never see it missing; a server that refuses the in-place load gets an unload
then a load), and a plain load for the rest, until the server's models match. `/v1/models` shows no paths, so the loop remembers what it loaded; after a
restart it reloads each adapter once. Standard library only, so it runs beside vLLM in the trainer image.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("kubetune_trainer.adapters_sync")
API_KEY_ENV = "KUBETUNE_API_KEY"


class SyncError(RuntimeError):
    """The server refused a load or unload (its answer says why); retried on the next round."""


def desired(path: Path) -> dict[str, str]:
    """name -> path from the mounted adapter set; empty while the file is absent (the ConfigMap is not there yet)."""
    if not path.is_file():
        return {}
    body = json.loads(path.read_text() or "{}")
    return {a["name"]: a["path"] for a in body.get("adapters") or []}


@dataclass
class Server:
    url: str
    api_key: str | None = None
    timeout: float = 600.0  # loading an adapter reads it from disk (and, on vLLM, may wait for a free slot)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url.rstrip('/')}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as err:
            raise SyncError(f"{method} {path}: {err.code} {err.read().decode(errors='replace')[:500]}") from None
        return json.loads(text) if text.startswith(("{", "[")) else text

    def adapters(self) -> set[str]:
        """Adapters loaded now: the model cards with a parent (the base model has none)."""
        cards = self._request("GET", "/v1/models").get("data") or []
        return {card["id"] for card in cards if card.get("parent")}

    def load(self, name: str, path: str, *, inplace: bool = False) -> None:
        body: dict[str, Any] = {"lora_name": name, "lora_path": path}
        if inplace:
            body["load_inplace"] = True
        self._request("POST", "/v1/load_lora_adapter", body)

    def unload(self, name: str) -> None:
        self._request("POST", "/v1/unload_lora_adapter", {"lora_name": name})


@dataclass
class Syncer:
    server: Server
    loaded: dict[str, str] = field(default_factory=dict)  # what this loop loaded: name -> path

    def sync_once(self, want: dict[str, str]) -> list[str]:
        """One round: unload what is not wanted, replace what is at another path, load what is missing. What it did."""
        have = self.server.adapters()
        done = []
        for name in sorted(have):
            if name in want and self.loaded.get(name) != want[name]:
                try:
                    self.server.load(name, want[name], inplace=True)
                except SyncError as err:  # a server without load_inplace: a short gap for this adapter
                    log.info(f"in-place load of {name} refused ({err}); unloading and loading it instead")
                else:
                    self.loaded[name] = want[name]
                    done.append(f"replaced {name} with {want[name]}")
                    continue
            if name not in want or self.loaded.get(name) != want[name]:
                self.server.unload(name)
                self.loaded.pop(name, None)
                have.discard(name)
                done.append(f"unloaded {name}")
        for name, path in sorted(want.items()):
            if name not in have:
                self.server.load(name, path)
                self.loaded[name] = path
                done.append(f"loaded {name} from {path}")
        return done


def run(adapters_file: Path, server: Server, interval: float, once: bool) -> int:
    syncer = Syncer(server)
    while True:
        try:
            for line in syncer.sync_once(desired(adapters_file)):
                log.info(line)
        except (OSError, SyncError, ValueError) as err:  # not up yet, refused, or a half-written file
            log.warning(f"adapter sync: {err}; retrying in {interval:g}s")
            if once:
                return 1
        else:
            if once:
                return 0
        time.sleep(interval)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubetune-trainer serve-adapters-sync", description=__doc__)
    parser.add_argument("--adapters", required=True, type=Path, help="the mounted adapter set (adapters.json)")
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="the server's base URL")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between rounds")
    parser.add_argument("--once", action="store_true", help="one round, exit 0 when in sync")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = Server(args.server, api_key=os.environ.get(API_KEY_ENV) or None)
    return run(args.adapters, server, args.interval, args.once)
