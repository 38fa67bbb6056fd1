"""How the server holds under load and whom it serves: limits, batching, LoRA adapters, the API key.

Each setting comes from a command-line flag, else an environment variable `KUBETUNE_SERVE_<NAME>`, else
its default. The API key comes only from the environment (`KUBETUNE_API_KEY`) or a file
(`KUBETUNE_API_KEY_FILE`, a mounted Secret): never from an argument, which `ps` and pod specs show.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENV_API_KEY = "KUBETUNE_API_KEY"
ENV_API_KEY_FILE = "KUBETUNE_API_KEY_FILE"
ENV_PREFIX = "KUBETUNE_SERVE_"


@dataclass(frozen=True)
class ServeOptions:
    max_body_bytes: int = 8 * 1024 * 1024  # a larger request body is answered 413 before it is parsed
    max_prompt_tokens: int | None = None  # None: the model's context is the limit
    max_tokens_limit: int | None = None  # the most max_tokens a request may ask; None: the model's context
    max_batch_size: int = 16  # requests in one generate call (vLLM's --max-num-seqs)
    max_waiting: int = 128  # requests queued behind the running batch; more are answered 429
    batch_wait_ms: float = 5.0  # an idle engine waits this long for more requests to batch with the first
    retry_after_s: int = 1  # the Retry-After of a 429
    enable_lora: bool = False  # runtime adapter loading (POST /v1/load_lora_adapter)
    lora_modules: dict[str, str] = field(default_factory=dict)  # adapter name -> URI, loaded at start
    api_key: str | None = None  # required as `Authorization: Bearer` on /v1/* when set

    @property
    def lora(self) -> bool:
        return self.enable_lora or bool(self.lora_modules)


def read_api_key(env: Mapping[str, str]) -> str | None:
    """The API key from KUBETUNE_API_KEY, else from the file KUBETUNE_API_KEY_FILE names (trailing newline dropped)."""
    if env.get(ENV_API_KEY):
        return env[ENV_API_KEY]
    if path := env.get(ENV_API_KEY_FILE):
        key = Path(path).read_text().strip()
        if not key:
            raise ValueError(f"{ENV_API_KEY_FILE}: the file {path} is empty")
        return key
    return None


def parse_lora_modules(values: Sequence[str]) -> dict[str, str]:
    """vLLM's `--lora-modules name=path ...` (each value may hold several, space-separated)."""
    modules: dict[str, str] = {}
    for item in (part for value in values for part in value.split()):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--lora-modules: {item!r} is not NAME=PATH")
        modules[name] = path
    return modules


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `kubetune-trainer serve` that set ServeOptions (each has an env fallback, see module doc)."""
    g = parser.add_argument_group("limits and batching")
    g.add_argument("--max-body-bytes", type=int, help="largest request body (default 8 MiB; 413 above)")
    g.add_argument("--max-prompt-tokens", type=int, help="most prompt tokens (default: the model's context)")
    g.add_argument("--max-tokens-limit", type=int, help="largest max_tokens a request may ask")
    g.add_argument("--max-batch-size", "--max-num-seqs", type=int, help="requests per generate call (16)")
    g.add_argument("--max-waiting", type=int, help="queued requests before 429 (128)")
    g.add_argument("--batch-wait-ms", type=float, help="how long an idle engine gathers a batch (5)")
    lora = parser.add_argument_group("LoRA adapters (vLLM-compatible)")
    lora.add_argument("--enable-lora", action="store_true", default=None, help="allow runtime adapter loading")
    lora.add_argument("--lora-modules", nargs="+", default=[], metavar="NAME=PATH", help="adapters to load at start")


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> ServeOptions:
    env = os.environ if env is None else env
    defaults = ServeOptions()

    def pick(name: str, kind: type) -> object:
        flag = getattr(args, name, None)
        if flag is not None:
            return flag
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is None or raw == "":
            return getattr(defaults, name)
        if kind is bool:
            return raw.lower() in ("1", "true", "yes")
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a {kind.__name__}") from None

    modules = parse_lora_modules([*getattr(args, "lora_modules", []), env.get(ENV_PREFIX + "LORA_MODULES", "")])
    return ServeOptions(
        max_body_bytes=pick("max_body_bytes", int),  # pyright: ignore[reportArgumentType]
        max_prompt_tokens=pick("max_prompt_tokens", int),  # pyright: ignore[reportArgumentType]
        max_tokens_limit=pick("max_tokens_limit", int),  # pyright: ignore[reportArgumentType]
        max_batch_size=pick("max_batch_size", int),  # pyright: ignore[reportArgumentType]
        max_waiting=pick("max_waiting", int),  # pyright: ignore[reportArgumentType]
        batch_wait_ms=pick("batch_wait_ms", float),  # pyright: ignore[reportArgumentType]
        enable_lora=bool(pick("enable_lora", bool)),
        lora_modules=modules,
        api_key=read_api_key(env),
    )
