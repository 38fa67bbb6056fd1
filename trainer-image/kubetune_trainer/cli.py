"""`kubetune-trainer`: the trainer image's entry point (train, init-tiny; evaluate and serve live beside)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from kubetune import constants as c


def _setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("KUBETUNE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_train(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from kubetune_trainer.train import EXIT_CONFIG, load_config, run

    path = args.config or os.environ.get(c.ENV_RUN_CONFIG)
    if not path:
        print("kubetune-trainer train: --config FILE (or $KUBETUNE_RUN_CONFIG) is required", file=sys.stderr)
        return EXIT_CONFIG
    try:
        cfg = load_config(path)
    except (OSError, ValueError, ValidationError) as err:
        print(f"kubetune-trainer train: cannot read the run config {path}: {err}", file=sys.stderr)
        return EXIT_CONFIG
    return run(cfg, config_path=path, worker=args.worker)


def cmd_init_tiny(args: argparse.Namespace) -> int:
    from kubetune_trainer import tiny

    return tiny.main(args.rest)


def cmd_merge(args: argparse.Namespace) -> int:
    from kubetune_trainer import merge

    return merge.main(["--config", args.config, "--out", args.out])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetune-trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="validate the data and train, as the run config says")
    p.add_argument("--config", help=f"run config (JSON or YAML); default ${c.ENV_RUN_CONFIG}")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # set by the launcher
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("init-tiny", help="write a tiny Llama model trained-tokenizer for tests", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_init_tiny)
    p = sub.add_parser("merge", help="merge a LoRA checkpoint into its base, once (serving init container)")
    p.add_argument("--config", required=True, help="the ServeRunConfig (model_uri: the adapter)")
    p.add_argument("--out", required=True, help="where the merged model goes (skipped when it holds one)")
    p.set_defaults(func=cmd_merge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
