"""Judges served by a ModelDeployment in `kubetune run`: their endpoints, from the servers of this run.

The plan serves such a ModelDeployment before the FineTuneJob or Evaluation whose judge it is
(plan.dependencies), and its server stays up until the run ends. A ModelDeployment not served by this run
(not in PATH, `--no-serve`, or its server did not start) has no endpoint here: an earlier run's server
stopped with that run.
"""

from __future__ import annotations

from kubetune import constants as c
from kubetune.api import Evaluation, FineTuneJob, ModelDeployment
from kubetune.builders.runconfig import JudgeNotReady, judge_deployments, resolve_judge_endpoints
from kubetune.local.context import Run, key_of


def judge_endpoints(resource: FineTuneJob | Evaluation, run: Run) -> dict[str, str]:
    """name -> endpoint of the ModelDeployments the resource's judges name; JudgeNotReady, naming the field
    and what to do, when one is not served by this run."""
    ns = resource.metadata.namespace or "default"
    served = {key_of(md) for md, child in run.servers if child.poll() is None}
    deployments: dict[str, ModelDeployment | None] = {}
    for ref in judge_deployments(resource.spec):
        key = (ns, c.MODELDEPLOYMENT, ref.name)
        if key not in served:
            why = "--no-serve starts no server" if run.no_serve else "it is not served by this run"
            raise JudgeNotReady(
                f"{ref.field}: ModelDeployment {ref.name!r} has no endpoint ({why}); `kubetune run` serves a judge "
                "ModelDeployment defined in the same PATH before the resources that use it, or set "
                "endpoint.url to a judge that is already running"
            )
        deployments[ref.name] = run.get_as(key, ModelDeployment)
    return resolve_judge_endpoints(resource.spec, deployments)
