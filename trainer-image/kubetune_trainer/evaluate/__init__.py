"""`kubetune-trainer evaluate`: score models against a baseline and decide pass/fail (see runner.py)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from kubetune import constants as c


def default_config_path() -> str:
    return os.environ.get(c.ENV_RUN_CONFIG) or f"{c.RUN_CONFIG_MOUNT}/{c.RUN_CONFIG_FILE}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `kubetune-trainer evaluate --config FILE`. Prints the status payload as JSON.

    Exit status 0 when the evaluation ran (whether or not the models passed: that is in the status),
    1 when the status could not be written, 2 when the config, data or a model cannot be used.
    """
    parser = argparse.ArgumentParser(prog="kubetune-trainer evaluate", description=main.__doc__)
    parser.add_argument("--config", default=default_config_path(), help="EvalRunConfig (JSON or YAML)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from pydantic import ValidationError

    from kubetune.api.manifests import pydantic_errors
    from kubetune.api.runconfig import EvalRunConfig
    from kubetune.objectstore import S3Options, configured
    from kubetune_trainer import termination
    from kubetune_trainer.evaluate.examples import DatasetError
    from kubetune_trainer.evaluate.runner import StatusNotPublished, run
    from kubetune_trainer.sources import ModelSourceError

    try:
        config = EvalRunConfig.load(args.config)
        with configured(S3Options.from_spec(config.spec.s3)):  # spec.s3: endpoint and region of s3:// data
            results = run(config)
    except ValidationError as e:  # a run config admission never saw (written by hand): one line, each field named
        found = "; ".join(f"{m.path}: {' '.join(m.message.split())}" for m in pydantic_errors(e, args.config))
        message = f"the run config {args.config} is invalid: {found}"
        print(f"evaluate: {message}", file=sys.stderr)
        termination.write(termination.CONFIG_ERROR, message)
        return 2
    except (OSError, DatasetError, ModelSourceError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        termination.record_failure(e)
        return 2
    except StatusNotPublished as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 1
    print(json.dumps(results["status"], indent=2))
    return 0
