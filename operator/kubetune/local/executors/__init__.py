"""One executor per kind: how `kubetune run` runs a FineTuneJob, an Evaluation or a ModelDeployment on this machine.

Each takes the plan item and the `Run`, starts the child process a pod would run, follows it, writes the
resource's status through `kubetune.status` (as the operator would) and returns whether it succeeded.
"""

from __future__ import annotations

from collections.abc import Callable

from kubetune import constants as c
from kubetune.local.context import Run
from kubetune.local.executors.evaluation import run_evaluation
from kubetune.local.executors.finetunejob import run_job
from kubetune.local.executors.modeldeployment import start_deployment
from kubetune.local.plan import Item

EXECUTORS: dict[str, Callable[[Item, Run], bool]] = {
    c.FINETUNEJOB: run_job,
    c.EVALUATION: run_evaluation,
    c.MODELDEPLOYMENT: start_deployment,
}
