"""FineTuneSweep: a hyperparameter search over a FineTuneJob, declared once for both engines.

A file format read by `kubetune sweep`, not a CRD: on a cluster the search is a Katib Experiment
(`kubetune sweep FILE --katib` writes it; `kubetune.builders.katib`), locally it is an Optuna study
(`kubetune.local.sweep`). A CRD of our own would need a controller that schedules trials, which is
Katib's job. The vocabulary is Katib's (objective.type/objectiveMetricName, algorithmName,
parameterType, feasibleSpace, earlyStopping medianstop with min_trials_required/start_step,
maxTrialCount, parallelTrialCount, maxFailedTrialCount), so the translation is one to one:

    apiVersion: kubetune.dev/v1alpha1
    kind: FineTuneSweep
    metadata: {name: lr-sweep, namespace: team-travel}
    spec:
      template: {apiVersion: kubetune.dev/v1alpha1, kind: FineTuneJob, metadata: {...}, spec: {...}}
      objective: {type: minimize, objectiveMetricName: eval_loss}
      algorithm: {algorithmName: tpe, randomState: 0}
      earlyStopping: {algorithmName: medianstop, minTrialsRequired: 2, startStep: 2}
      parameters:
        - {name: learningRate, path: spec.hyperparameters.learningRate, parameterType: double,
           feasibleSpace: {min: 1.0e-5, max: 1.0e-2, distribution: logUniform}}
      maxTrialCount: 8
      parallelTrialCount: 2
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from kubetune.api import bounds
from kubetune.api.common import KubeModel, ObjectMeta
from kubetune.api.manifests import ManifestError, iter_documents, pydantic_errors

SWEEP_KIND = "FineTuneSweep"
OBJECTIVE_METRICS = ("eval_loss",)  # what a FineTuneJob reports per evaluation (status.metrics.evalLoss)
PARAMETER_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"  # a Katib trialParameter name and an Optuna name
SPEC_PATH_PATTERN = r"^spec(\.[A-Za-z][A-Za-z0-9]*)+$"
MAX_PARAMETERS = 16
MAX_LIST = 64


class FeasibleSpace(KubeModel):
    """Katib's feasibleSpace: min/max (and step) for double and int, list for categorical and discrete."""

    min: float | None = Field(default=None, description="Lowest value (double, int).")
    max: float | None = Field(default=None, description="Highest value (double, int).")
    step: float | None = Field(default=None, gt=0, description="Grid step (double, int; the grid algorithm).")
    values: list[str | float] | None = Field(
        default=None, alias="list", min_length=1, max_length=MAX_LIST, description="Values (categorical, discrete)."
    )
    distribution: Literal["uniform", "logUniform"] = Field(
        default="uniform", description="uniform, or logUniform (sample the logarithm; min must be > 0)."
    )


class SweepParameter(KubeModel):
    """One searched value and where it goes in the FineTuneJob."""

    name: str = Field(max_length=63, pattern=PARAMETER_NAME_PATTERN, description="Parameter name.")
    path: str = Field(
        max_length=bounds.OBJECT_NAME_MAX,
        pattern=SPEC_PATH_PATTERN,
        description="Field of the FineTuneJob it sets, e.g. spec.hyperparameters.learningRate.",
    )
    parameter_type: Literal["double", "int", "categorical", "discrete"] = Field(description="Katib's type.")
    feasible_space: FeasibleSpace

    @model_validator(mode="after")
    def _space_fits_type(self) -> SweepParameter:
        fs = self.feasible_space
        if self.parameter_type in ("double", "int"):
            if fs.min is None or fs.max is None:
                raise ValueError(f"feasibleSpace: {self.parameter_type} needs min and max")
            if fs.min >= fs.max:
                raise ValueError(f"feasibleSpace: min ({fs.min}) must be below max ({fs.max})")
            if fs.distribution == "logUniform" and fs.min <= 0:
                raise ValueError("feasibleSpace: logUniform needs min > 0")
            if fs.values is not None:
                raise ValueError(f"feasibleSpace: {self.parameter_type} takes min/max, not list")
            if self.parameter_type == "int":
                odd = [
                    f"{k} ({v})"
                    for k, v in (("min", fs.min), ("max", fs.max), ("step", fs.step))
                    if v is not None and v != int(v)
                ]
                if odd:
                    raise ValueError(f"feasibleSpace: an int parameter takes whole numbers: {', '.join(odd)}")
        else:
            if not fs.values or fs.min is not None or fs.max is not None:
                raise ValueError(f"feasibleSpace: {self.parameter_type} takes list, not min/max")
            if self.parameter_type == "discrete" and not all(isinstance(v, float | int) for v in fs.values):
                raise ValueError("feasibleSpace.list: discrete values are numbers (categorical takes strings)")
            if self.parameter_type == "categorical" and not all(isinstance(v, str) for v in fs.values):
                raise ValueError("feasibleSpace.list: categorical values are strings (discrete takes numbers)")
        return self

    def sample_value(self) -> Any:
        """A value of the space (its lowest), to check that the template accepts it."""
        return self.edge_values()[0]

    def edge_values(self) -> list[Any]:
        """The values the template must accept: every value of a list, min and max of a range."""
        fs = self.feasible_space
        if self.parameter_type == "int":
            return [int(fs.min or 0), int(fs.max or 0)]
        if self.parameter_type == "double":
            return [fs.min, fs.max]
        return list(fs.values or [])


class Objective(KubeModel):
    type: Literal["minimize", "maximize"] = Field(description="Katib's objective.type.")
    objective_metric_name: Literal["eval_loss"] = Field(
        description="The metric: eval_loss, reported by the trainer at each evaluation (checkpoints.every)."
    )


