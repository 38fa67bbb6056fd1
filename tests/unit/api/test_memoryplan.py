"""The memory plan: the formulas on hand-computed numbers, the 32B example refused without sharding and
fitting with it, config.json read from local folders, and the numbers in `kubetune plan` and `validate`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from kubetune import cli
from kubetune.api import FineTuneJob, FineTuneJobSpec, StorageMap
from kubetune.api.memoryplan import GiB, ModelConfigError, ModelShape, plan
from kubetune.api.modelconfig import ModelConfigUnavailable, read_model_config

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "tests" / "fixtures" / "model-configs"
QWEN_32B = CONFIGS / "qwen2.5-32b" / "config.json"
QWEN_05B = CONFIGS / "qwen2.5-0.5b" / "config.json"
SMALL = {  # h 64, 2 layers, MLP 256, vocab 100, 4 heads (no GQA), tied embeddings
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 256,
    "vocab_size": 100,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "tie_word_embeddings": True,
}


def spec(**over) -> FineTuneJobSpec:
    doc = {"baseModel": {"uri": "hf://a/b"}, "dataset": {"train": {"uri": "t.jsonl"}}, **over}
    return FineTuneJobSpec.model_validate(doc)


def sharding(strategy: str) -> dict:
    """resources.sharding as the API spells it (the field is written beside the plan: absent means none)."""
    from kubetune.api.finetunejob import FineTuneJobSpec as S

    res_model = S.model_fields["resources"].annotation
    return {"sharding": {"strategy": strategy}} if "sharding" in getattr(res_model, "model_fields", {}) else {}


def test_parameters_of_qwen2_5_0_5b_are_the_published_count():
    assert ModelShape.from_config(json.loads(QWEN_05B.read_text())).parameters == 494_032_768


def test_full_fine_tuning_on_cpu_on_hand_computed_numbers():
    s = spec(
        adapter={"type": "none"},
        hyperparameters={"batchSize": 2, "maxSeqLength": 16, "gradientCheckpointing": "off"},
        resources={"gpus": 0, "memory": "1Gi"},
    )
    p = plan(s, SMALL)
    # embeddings 100*64 + 2 layers * (4*64*64 attention + 3*64*256 MLP + 2*64 norms) + final norm 64
    params = 6400 + 2 * (16384 + 49152 + 128) + 64
    assert p.parameters == params == 137_792
    assert (p.parameter_bytes, p.gradient_bytes, p.optimizer_bytes) == (4 * params, 4 * params, 8 * params)
    tokens = 2 * 16
    assert p.activations_no_checkpointing == 2 * (8 * 64 + 3 * 64 + 4 * 256) * tokens * 4  # fp32 on CPU
    assert p.activations_checkpointing == 2 * tokens * 64 * 4  # the layer inputs
    assert p.recompute_bytes == (8 * 64 + 3 * 64 + 4 * 256) * tokens * 4  # one layer, recomputed in backward
    assert p.backward_temporaries_bytes == (2 * 256 + 2 * 64) * tokens * 4
    assert p.logits_bytes == tokens * 100 * 12  # logits, log-softmax and its gradient, fp32
    resident = 12 * params
    # vocabulary 100: one layer's backward temporaries (2560 B/token) outweigh the logits (1200 B/token)
    transient = p.activations_no_checkpointing + p.backward_temporaries_bytes
    assert p.peak_bytes == resident + max(transient, 4 * params)


def test_with_checkpointing_the_logits_and_the_recomputed_layer_are_not_counted_together():
    s = spec(
        adapter={"type": "none"},
        hyperparameters={"batchSize": 8, "maxSeqLength": 64, "gradientCheckpointing": "on"},
        resources={"gpus": 0, "memory": "1Gi"},
    )
    tokens = 8 * 64
    big_vocab = {**SMALL, "vocab_size": 10_000}  # logits 512 x 10,000 x 12 B outweigh one layer's backward
    p = plan(s, big_vocab)
    inputs = 2 * tokens * 64 * 4
    assert p.peak_bytes == 12 * p.parameters + inputs + tokens * 10_000 * 12
    p = plan(s, SMALL)  # vocabulary 100: the recomputed layer and its temporaries are the larger
    layer = (8 * 64 + 3 * 64 + 4 * 256 + 2 * 256 + 2 * 64) * tokens * 4
    assert p.peak_bytes == 12 * p.parameters + inputs + layer
    assert p.fits and p.device_memory == GiB


def test_lora_keeps_the_base_frozen_and_trains_16_bytes_per_adapter_parameter():
    s = spec(adapter={"type": "lora", "r": 8, "targetModules": "q_proj,v_proj"}, resources={"gpus": 1})
    p = plan(s, SMALL, gpu_memory_gib=24)
    lora = 2 * (8 * (64 + 64) + 8 * (64 + 64))  # 2 layers x (q: r(in+out) + v: r(in+out))
    assert p.trainable == lora
    assert p.adapter_bytes == 16 * lora
    assert p.parameter_bytes == 2 * p.parameters  # bf16 base on a GPU
    assert p.gradient_bytes == p.optimizer_bytes == 0


def test_the_32b_full_fine_tune_on_4x8_gpus_is_refused_unsharded_with_a_layout_that_fits():
    doc = yaml.safe_load((REPO / "examples" / "multinode.yaml").read_text())
    doc["spec"]["resources"].update(sharding("none"))
    cfg = json.loads(QWEN_32B.read_text())
    unsharded = plan(FineTuneJob.model_validate(doc).spec, cfg, gpu_memory_gib=80)
    assert not unsharded.fits
    assert unsharded.peak_bytes > 16 * 32e9  # every GPU holds the whole model's 16 bytes per parameter
    assert unsharded.recommended_sharding == "fsdp"
    assert "resources.sharding: fsdp" in unsharded.suggestion


@pytest.mark.skipif(not sharding("fsdp"), reason="resources.sharding is not in the API yet")
def test_the_32b_example_fits_80gb_gpus_as_written_sharded_over_32_gpus():
    doc = yaml.safe_load((REPO / "examples" / "multinode.yaml").read_text())
    job = FineTuneJob.model_validate(doc)
    p = plan(job.spec, json.loads(QWEN_32B.read_text()), gpu_memory_gib=80)
    assert p.layout.sharding == "fsdp" and p.layout.checkpointing and p.world_size == 32
    assert p.fits, p.render()
    # ZeRO-3: the 16 bytes of mixed-precision Adam per parameter, divided over the 32 GPUs
    assert (p.gradient_bytes, p.optimizer_bytes) == (4 * p.parameters // 32, 8 * p.parameters // 32)


def test_gpu_hours_follow_6_flops_per_parameter_per_token_at_the_stated_throughput():
    s = spec(
        adapter={"type": "none"},
        hyperparameters={"epochs": 2, "maxSeqLength": 16, "gradientCheckpointing": "off"},
        resources={"gpus": 1},
    )
    p = plan(s, SMALL, train_tokens=1_000_000, mfu=0.5)
    per_token = 6 * p.parameters + 12 * 2 * 64 * 16
    assert p.tokens == 2_000_000
    assert p.gpu_hours == pytest.approx(per_token * 2_000_000 / (989e12 * 0.5) / 3600)
    assert "50% MFU of 989 TFLOP/s" in p.throughput_assumption


def test_config_json_is_read_from_a_folder_and_through_an_adapter_to_its_base(tmp_path):
    model = tmp_path / "models" / "base"
    model.mkdir(parents=True)
    shutil.copy(QWEN_05B, model / "config.json")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(model)}))
    storage = StorageMap(base_dir=str(tmp_path))
    assert read_model_config("models/base", storage)["hidden_size"] == 896
    assert read_model_config(f"file://{adapter}", storage)["hidden_size"] == 896
    with pytest.raises(ModelConfigUnavailable, match=r"no config\.json"):
        read_model_config(str(tmp_path), storage)
    with pytest.raises(ModelConfigUnavailable, match="s3://"):
        read_model_config("s3://bucket/model", storage)


def test_kubetune_plan_prints_per_gpu_memory_and_gpu_hours(capsys, tmp_path):
    rc = cli.main(["plan", str(REPO / "examples" / "multinode.yaml"), "--model-config", str(QWEN_32B)])
    out = capsys.readouterr().out
    assert "FineTuneJob travel-assistant-32b" in out and "peak per GPU" in out, out
    assert rc == (0 if sharding("fsdp") else 1), out


def _big_job(tmp_path: Path, resources: str) -> Path:
    model = tmp_path / "qwen-32b"
    model.mkdir()
    shutil.copy(QWEN_32B, model / "config.json")
    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    (tmp_path / "train.jsonl").write_text((json.dumps(chat) + "\n") * 12)
    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: kubetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: big}\nspec:\n"
        "  baseModel: {uri: qwen-32b}\n  dataset: {train: {uri: train.jsonl}}\n  adapter: {type: none}\n"
        f"  resources: {resources}\n"
    )
    return path


def test_validate_refuses_a_gpu_run_that_cannot_fit_with_the_numbers_and_a_layout(tmp_path, capsys):
    extra = ", sharding: {strategy: none}" if sharding("none") else ""
    path = _big_job(tmp_path, "{gpus: 8" + extra + "}")
    rc = cli.main(["validate", str(path)])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "spec.resources: the run does not fit" in out and "GiB per GPU" in out, out
    assert "a layout that fits: resources.sharding: fsdp" in out, out


def test_validate_notes_the_plan_of_a_run_that_fits(tmp_path, capsys):
    path = _big_job(tmp_path, "{gpus: 1, nodeSelector: {nvidia.com/gpu.product: NVIDIA-H200}}")
    qlora = "adapter: {type: qlora}\n  hyperparameters: {gradientCheckpointing: 'on'}"
    path.write_text(path.read_text().replace("adapter: {type: none}", qlora))
    rc = cli.main(["validate", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "memory plan:" in out and "of 141.0 GiB (fits; qlora" in out, out


@pytest.mark.parametrize(
    ("namespace", "claims"), [(None, Path("pvc")), ("team-a", Path("namespaces") / "team-a" / "pvc")]
)
def test_kubetune_plan_reads_a_pvc_model_from_the_runs_folder_as_kubetune_run_does(tmp_path, capsys, namespace, claims):
    runs = tmp_path / "runs"
    model = runs / claims / "models" / "qwen"
    model.mkdir(parents=True)
    shutil.copy(QWEN_05B, model / "config.json")
    meta = f"{{name: small, namespace: {namespace}}}" if namespace else "{name: small}"
    path = tmp_path / "job.yaml"
    path.write_text(
        f"apiVersion: kubetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {meta}\nspec:\n"
        "  baseModel: {uri: pvc://models/qwen}\n  dataset: {train: {uri: pvc://data/train.jsonl}}\n"
        "  resources: {gpus: 1}\n"
    )
    rc = cli.main(["plan", str(path), "--runs-dir", str(runs)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "model pvc://models/qwen: 0.49B parameters" in out and "peak per GPU" in out, out
    # another namespace's claim of the same name is not this one
    path.write_text(path.read_text().replace(f"metadata: {meta}", "metadata: {name: small, namespace: elsewhere}"))
    assert cli.main(["plan", str(path), "--runs-dir", str(runs)]) == 1
    assert "no plan: " in capsys.readouterr().out


QWEN3_32B = {  # Qwen/Qwen3-32B config.json: head_dim 128 x 64 heads = 8192, not hidden_size 5120
    "model_type": "qwen3",
    "hidden_size": 5120,
    "head_dim": 128,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "intermediate_size": 25600,
    "num_hidden_layers": 64,
    "vocab_size": 151936,
    "tie_word_embeddings": False,
    "attention_bias": False,
}


def test_head_dim_from_config_json_sizes_the_attention_projections_qwen3_32b():
    shape = ModelShape.from_config(QWEN3_32B)
    # transformers' Qwen3ForCausalLM(Qwen3Config(**QWEN3_32B)) counts 32,762,123,264 parameters
    assert shape.parameters == 32_762_123_264
    assert shape.q_dim == 8192 and shape.kv_dim == 1024
    assert shape.lora_params(8, "q_proj,o_proj") == 64 * 2 * 8 * (5120 + 8192)
    # activations: q, k before/after rotary and o_proj's input are q-wide (8192), not hidden-wide
    assert shape.activation_elements_per_token() == 4 * 5120 + 4 * 8192 + 3 * 1024 + 4 * 25600


@pytest.mark.parametrize("key", ["hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads"])
@pytest.mark.parametrize("value", [0, -64])
def test_a_config_json_with_a_nonsense_size_is_refused_naming_the_key(key, value):
    with pytest.raises(ModelConfigError, match=f"{key} is {value}"):
        plan(spec(resources={"gpus": 0, "memory": "1Gi"}), {**SMALL, key: value})


def _job_with_config(tmp_path: Path, config_text: str) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(config_text)
    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: kubetune.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: odd}\nspec:\n"
        "  baseModel: {uri: model}\n  dataset: {train: {uri: train.jsonl}}\n  resources: {gpus: 1}\n"
    )
    return path


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[1, 2]", "a JSON list, not an object"),
        (json.dumps({**SMALL, "num_hidden_layers": -2}), "num_hidden_layers is -2"),
        ("{not json", "not valid JSON"),
    ],
)
def test_plan_and_validate_refuse_a_config_json_that_is_not_a_model(tmp_path, capsys, text, why):
    path = _job_with_config(tmp_path, text)
    rc = cli.main(["plan", str(path)])
    out = capsys.readouterr().out
    assert rc == 1 and why in out and "model/config.json" in out and "fits" not in out, out
    rc = cli.main(["validate", str(path)])
    out = capsys.readouterr().out
    assert "memory plan:" in out and why in out and "model/config.json" in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-5", "lots"])
def test_kubetune_plan_refuses_a_gpu_memory_that_is_not_a_positive_number(capsys, value):
    with pytest.raises(SystemExit) as stop:
        cli.main(["plan", str(REPO / "examples" / "multinode.yaml"), "--gpu-memory", value])
    assert stop.value.code == 2
    assert "--gpu-memory" in capsys.readouterr().err


def test_cpu_offload_checks_the_host_memory_of_each_node():
    def offloaded(memory: str):
        s = spec(
            adapter={"type": "none"},
            hyperparameters={"batchSize": 1, "maxSeqLength": 1024, "gradientCheckpointing": "on"},
            resources={"gpus": 8, "memory": memory, "sharding": {"strategy": "fsdp", "cpuOffload": True}},
        )
        return plan(s, json.loads(QWEN_32B.read_text()), gpu_memory_gib=80)

    small = offloaded("64Gi")
    # 16 bytes per parameter (fp32 weights, gradients, Adam) sharded over 8 GPUs, all 8 shards on the one node
    assert small.layout.offload and small.host_offload_bytes == 8 * (16 * small.parameters // 8)
    assert small.host_memory == 64 * GiB
    assert small.peak_bytes < 0.95 * small.device_memory  # the GPUs alone would fit
    assert not small.fits
    text = small.render()
    assert "CPU offload: host memory per node" in text and "of 64.0 GiB" in text and "does NOT fit" in text, text
    assert any("raise resources.memory" in n for n in small.notes), small.notes
    assert "CPU offload" in small.summary()
    big = offloaded("1Ti")
    assert big.fits, big.render()


def test_the_plan_says_which_fraction_of_the_gpu_it_counts_usable():
    p = plan(spec(resources={"gpus": 1}), SMALL, gpu_memory_gib=80)
    assert "95% usable, 76.0 GiB" in p.render()
