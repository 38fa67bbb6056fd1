"""`kubetune sweep FILE --katib`: the Katib Experiment (and its trial-template ConfigMap) checked against Katib's
own schema, vendored in tests/fixtures/katib (Apache-2.0): the CRD Katib installs and the OpenAPI definitions
Katib generates from its Go types; then the trial Katib would create from it, admitted as a FineTuneJob."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from kubetune.api.admission import admit
from kubetune.api.sweep import SweepError, load_sweep
from kubetune.cli import main as kubetune_main

KATIB = Path(__file__).parents[2] / "fixtures" / "katib"
# Katib's generator: each `${trialParameters.NAME}` of the template is replaced by the assignment's text.
PLACEHOLDER = re.compile(r"\$\{trialParameters\.([A-Za-z0-9_]+)\}")

SWEEP = """\
apiVersion: kubetune.dev/v1alpha1
kind: FineTuneSweep
metadata: {name: lr-sweep, namespace: team-travel}
spec:
  template:
    apiVersion: kubetune.dev/v1alpha1
    kind: FineTuneJob
    metadata: {name: travel-assistant, labels: {team: travel}}
    spec:
      method: sft
      baseModel: {uri: hf://Qwen/Qwen2.5-0.5B-Instruct}
      dataset: {train: {uri: pvc://datasets/train.jsonl}, validation: {uri: pvc://datasets/valid.jsonl}}
      adapter: {type: lora, r: 16}
      hyperparameters: {epochs: 2, learningRate: 1.0e-7, lrScheduler: cosine}
      checkpoints: {every: 50, unit: steps, selectBy: {metric: eval_loss, mode: min}}
  objective: {type: minimize, objectiveMetricName: eval_loss}
  algorithm: {algorithmName: tpe, randomState: 7}
  earlyStopping: {algorithmName: medianstop, minTrialsRequired: 2, startStep: 2}
  parameters:
    - {name: learningRate, path: spec.hyperparameters.learningRate, parameterType: double,
       feasibleSpace: {min: 1.0e-6, max: 1.0e-2, distribution: logUniform}}
    - {name: loraRank, path: spec.adapter.r, parameterType: int, feasibleSpace: {min: 4, max: 64}}
    - {name: scheduler, path: spec.hyperparameters.lrScheduler, parameterType: categorical,
       feasibleSpace: {list: [cosine, linear, constant]}}
  maxTrialCount: 12
  parallelTrialCount: 3
"""


def _strict(node):
    """Katib's definitions with every object closed: a field the Go types lack is an error, not dropped."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def _experiment_validator() -> jsonschema.Draft4Validator:
    definitions = json.loads((KATIB / "swagger.json").read_text())["definitions"]
    # Kubernetes' own types, which Katib's file refers to but does not hold.
    for ref, schema in {
        "v1.ObjectMeta": {"type": "object"},
        "v1.ListMeta": {"type": "object"},
        "v1.Time": {"type": "string"},
        "v1.Container": {"type": "object"},
        "v1.HTTPGetAction": {"type": "object"},
        "v1.unstructured.Unstructured": {"type": "object"},
    }.items():
        definitions.setdefault(ref, schema)
    schema = {"$ref": "#/definitions/v1beta1.Experiment", "definitions": _strict(definitions)}
    return jsonschema.Draft4Validator(schema)


def _objects(tmp_path: Path, text: str = SWEEP) -> tuple[dict, dict]:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    out = tmp_path / "katib.yaml"
    assert kubetune_main(["sweep", str(path), "--katib", "-o", str(out)]) == 0
    config_map, experiment = yaml.safe_load_all(out.read_text())
    return config_map, experiment


def test_the_experiment_validates_against_katibs_schema_and_crd(tmp_path):
    config_map, experiment = _objects(tmp_path)
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in _experiment_validator().iter_errors(experiment)
    ]
    assert errors == []
    crd = yaml.safe_load((KATIB / "experiment-crd.yaml").read_text())
    assert (experiment["apiVersion"], experiment["kind"]) == (
        f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}",
        crd["spec"]["names"]["kind"],
    )
    jsonschema.validate(experiment, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])

    spec = experiment["spec"]
    assert spec["objective"] == {"type": "minimize", "objectiveMetricName": "eval_loss"}
    assert spec["algorithm"]["algorithmName"] == "tpe" and spec["parallelTrialCount"] == 3
    assert spec["earlyStopping"]["algorithmName"] == "medianstop"
    # Katib's types hold min/max as strings; a YAML 1.2 reader must not turn 1e-06 into a number.
    space = spec["parameters"][0]["feasibleSpace"]
    assert space == {"min": "1e-06", "max": "0.01", "distribution": "logUniform"}
    assert spec["trialTemplate"]["configMap"]["configMapName"] == config_map["metadata"]["name"]
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"


def test_the_strict_schema_refuses_a_field_katib_does_not_have(tmp_path):
    _, experiment = _objects(tmp_path)
    broken = copy.deepcopy(experiment)
    broken["spec"]["trialTemplate"]["primaryContainer"] = "trainer"  # primaryContainerName misspelt
    broken["spec"]["parameters"][0]["feasibleSpace"]["min"] = 1e-6  # a number where Katib has a string
    messages = [e.message for e in _experiment_validator().iter_errors(broken)]
    assert any("primaryContainer" in m for m in messages) and any("is not of type 'string'" in m for m in messages)


def test_the_trial_katib_renders_is_a_finetunejob_the_api_admits(tmp_path):
    config_map, experiment = _objects(tmp_path)
    template = config_map["data"][experiment["spec"]["trialTemplate"]["configMap"]["templatePath"]]
    params = {p["name"] for p in experiment["spec"]["trialTemplate"]["trialParameters"]}
    assert set(PLACEHOLDER.findall(template)) == params == {p["name"] for p in experiment["spec"]["parameters"]}
    assignment = {"learningRate": "0.0031", "loraRank": "32", "scheduler": "linear"}  # Katib's values are text
    trial = yaml.safe_load(PLACEHOLDER.sub(lambda m: assignment[m.group(1)], template))
    assert "name" not in trial["metadata"] and "namespace" not in trial["metadata"]  # Katib's rule: it names trials
    trial["metadata"].update(name="lr-sweep-abc123", namespace="team-travel")
    resource, errors = admit(trial, "trial")
    assert errors == [], [str(e) for e in errors]
    assert resource.spec.hyperparameters.learning_rate == 0.0031 and resource.spec.adapter.r == 32
    assert resource.spec.hyperparameters.lr_scheduler == "linear" and resource.metadata.labels == {"team": "travel"}


def test_a_parameter_path_the_finetunejob_refuses_is_named(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.replace("path: spec.adapter.r,", "path: spec.adapter.rank,"))
    with pytest.raises(SweepError) as err:
        load_sweep(path)
    text = "\n".join(err.value.errors)
    assert "spec.adapter.rank" in text and "spec.parameters[1] (loraRank)" in text
    path.write_text(SWEEP.replace("min: 4, max: 64", "min: 64, max: 4"))
    with pytest.raises(SweepError, match=r"spec\.parameters\.1\.feasibleSpace|parameters\[1\]"):
        load_sweep(path)
