"""API keys: Secrets labelled `kubetune.dev/api-key=true` in the API server's keys namespace, each with
`data.key` (the bearer token) and `data.namespace` (the team namespace it opens). A key sees that
namespace's jobs, files, models and stored completions, and nothing else. Keys are never logged."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from kubetune import constants as c

KEY_SELECTOR = {c.LABEL_API_KEY: "true"}
REFRESH_SECONDS = 30.0  # how stale the key list may get (a new or revoked key takes effect within this)
MIN_REFRESH_SECONDS = 1.0  # an unknown key re-reads the Secrets at most this often


def _decoded(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True).decode().strip() or None
    except (binascii.Error, UnicodeDecodeError):
        return None


def keys_from_secrets(secrets: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """token -> namespace of every well-formed API-key Secret."""
    out = {}
    for secret in secrets:
        data = secret.get("data") or {}
        token, namespace = _decoded(data, "key"), _decoded(data, "namespace")
        if token and namespace:
            out[token] = namespace
    return out


class KeyRing:
    """Looks a bearer token up; re-reads the Secrets when the list is old or a token is unknown."""

    def __init__(self, load: Callable[[], Awaitable[list[dict[str, Any]]]]) -> None:
        self._load, self._keys, self._read_at = load, {}, float("-inf")

    async def _refresh(self) -> None:
        self._keys, self._read_at = keys_from_secrets(await self._load()), time.monotonic()

    async def namespace(self, token: str) -> str | None:
        age = time.monotonic() - self._read_at
        if age > REFRESH_SECONDS:
            await self._refresh()
            age = 0.0
        found = self._match(token)
        if found is None and age > MIN_REFRESH_SECONDS:
            await self._refresh()
            found = self._match(token)
        return found

    def _match(self, token: str) -> str | None:
        found = None
        for key, namespace in self._keys.items():  # compare every key in constant time
            if hmac.compare_digest(key.encode(), token.encode()):
                found = namespace
        return found
