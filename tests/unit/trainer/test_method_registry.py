"""The registry of training methods: each spec.method has one, and the spec's fields reach TRL's config
classes (SFTConfig, DPOConfig, GKDConfig, GRPOConfig) as those fields. Builds configs only; trains nothing."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from trainer_helpers import make_config

from kubetune.api.finetunejob import FineTuneJobSpec
from kubetune_trainer import methods
from kubetune_trainer.modeling import LoadedModel, Precision, TrainerConfigError

NO_MODEL = LoadedModel(model=None, tokenizer=None, base_model="", started_from="")  # configs need no model
ENDPOINT = {"teacher": {"endpoint": {"url": "http://teacher:8000/v1", "model": "big"}}}


def _settings(tmp_path: Path, has_eval: bool = False, liger: bool = False, **spec) -> methods.RunSettings:
    cfg = make_config(tmp_path, "hf://a/b", tmp_path / "train.jsonl", **spec)
    sched = methods.schedule(cfg.spec, has_eval)
    return methods.RunSettings(cfg, Precision(), sched, gradient_checkpointing=False, has_eval=has_eval, liger=liger)


def _config(settings: methods.RunSettings, fmt: str = "prompt-completion"):
    method = methods.method_for(settings.spec)
    return method, method.build_config(settings, methods.MethodData([], None, fmt), NO_MODEL)


def test_every_method_of_the_api_has_one_in_the_registry():
    declared = typing.get_args(FineTuneJobSpec.model_fields["method"].annotation)
    assert declared and all(m in methods.METHODS for m in declared)


def test_shared_fields_come_from_the_spec(tmp_path):
    settings = _settings(tmp_path, has_eval=True, hyperparameters={"batchSize": 2, "learningRate": 1e-4, "seed": 7})
    method, config = _config(settings)
    assert type(config).__name__ == "SFTConfig" and method.trains_as == "sft"
    assert (config.per_device_train_batch_size, config.learning_rate, config.seed, config.data_seed) == (2, 1e-4, 7, 7)
    assert config.output_dir == settings.cfg.output_dir and config.max_steps == 8
    assert (config.save_strategy, config.save_steps, config.eval_strategy, config.eval_steps) == (
        "steps",
        4,
        "steps",
        4,
    )
    assert config.save_total_limit is None  # retention is kubetune's: best K by selectBy plus the latest
    assert config.completion_only_loss is True and config.max_length == 128


def test_checkpoints_by_epoch_leave_saving_and_evaluating_to_the_checkpoint_callback(tmp_path):
    settings = _settings(tmp_path, has_eval=True, checkpoints={"unit": "epochs", "every": 1})
    _, config = _config(settings)
    assert (config.save_strategy, config.eval_strategy, config.eval_steps) == ("no", "no", None)
    assert settings.schedule.every_epochs == 1 and settings.schedule.eval_every_save


def test_dpo_fields(tmp_path):
    dpo = {"beta": 0.3, "lossType": "ipo", "labelSmoothing": 0.0}
    _, config = _config(_settings(tmp_path, method="dpo", dpo=dpo))
    assert type(config).__name__ == "DPOConfig"
    assert (config.beta, config.loss_type, config.label_smoothing) == (0.3, ["ipo"], 0.0)


def test_distillation_from_a_local_teacher_is_gkd_with_the_spec_temperature(tmp_path):
    distillation = {"teacher": {"uri": "hf://a/teacher"}, "temperature": 2.0, "beta": 0.2, "lmbda": 0.0}
    method, config = _config(_settings(tmp_path, method="distillation", distillation=distillation))
    assert type(config).__name__ == "GKDConfig" and method.trains_as == "distillation"
    assert (config.temperature, config.beta, config.lmbda) == (2.0, 0.2, 0.0)
    assert issubclass(methods.gkd_trainer_class(), methods._gkd_module().GKDTrainer)


def test_distillation_from_an_endpoint_trains_as_sft_on_the_teachers_answers(tmp_path):
    method, config = _config(_settings(tmp_path, method="distillation", distillation=ENDPOINT))
    assert isinstance(method, methods.EndpointDistillation) and method.trains_as == "sft"
    assert type(config).__name__ == "SFTConfig"


def test_rft_is_grpo_without_eval_loss(tmp_path):
    rft = {"graders": [{"type": "exact_match", "weight": 2.0}], "numGenerations": 4, "maxCompletionLength": 16}
    settings = _settings(tmp_path, method="rft", rft=rft)
    method, config = _config(settings)
    assert not method.evaluates  # validation data gives no eval loss: the rewards are the measure
    assert type(config).__name__ == "GRPOConfig" and config.eval_strategy == "no"
    assert (config.num_generations, config.max_completion_length, config.reward_weights) == (4, 16, [2.0])


def test_rft_refuses_groups_that_do_not_fill_a_batch(tmp_path):
    rft = {"graders": [{"type": "exact_match"}], "numGenerations": 3}
    with pytest.raises(TrainerConfigError, match=r"spec.rft.numGenerations \(3\) must divide"):
        _config(_settings(tmp_path, method="rft", rft=rft))


def test_rft_groups_count_every_process(tmp_path):
    """TRL fills a generation batch of batchSize x processes x gradientAccumulationSteps completions: one
    completion per device on 2 processes holds a group of 2 (a single process could not), 4 does not fit."""
    rft = {"graders": [{"type": "exact_match"}], "numGenerations": 2}
    spec = _settings(tmp_path, method="rft", rft=rft, hyperparameters={"batchSize": 1}).spec
    methods.check_rft_groups(spec, processes=2)
    with pytest.raises(TrainerConfigError, match=r"numGenerations \(2\) must divide .*\(1 x 1 x 1 = 1\)"):
        methods.check_rft_groups(spec, processes=1)
    spec4 = _settings(tmp_path, method="rft", rft={**rft, "numGenerations": 4}, hyperparameters={"batchSize": 1}).spec
    with pytest.raises(TrainerConfigError, match=r"\(1 x 2 x 1 = 2\)"):
        methods.check_rft_groups(spec4, processes=2)


def test_liger_kernels_go_through_transformers_use_liger_kernel(tmp_path):
    assert _config(_settings(tmp_path))[1].use_liger_kernel is False
    assert _config(_settings(tmp_path, liger=True))[1].use_liger_kernel is True
