"""The entry point of `kubetune run` (`kubetune.local.runner:main`, what `kubetune run` delegates to).

The runtime is split by concern: `cli` (arguments, the plan, the order of work), `executors` (one per
kind), `context` (what one run knows), `progress` (the terminal UI), `server` (HTTP to the local model
server), `samples` (the request it gets), `checkpoints` (a job's checkpoints on disk), `signals`,
`events` (the trainer's progress file), `state` (the runs folder), `report` and `summary`.
"""

from kubetune.constants import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from kubetune.local.cli import main

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]
