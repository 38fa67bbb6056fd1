"""A FineTuneSweep -> the Katib objects that run its search on a cluster: a ConfigMap holding the trial
template and an Experiment (kubeflow.org/v1beta1) whose trials are FineTuneJobs.

Why a ConfigMap and not `trialTemplate.trialSpec`: Katib substitutes `${trialParameters.NAME}` as text
into the template. An inline trialSpec is serialized to JSON first, so a placeholder can only stand in a
JSON string and `learningRate` would arrive as "0.001", which the FineTuneJob schema refuses; the
ConfigMap's template is YAML text where the placeholder stands unquoted and parses as a number.

Metrics: the documented StdOut collector. The trainer prints `eval_loss=VALUE` at each evaluation
(`kubetune_trainer.callbacks`); Katib injects its collector beside the container `primaryContainerName`
of the pods labelled `primaryPodLabels` and parses those lines, so Katib's medianstop sees every
evaluation, as Optuna's pruner does locally. The trial's outcome is read from the FineTuneJob's status
conditions (successCondition/failureCondition, GJSON over the object).
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from kubetune import constants as c
from kubetune.api.sweep import FineTuneSweep, set_path

KATIB_API_VERSION = "kubeflow.org/v1beta1"
TEMPLATE_KEY = "finetunejob.yaml"
# GJSON over the FineTuneJob: its kstatus conditions (kubetune.status.finetunejob sets Succeeded/Failed).
SUCCESS_CONDITION = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
FAILURE_CONDITION = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
_SENTINEL = "KUBETUNE_TRIAL_PARAMETER_{}"


class _Dumper(yaml.SafeDumper):
    """Quotes strings a YAML 1.2 reader (Go's) would take for numbers (Katib's min/max are strings: "1e-06");
    writes the trial template as a block."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    try:
        float(value)
    except ValueError:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')


_Dumper.add_representer(str, _str)


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """The objects as one YAML stream for `kubectl apply -f`."""
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False)


def relative_uris(doc: Any, at: str = "") -> list[str]:
    """Field paths of `uri` values without a scheme: a cluster cannot read them (use pvc://, s3://, hf://)."""
    if isinstance(doc, dict):
        out = []
        for k, v in doc.items():
            here = f"{at}.{k}" if at else k
            if k == "uri" and isinstance(v, str) and "://" not in v:
                out.append(here)
            else:
                out += relative_uris(v, here)
        return out
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in relative_uris(v, f"{at}[{i}]")]
    return []


def template_config_map_name(sweep: FineTuneSweep) -> str:
    return f"{sweep.metadata.name}-trial-template"


def trial_template_text(sweep: FineTuneSweep) -> str:
    """The FineTuneJob as YAML with `${trialParameters.NAME}` at each parameter's path (unquoted but for
    categorical values), without metadata.name/namespace: Katib names each trial's object itself."""
    doc = copy.deepcopy(sweep.spec.template)
    meta = {k: v for k, v in (doc.get("metadata") or {}).items() if k not in ("name", "namespace", "generateName")}
    doc["metadata"] = meta
    for p in sweep.spec.parameters:
        doc = set_path(doc, p.path, _SENTINEL.format(p.name))
    text = yaml.safe_dump(doc, sort_keys=False)
    for p in sweep.spec.parameters:
        placeholder = "${trialParameters." + p.name + "}"
        text = text.replace(
            _SENTINEL.format(p.name), f'"{placeholder}"' if p.parameter_type == "categorical" else placeholder
        )
    if not meta:
        text = text.replace("metadata: {}\n", "")
    return text


def _number(v: float | None, kind: str) -> str:
    return str(int(v)) if kind == "int" and v is not None else repr(float(v or 0))


def _parameter(p: Any) -> dict[str, Any]:
    fs = p.feasible_space
    space: dict[str, Any] = {}
    if p.parameter_type in ("double", "int"):
        space = {"min": _number(fs.min, p.parameter_type), "max": _number(fs.max, p.parameter_type)}
        if fs.step is not None:
            space["step"] = _number(fs.step, p.parameter_type)
        space["distribution"] = fs.distribution
    else:
        space = {"list": [str(v) for v in fs.values or []]}
    return {"name": p.name, "parameterType": p.parameter_type, "feasibleSpace": space}


def katib_objects(sweep: FineTuneSweep, trainer_container: str = c.TRAINER_CONTAINER) -> list[dict[str, Any]]:
    """[ConfigMap, Experiment] for `kubectl apply`: the same search space, objective and early stopping."""
    spec = sweep.spec
    namespace = sweep.metadata.namespace or (spec.template.get("metadata") or {}).get("namespace") or "default"
    cm_name = template_config_map_name(sweep)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": cm_name, "namespace": namespace, "labels": {c.LABEL_PART_OF: "kubetune"}},
        "data": {TEMPLATE_KEY: trial_template_text(sweep)},
    }
    algorithm: dict[str, Any] = {"algorithmName": spec.algorithm.algorithm_name}
    if spec.algorithm.random_state is not None:
        algorithm["algorithmSettings"] = [{"name": "random_state", "value": str(spec.algorithm.random_state)}]
    experiment_spec: dict[str, Any] = {
        "objective": {
            "type": spec.objective.type,
            "objectiveMetricName": spec.objective.objective_metric_name,
        },
        "algorithm": algorithm,
        "parallelTrialCount": spec.parallel_trial_count,
        "maxTrialCount": spec.max_trial_count,
        "maxFailedTrialCount": spec.max_failed_trial_count,
        "parameters": [_parameter(p) for p in spec.parameters],
        "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
        "trialTemplate": {
            "primaryContainerName": trainer_container,
            # Only the trainer pods (rank 0 of several nodes prints the same lines as the others).
            "primaryPodLabels": {c.LABEL_ROLE: c.ROLE_TRAIN},
            "successCondition": SUCCESS_CONDITION,
            "failureCondition": FAILURE_CONDITION,
            "trialParameters": [
                {"name": p.name, "reference": p.name, "description": f"sets {p.path} of the FineTuneJob"}
                for p in spec.parameters
            ],
            "configMap": {"configMapName": cm_name, "configMapNamespace": namespace, "templatePath": TEMPLATE_KEY},
        },
    }
    if spec.early_stopping is not None:
        es = spec.early_stopping
        experiment_spec["earlyStopping"] = {
            "algorithmName": es.algorithm_name,
            "algorithmSettings": [
                {"name": "min_trials_required", "value": str(es.min_trials_required)},
                {"name": "start_step", "value": str(es.start_step)},
            ],
        }
    experiment = {
        "apiVersion": KATIB_API_VERSION,
        "kind": "Experiment",
        "metadata": {"name": sweep.metadata.name, "namespace": namespace},
        "spec": experiment_spec,
    }
    return [config_map, experiment]