class Algorithm(KubeModel):
    algorithm_name: Literal["tpe", "random", "grid"] = Field(
        default="tpe", description="Katib's algorithmName; Optuna's TPESampler, RandomSampler or GridSampler."
    )
    random_state: int | None = Field(default=None, ge=0, le=2**31 - 1, description="Seed of the sampler.")


class EarlyStopping(KubeModel):
    """Katib's medianstop; locally Optuna's MedianPruner (n_startup_trials, n_warmup_steps)."""

    algorithm_name: Literal["medianstop"] = "medianstop"
    min_trials_required: int = Field(default=3, ge=1, le=1000, description="Finished trials before any stop.")
    start_step: int = Field(default=4, ge=1, le=100000, description="Evaluations a trial reports before a stop.")


class FineTuneSweepSpec(KubeModel):
    template: dict[str, Any] = Field(description="The FineTuneJob manifest each trial runs, with its values set.")
    objective: Objective
    algorithm: Algorithm = Field(default_factory=Algorithm)
    early_stopping: EarlyStopping | None = None
    parameters: list[SweepParameter] = Field(min_length=1, max_length=MAX_PARAMETERS)
    max_trial_count: int = Field(default=8, ge=1, le=1000)
    parallel_trial_count: int = Field(default=1, ge=1, le=64, description="Katib only: locally one at a time.")
    max_failed_trial_count: int = Field(default=3, ge=0, le=1000)

    @model_validator(mode="after")
    def _distinct(self) -> FineTuneSweepSpec:
        for what in ("name", "path"):
            seen = [getattr(p, what) for p in self.parameters]
            dup = next((v for v in seen if seen.count(v) > 1), None)
            if dup:
                raise ValueError(f"parameters: {what} {dup!r} appears twice")
        if self.algorithm.algorithm_name == "grid":
            # Katib's grid needs a step for doubles; the local grid uses the same points (kubetune.local.sweep).
            for i, p in enumerate(self.parameters):
                if p.parameter_type == "double" and p.feasible_space.step is None:
                    raise ValueError(
                        f"parameters[{i}].feasibleSpace.step: algorithm grid needs a step for double parameter "
                        f"{p.name} (the grid is min, min+step, ... up to max)"
                    )
        kind = self.template.get("kind")
        if kind != "FineTuneJob":
            raise ValueError(f"template: kind must be FineTuneJob (got {kind!r})")
        return self


class FineTuneSweep(KubeModel):
    api_version: Literal["kubetune.dev/v1alpha1"] = "kubetune.dev/v1alpha1"
    kind: Literal["FineTuneSweep"] = "FineTuneSweep"
    metadata: ObjectMeta
    spec: FineTuneSweepSpec


def set_path(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `doc` with the dotted `path` (spec.a.b) set to `value`, making the maps on the way."""
    out = copy.deepcopy(doc)
    node = out
    *parents, last = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value
    return out


def get_path(doc: dict[str, Any], path: str) -> Any:
    """The value at the dotted `path`, or None."""
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


class SweepError(Exception):
    """A sweep file that cannot be run: one line per problem, each naming the file and the field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def trial_document(sweep: FineTuneSweep, values: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The template with each parameter's value at its path (and `name` as metadata.name when given)."""
    doc = copy.deepcopy(sweep.spec.template)
    for p in sweep.spec.parameters:
        doc = set_path(doc, p.path, values[p.name])
    if name is not None:
        doc.setdefault("metadata", {})["name"] = name
    return doc


def load_sweep(path: Path) -> FineTuneSweep:
    """The one FineTuneSweep of a file, its template admitted as a FineTuneJob (as the API server would admit a
    trial) with every parameter at its lowest value, then with each categorical/discrete value and each max
    in turn, so a value the FineTuneJob refuses is named before any trial runs; raises SweepError."""
    from kubetune.api.admission import admit  # admission imports every kind; only loading needs it

    try:
        docs = [doc for _, doc in iter_documents(path)]
    except (OSError, yaml.YAMLError, ValueError) as err:
        raise SweepError([f"{path}: {err}"]) from None
    sweeps = [d for d in docs if isinstance(d, dict) and d.get("kind") == SWEEP_KIND]
    if len(sweeps) != 1:
        raise SweepError([f"{path}: expected one document of kind {SWEEP_KIND}, found {len(sweeps)}"])
    try:
        sweep = FineTuneSweep.model_validate(sweeps[0])
    except ValidationError as err:
        raise SweepError([str(e) for e in pydantic_errors(err, str(path))]) from None
    lowest = {p.name: p.sample_value() for p in sweep.spec.parameters}
    _, errors = admit(trial_document(sweep, lowest), f"{path}: spec.template")
    if errors:
        raise SweepError([str(e) for e in errors] + _path_hints(sweep, errors, path))
    refused = []
    for i, p in enumerate(sweep.spec.parameters):
        for value in p.edge_values()[1:] if p.parameter_type in ("double", "int") else p.edge_values():
            _, errors = admit(trial_document(sweep, {**lowest, p.name: value}), f"{path}: spec.template")
            if errors:
                refused.append(
                    f"{path}: spec.parameters[{i}] ({p.name}) value {value!r} at {p.path} is refused by the "
                    f"FineTuneJob: {errors[0].message}"
                )
    if refused:
        raise SweepError(refused)
    return sweep


def _path_hints(sweep: FineTuneSweep, errors: list[ManifestError], path: Path) -> list[str]:
    out = []
    for i, p in enumerate(sweep.spec.parameters):
        if any(e.path == p.path or e.path.startswith(p.path + ".") for e in errors):
            out.append(f"{path}: spec.parameters[{i}] ({p.name}) sets {p.path}, which the FineTuneJob refuses above")
    return out
