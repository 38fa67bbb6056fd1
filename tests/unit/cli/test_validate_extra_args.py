"""`kubetune validate` refuses a ModelDeployment's `spec.extraArgs` that set a flag the operator sets, naming the item
(the same admission the operator and `kubetune run` use), instead of the cluster finding out at reconcile."""

from __future__ import annotations

import pytest
import yaml

from kubetune import cli


def validate(tmp_path, capsys, **spec) -> tuple[int, str]:
    doc = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "travel"},
        "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, "resources": {"gpus": 1}, **spec},
    }
    path = tmp_path / "md.yaml"
    path.write_text(yaml.safe_dump(doc))
    rc = cli.main(["validate", str(path)])
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize(
    ("spec", "arg", "message"),
    [
        ({}, "--port=9000", "spec.extraArgs[1]: --port is set by the operator; remove it"),
        ({}, "--api-key", "spec.extraArgs[1]: --api-key is set by the operator; set spec.auth.apiKeySecretRef instead"),
        ({}, "--served_model_name=x", "spec.extraArgs[1]: --served-model-name is set by the operator; set spec.servedModelName instead"),
        ({"maxModelLen": 4096}, "--max-model-len=8192", "spec.extraArgs[1]: --max-model-len is set by the operator; set spec.maxModelLen instead"),
        ({"resources": {"gpus": 2}}, "--tensor-parallel-size=4", "spec.extraArgs[1]: --tensor-parallel-size is set by the operator; set spec.resources.gpus instead"),
        ({"adapters": [{"name": "fr", "uri": "hf://org/fr-lora"}]}, "--max-loras=2", "spec.extraArgs[1]: --max-loras is set by the operator; set spec.adapters instead"),
    ],
    ids=["port", "api-key", "underscores", "max-model-len", "tensor-parallel", "adapters"],
)  # fmt: skip
def test_a_flag_the_operator_sets_is_refused_with_its_item(tmp_path, capsys, spec, arg, message):
    rc, out = validate(tmp_path, capsys, extraArgs=["--enforce-eager", arg], **spec)
    assert rc == 1, out
    assert f"{tmp_path / 'md.yaml'}: {message}" in out, out
    assert "spec.extraArgs[0]" not in out


def test_extra_args_on_the_built_in_server_are_refused(tmp_path, capsys):
    rc, out = validate(tmp_path, capsys, extraArgs=["--quantization=awq"], resources={"gpus": 0})
    assert rc == 1 and "spec.extraArgs: extra arguments go to vLLM" in out, out


def test_flags_the_operator_leaves_alone_pass(tmp_path, capsys):
    # --max-model-len without spec.maxModelLen, --tensor-parallel-size on one GPU: the operator sets neither.
    extra = ["--tool-call-parser=hermes", "--enable-auto-tool-choice", "--max-model-len=8192", "--quantization", "awq"]
    rc, out = validate(tmp_path, capsys, extraArgs=extra)
    assert rc == 0, out
