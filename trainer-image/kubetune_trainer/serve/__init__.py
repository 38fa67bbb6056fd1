"""`kubetune-trainer serve`: an OpenAI-compatible server for a fine-tuned model (see app.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from kubetune import constants as c
from kubetune_trainer.serve import options as options_module


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `kubetune-trainer serve --config FILE [--host H] [--port P] [limits, LoRA flags]`.

    Serves until stopped; exits 1 when the model cannot be loaded (the pod restarts and its
    logs say why), 2 when the config cannot be read.
    """
    import os

    parser = argparse.ArgumentParser(prog="kubetune-trainer serve", description=main.__doc__)
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

    import uvicorn
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
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host or config.host, port=args.port or config.port, log_level=args.log_level)
    )
    server.run()
    if failed:
        print(f"serve: could not load {config.model_uri}: {failed[0]}", file=sys.stderr)
        return 1
    return 0
