"""`kubetune-trainer serve`: an OpenAI-compatible server for a fine-tuned model (see app.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kubetune import constants as c
from kubetune_trainer.serve import options as options_module

if TYPE_CHECKING:
    import uvicorn


ENVIRONMENT_HELP = f"""environment:
  {options_module.ENV_API_KEY}       an API key: /v1/* then wants 'Authorization: Bearer <key>' (401 without)
  {options_module.ENV_API_KEY_FILE}  a file holding the key (a mounted Secret), read when {options_module.ENV_API_KEY} is unset
  {options_module.ENV_PREFIX}<FLAG>   each flag above, e.g. {options_module.ENV_PREFIX}MAX_WAITING=64 (the flag wins)
The key is never taken from an argument (ps and pod specs show those). /healthz, /health and /metrics stay open.
"""


class _NoQueryInAccessLog(logging.Filter):
    """uvicorn's access log line without the query string: a key sent as ?api_key=... must not reach the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].partition("?")[0], *args[3:])
        return True


def make_server(app: object, host: str, port: int, log_level: str = "info") -> uvicorn.Server:
    """The uvicorn server for `app`, its access log without query strings."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))  # pyright: ignore[reportArgumentType]
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _NoQueryInAccessLog) for f in access.filters):
        access.addFilter(_NoQueryInAccessLog())
    return server


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `kubetune-trainer serve --config FILE [--host H] [--port P] [limits, LoRA flags]`.

    Serves until stopped; exits 1 when the model cannot be loaded (the pod restarts and its
    logs say why), 2 when the config cannot be read.
    """
    import os

    parser = argparse.ArgumentParser(
        prog="kubetune-trainer serve",
        description=main.__doc__,
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        default=os.environ.get(c.ENV_RUN_CONFIG) or f"{c.RUN_CONFIG_MOUNT}/{c.RUN_CONFIG_FILE}",
        help="ServeRunConfig (JSON or YAML)",
    )
    parser.add_argument("--host", help="address to listen on (default: the config's host)")
    parser.add_argument("--port", type=int, help="port (default: the config's port)")
    parser.add_argument("--log-level", default="info")
    options_module.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from pydantic import ValidationError

    from kubetune.api.runconfig import ServeRunConfig
    from kubetune_trainer.serve.app import create_app

    try:
        config = ServeRunConfig.load(args.config)
    except (OSError, ValidationError, ValueError) as e:
        print(f"serve: {args.config}: {e}", file=sys.stderr)
        return 2
    try:
        options = options_module.from_args(args)
    except (OSError, ValueError) as e:
        print(f"serve: {e}", file=sys.stderr)
        return 2
    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(err: BaseException) -> None:
        failed.append(err)
        if server is not None:
            server.should_exit = True

    # The generating thread holds the GIL between torch ops; with the default 5 ms switch interval every
    # hand-over to the event loop costs up to 5 ms, and a request needs dozens of them (a convoy).
    sys.setswitchinterval(0.0005)
    app = create_app(config, options=options, on_load_error=on_load_error)
    server = make_server(app, args.host or config.host, args.port or config.port, args.log_level)
    server.run()
    if failed:
        print(f"serve: could not load {config.model_uri}: {failed[0]}", file=sys.stderr)
        return 1
    return 0
