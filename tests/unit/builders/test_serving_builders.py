"""Serving manifests: vLLM (merged or multi-LoRA) or the image's server, probes, read-only model, HPA, status."""

from __future__ import annotations

import json

import pytest

from kubetune.api import FineTuneJob, ModelDeployment
from kubetune.builders import autoscaling, serving
from kubetune.builders.promotion import Decision
from kubetune.errors import SpecError

CKPT = "pvc://travel-data/output/checkpoint-400"


def job(adapter="lora", r=16, token=False) -> FineTuneJob:
    base = {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct@main"}
    if token:
        base["tokenSecretRef"] = {"name": "hf", "key": "token"}
    return FineTuneJob.model_validate(
        {
            "metadata": {"name": "travel", "namespace": "ns", "uid": "j-1"},
            "spec": {"baseModel": base, "dataset": {"train": {"uri": "t.jsonl"}}, "adapter": {"type": adapter, "r": r}},
        }
    )


def md(**spec) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": "travel-assistant", "namespace": "ns", "uid": "m-1", "generation": 2},
            "spec": {"model": {"fineTuneJob": {"name": "travel"}}, **spec},
        }
    )


PROMOTE = Decision("promote", "checkpoint-400", CKPT, "Promoted", "exact_match 0.88 passed")


def build(deployment, j=None, settings=None, decision=PROMOTE):
    j = j or job()
    plan = serving.plan(deployment, decision, j, settings)
    return plan, serving.build_deployment(deployment, plan, j, settings=settings)


def container(dep, name="server"):
    return next(x for x in dep["spec"]["template"]["spec"]["containers"] if x["name"] == name)


