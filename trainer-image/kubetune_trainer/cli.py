"""`kubetune-trainer`: the shared image's entry point: train, evaluate, serve, merge, init-tiny.

A failure is also written as the container's termination message (termination.py): its reason (data error,
model source error, out of disk, out of memory, ...) in one short line that `kubectl describe` and the
FineTuneJob's status show.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from kubetune import constants as c


def _setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("KUBETUNE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _exit_on_sigterm() -> None:
    """SIGTERM before or after the training loop (validating data, loading the model): exit 143 at once.

    In a container this process is PID 1, for which the kernel ignores a signal that has no handler:
    without this, a pod stopped while loading would sit out the whole termination grace period.
    During training `GracefulStop` replaces it with stop-after-the-step-and-checkpoint.
    """
    import signal

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def cmd_train(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    _exit_on_sigterm()

    from kubetune_trainer import termination
    from kubetune_trainer.train import EXIT_CONFIG, EXIT_DATA, VALIDATION_REPORT, load_config, run

    path = args.config or os.environ.get(c.ENV_RUN_CONFIG)
    if not path:
        print("kubetune-trainer train: --config FILE (or $KUBETUNE_RUN_CONFIG) is required", file=sys.stderr)
        termination.write(termination.CONFIG_ERROR, f"no run config: ${c.ENV_RUN_CONFIG} is not set")
        return EXIT_CONFIG
    try:
        cfg = load_config(path)
    except (OSError, ValueError, ValidationError) as err:
        print(f"kubetune-trainer train: cannot read the run config {path}: {err}", file=sys.stderr)
        termination.write(termination.CONFIG_ERROR, f"cannot read the run config {path}: {err}")
        return EXIT_CONFIG
    from kubetune.objectstore import S3Options, configured

    with configured(S3Options.from_spec(cfg.spec.s3)):  # spec.s3: endpoint and region of s3:// data and export
        rc = run(cfg, config_path=path, worker=args.worker)
    if rc == EXIT_DATA:
        report = Path(cfg.output_dir) / VALIDATION_REPORT
        lines = report.read_text(encoding="utf-8").splitlines()[:4] if report.is_file() else []
        termination.write(termination.DATA_ERROR, "; ".join(lines) or "the training data is invalid")
    return rc


# Subcommands with a parser of their own: the rest of the command line goes to them as it is
# (argparse.REMAINDER would swallow a leading `--option` into the top-level parser's errors).
DELEGATES = {
    "init-tiny": ("kubetune_trainer.tiny", "write a tiny Llama model with a BPE tokenizer trained on given data"),
    "evaluate": ("kubetune_trainer.evaluate", "score models against the baseline, as the run config says"),
    "serve": ("kubetune_trainer.serve", "serve a model behind an OpenAI-compatible API"),
    "merge": ("kubetune_trainer.merge", "merge a LoRA checkpoint into its base, once (serving init container)"),
    "serve-adapters-sync": (
        "kubetune_trainer.adapters_sync",
        "keep the server's LoRA adapters equal to the mounted adapter set (serving sidecar)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetune-trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="validate the data and train, as the run config says")
    p.add_argument("--config", help=f"run config (JSON or YAML); default ${c.ENV_RUN_CONFIG}")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # set by the launcher
    p.set_defaults(func=cmd_train)
    for name, (_module, help_text) in DELEGATES.items():
        sub.add_parser(name, help=f"{help_text} (see `kubetune-trainer {name} --help`)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in DELEGATES:
            _setup_logging()
            module = importlib.import_module(DELEGATES[argv[0]][0])
            return int(module.main(argv[1:]) or 0)
        args = build_parser().parse_args(argv)
        _setup_logging()
        return int(args.func(args) or 0)
    except Exception as err:  # the traceback still goes to the log; the message says why in one line
        from kubetune_trainer import termination
        from kubetune_trainer.teacher import TeacherError

        termination.record_failure(err)
        if isinstance(err, TeacherError):  # the teacher endpoint's own message says it all; no traceback
            print(f"kubetune-trainer: {err}", file=sys.stderr)
            return c.EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())
