"""Stored completions: chat requests sent with `store: true` are kept in the namespace's storage.

JSONL shards, one per UTC day, under `ROOT/NAMESPACE/chat-completions/YYYY-MM-DD.jsonl`; each line is
the `chat.completion` the model answered plus the request's `metadata` and `messages`. Never in memory or
in any status: listing reads the shards. Off unless enabled; shards older than `retention_days` are
removed; once a namespace holds `max_bytes` nothing more is stored (the request itself still succeeds).

`training_lines` turns stored completions into a chat-format training file (the request's messages and
the model's answer), which `kubetune validate` and a FineTuneJob accept: distillation without an endpoint,
or continual fine-tuning on what a deployed model answered.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.openai.errors import not_found


@dataclass
class CompletionStore:
    root: Path
    enabled: bool = False
    retention_days: int = 30
    max_bytes: int = 1024 * 1024 * 1024  # per namespace

    def folder(self, namespace: str) -> Path:
        return self.root / namespace / "chat-completions"

    def _shards(self, namespace: str) -> list[Path]:
        """Newest first."""
        folder = self.folder(namespace)
        return sorted(folder.glob("????-??-??.jsonl"), reverse=True) if folder.is_dir() else []

    def prune(self, namespace: str, now: dt.datetime | None = None) -> None:
        """Remove the shards older than the retention."""
        oldest = ((now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=self.retention_days)).strftime("%Y-%m-%d")
        for shard in self._shards(namespace):
            if shard.stem < oldest:
                with contextlib.suppress(FileNotFoundError):
                    shard.unlink()

    def used_bytes(self, namespace: str) -> int:
        return sum(s.stat().st_size for s in self._shards(namespace))

    def store(
        self,
        namespace: str,
        request: Mapping[str, Any],
        completion: Mapping[str, Any],
        now: dt.datetime | None = None,
    ) -> dict[str, Any] | None:
        """Keep one completion when storing is enabled and the request asked (`store: true`); the record, or None."""
        if not self.enabled or request.get("store") is not True:
            return None
        now = now or dt.datetime.now(dt.UTC)
        self.prune(namespace, now)
        metadata = request.get("metadata") or {}
        record = {
            **completion,
            "id": completion.get("id") or f"chatcmpl-{secrets.token_hex(12)}",
            "created": completion.get("created") or int(now.timestamp()),
            "metadata": {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, Mapping) else {},
            "request": {"model": request.get("model"), "messages": request.get("messages") or []},
        }
        line = json.dumps(record, separators=(",", ":")) + "\n"
        if self.used_bytes(namespace) + len(line) > self.max_bytes:
            return None
        folder = self.folder(namespace)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{now:%Y-%m-%d}.jsonl").open("a", encoding="utf-8") as out:
            out.write(line)
        return record

    def records(self, namespace: str) -> Iterator[dict[str, Any]]:
        """Every stored completion, newest first."""
        for shard in self._shards(namespace):
            with contextlib.suppress(FileNotFoundError):
                lines = shard.read_text(encoding="utf-8").splitlines()
                for line in reversed(lines):
                    with contextlib.suppress(ValueError):
                        yield json.loads(line)

    def select(
        self, namespace: str, metadata: Mapping[str, str] | None = None, model: str | None = None
    ) -> list[dict[str, Any]]:
        """Stored completions whose metadata has every given key=value (and of `model`), newest first."""
        wanted = dict(metadata or {})
        return [
            r
            for r in self.records(namespace)
            if all((r.get("metadata") or {}).get(k) == v for k, v in wanted.items())
            and (model is None or r.get("model") == model or (r.get("request") or {}).get("model") == model)
        ]

    def get(self, namespace: str, completion_id: str) -> dict[str, Any]:
        for record in self.records(namespace):
            if record.get("id") == completion_id:
                return record
        raise not_found("chat completion", completion_id)

    def delete(self, namespace: str, completion_id: str) -> dict[str, Any]:
        for shard in self._shards(namespace):
            lines = shard.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [x for x in lines if _id(x) != completion_id]
            if len(kept) != len(lines):
                shard.write_text("".join(kept), encoding="utf-8")
                return {"id": completion_id, "object": "chat.completion.deleted", "deleted": True}
        raise not_found("chat completion", completion_id)


def _id(line: str) -> str | None:
    try:
        return json.loads(line).get("id")
    except ValueError:
        return None


def view(record: Mapping[str, Any]) -> dict[str, Any]:
    """The `chat.completion` object of a stored record (without the stored request)."""
    return {k: v for k, v in record.items() if k != "request"}


def messages_view(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's messages as OpenAI lists them (`chat.completion.message`s with ids)."""
    out = []
    for i, message in enumerate((record.get("request") or {}).get("messages") or []):
        if isinstance(message, Mapping):
            out.append({"id": f"{record['id']}-{i}", **message})
    return out


def training_example(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """One chat-format training example: the request's messages and the model's first answer; None when
    the record has no text answer (a tool call, an empty reply)."""
    messages = [
        {"role": m["role"], "content": m["content"]}
        for m in (record.get("request") or {}).get("messages") or []
        if isinstance(m, Mapping)
        and isinstance(m.get("content"), str)
        and m.get("role") in ("system", "user", "assistant")
    ]
    choices = record.get("choices") or []
    answer = (choices[0].get("message") or {}).get("content") if choices and isinstance(choices[0], Mapping) else None
    if not messages or not isinstance(answer, str) or not answer.strip():
        return None
    return {"messages": [*messages, {"role": "assistant", "content": answer}]}


def training_lines(records: list[dict[str, Any]]) -> list[str]:
    """JSONL lines of a chat-format training file, oldest first."""
    examples = (training_example(r) for r in reversed(records))
    return [json.dumps(e, ensure_ascii=False) + "\n" for e in examples if e is not None]