def test_gpu_lora_checkpoint_is_served_merged_by_vllm_with_a_merge_once_init_container():
    plan, dep = build(md(resources={"gpus": 1}))
    assert plan.runtime == "vllm" and plan.merged_uri == CKPT + "-merged"
    server = container(dep)
    assert server["image"].startswith("vllm/vllm-openai")
    args = server["args"]
    assert args[args.index("--model") + 1] == "/mnt/pvc/travel-data/output/checkpoint-400-merged"
    assert "--enable-lora" not in args
    assert args[args.index("--served-model-name") + 1] == "travel-assistant"
    assert args[args.index("--port") + 1] == "8000"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # The server reads the model read-only; only the merge init container may write, and it writes beside it.
    assert all(m["readOnly"] for m in server["volumeMounts"] if m["mountPath"].startswith("/mnt/pvc"))
    (init,) = dep["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["kubetune-trainer", "merge"]
    assert init["command"][-1] == "/mnt/pvc/travel-data/output/checkpoint-400-merged"
    assert [m.get("readOnly") for m in init["volumeMounts"] if m["mountPath"] == "/mnt/pvc/travel-data"] == [False]
    assert "nvidia.com/gpu" not in init["resources"]["limits"]


def test_adapter_served_with_enable_lora_when_merging_is_off():
    settings = serving.ServingSettings(merge_adapters=False)
    _, dep = build(md(runtime="vllm", resources={"gpus": 2}, maxModelLen=4096), job(r=24), settings)
    args = container(dep)["args"]
    assert args[args.index("--model") + 1] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert args[args.index("--revision") + 1] == "main"
    assert "--enable-lora" in args
    assert args[args.index("--lora-modules") + 1] == "travel-assistant=/mnt/pvc/travel-data/output/checkpoint-400"
    assert args[args.index("--max-lora-rank") + 1] == "32"  # rounded up to a rank vLLM accepts
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--max-model-len") + 1] == "4096"
    assert "initContainers" not in dep["spec"]["template"]["spec"]
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    assert all(v["persistentVolumeClaim"]["readOnly"] for v in volumes if "persistentVolumeClaim" in v)


def test_full_fine_tune_is_served_directly():
    plan, dep = build(md(resources={"gpus": 1}), job(adapter="none"))
    assert plan.merged_uri is None and plan.base_model_uri is None
    args = container(dep)["args"]
    assert args[args.index("--model") + 1] == "/mnt/pvc/travel-data/output/checkpoint-400"


def _with_checkpoint_status(j: FineTuneJob, prompt_format: dict | None) -> FineTuneJob:
    entry = {"name": "checkpoint-400", "step": 400, "uri": CKPT}
    if prompt_format:
        entry["promptFormat"] = prompt_format
    return FineTuneJob.model_validate({**j.to_k8s(), "status": {"checkpoints": [entry]}})


def _render(template: str, messages: list[dict]) -> str:
    """The template as vLLM renders it: a one-line --chat-template is unicode-unescaped, then run by Jinja with
    Hugging Face's raise_exception."""
    import codecs

    import jinja2

    def raise_exception(message):
        raise jinja2.TemplateError(message)

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(codecs.decode(template, "unicode_escape")).render(messages=messages)


@pytest.mark.parametrize("merge", [True, False])
def test_a_raw_text_checkpoint_is_served_by_vllm_with_the_raw_prompt_on_the_chat_endpoint(merge):
    settings = serving.ServingSettings(merge_adapters=merge)
    raw = _with_checkpoint_status(job(), {"type": "raw-text", "prefix": "<s>"})
    plan, dep = build(md(resources={"gpus": 1}), raw, settings)
    assert plan.prompt_format is not None and plan.prompt_format.type == "raw-text"
    args = container(dep)["args"]
    template = args[args.index("--chat-template") + 1]
    assert args[args.index("--chat-template-content-format") + 1] == "string"
    assert "\n" not in template  # one line: vLLM takes it as the template itself, not a file path
    # One user message is the prompt as trained: the tokenizer's BOS (vLLM adds none on chat), then the raw text.
    assert _render(template, [{"role": "user", "content": "the room was cold ->"}]) == "<s>the room was cold ->"
    import jinja2

    with pytest.raises(jinja2.TemplateError, match=r"raw text prompts.*/v1/completions"):
        _render(template, [{"role": "system", "content": "Route."}, {"role": "user", "content": "hi"}])


@pytest.mark.parametrize("prompt_format", [None, {"type": "chat-template"}])
def test_a_chat_checkpoint_keeps_its_tokenizers_chat_template_on_vllm(prompt_format):
    _, dep = build(md(resources={"gpus": 1}), _with_checkpoint_status(job(), prompt_format))
    assert "--chat-template" not in container(dep)["args"]


def test_cpu_serving_uses_the_images_own_server_with_its_run_config():
    deployment = md(env=[{"name": "LOG_LEVEL", "value": "debug"}])
    plan, dep = build(deployment, job(token=True))
    assert plan.runtime == "transformers" and plan.merged_uri is None
    server = container(dep)
    assert server["command"] == ["kubetune-trainer", "serve", "--config", "/etc/kubetune/run-config.json"]
    assert server["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "nvidia.com/gpu" not in server["resources"]["limits"]
    env = {e["name"]: e for e in server["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert env["LOG_LEVEL"]["value"] == "debug"
    config = json.loads(serving.build_config_map(deployment, plan)["data"]["run-config.json"])
    assert config["modelUri"] == CKPT and config["baseModelUri"] == "hf://Qwen/Qwen2.5-0.5B-Instruct@main"
    assert config["servedModelName"] == "travel-assistant"


def test_probes_give_the_model_time_to_load():
    _, dep = build(md(resources={"gpus": 1}))
    server = container(dep)
    assert server["startupProbe"]["httpGet"]["path"] == "/health"
    assert server["startupProbe"]["periodSeconds"] * server["startupProbe"]["failureThreshold"] >= 1800
    assert server["livenessProbe"]["httpGet"]["path"] == "/health"


def test_pods_are_restricted_and_the_checkpoint_annotation_rolls_them():
    deployment = md(resources={"gpus": 1})
    _, dep = build(deployment)
    pod = dep["spec"]["template"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container(dep)["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["metadata"]["annotations"]["kubetune.dev/checkpoint"] == "checkpoint-400"
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "m-1"
    other = Decision("rollforward", "checkpoint-600", CKPT.replace("400", "600"), "RolledForward", "")
    _, dep2 = build(deployment, decision=other)
    assert dep2["spec"]["template"]["metadata"]["annotations"] != pod["metadata"]["annotations"]
    assert dep2["spec"]["selector"] == dep["spec"]["selector"]  # the selector is immutable
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_service_and_endpoint():
    deployment = md()
    svc = serving.build_service(deployment)
    assert svc["metadata"]["name"] == "travel-assistant"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    _, dep = build(deployment)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert serving.endpoint(deployment) == "http://travel-assistant.ns.svc:8000/v1"


def test_hpa_scales_on_in_flight_requests_and_owns_the_replica_count():
    deployment = md(autoscaling={"minReplicas": 1, "maxReplicas": 4, "targetConcurrency": 8})
    hpa = autoscaling.build_hpa(deployment)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "travel-assistant"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == "kubetune_serve_requests_in_flight"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "8"}
    _, dep = build(deployment)
    assert "replicas" not in dep["spec"]
    assert autoscaling.build_hpa(md()) is None
    assert build(md(replicas=3))[1]["spec"]["replicas"] == 3


def test_vllm_cannot_read_s3_and_says_what_to_do():
    deployment = ModelDeployment.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "u"},
            "spec": {"model": {"uri": "s3://b/m"}, "runtime": "vllm"},
        }
    )
    decision = Decision("promote", "m", "s3://b/m", "Promoted", "")
    plan = serving.plan(deployment, decision, None)
    with pytest.raises(SpecError, match=r"runtime vllm reads models from pvc:// or hf://.*spec.runtime: transformers"):
        serving.build_deployment(deployment, plan, None)
