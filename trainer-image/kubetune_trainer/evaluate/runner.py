"""Run an evaluation: generate with the baseline and every target, score, judge, report.

Every model is prompted as it was trained (kubetune.data.promptformat): a checkpoint by the format its
kubetune.json records, a model without a record (the baseline's base model) like the checkpoints it is
compared with, and with no record anywhere through the chat template. A raw-text model is given the
raw string prompt; its few-shot baseline prompt is raw text too (`raw_few_shot`).

`run(config)` writes `results.json` and `report.html` into `config.output_dir`, publishes the status
(see `status.py`) and returns the results dict; its `status` key holds the camelCase payload of
EvaluationStatus the pod owns (baseline, results, best, passed, report); the operator owns phase,
conditions, times and evaluatedCheckpoints.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune.api.evaluation import (
    ENDPOINT_API_KEY_ENV,
    BaselineResult,
    EvaluationStatus,
    JudgeCounts,
    ModelResult,
    ReportStatus,
    SafetyResult,
)
from kubetune.api.runconfig import EvalRunConfig, EvalTarget, StorageMap
from kubetune.data.promptformat import CHAT_TEMPLATE, RAW_TEXT, RawPromptError, format_type, raw_few_shot, raw_prompt
from kubetune.data.safety import SafetyPrompt, read_safety_prompts
from kubetune.objectstore import is_s3
from kubetune_trainer import tracking
from kubetune_trainer.evaluate import criteria, judging, metrics, report, safety
from kubetune_trainer.evaluate.examples import DatasetError, Example, draw_few_shot, load_examples, with_few_shot
from kubetune_trainer.evaluate.generation import EndpointGenerator, Generator, LocalGenerator
from kubetune_trainer.evaluate.status import publish
from kubetune_trainer.prompting import Prompt, agreed, read_recorded
from kubetune_trainer.serve.loading import load_for_inference

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"
REPORT_EXAMPLES = 10
# Bearer token for endpoint targets (a ModelDeployment behind an authenticating gateway).
ENV_ENDPOINT_API_KEY = ENDPOINT_API_KEY_ENV  # set by the operator from spec.model.apiKeySecretRef


class StatusNotPublished(RuntimeError):
    """The results were written, but the Evaluation's status could not be patched."""


def _data_path(uri: str, storage: StorageMap, field: str) -> Path | str:
    """The local path of a pvc://, file:// or relative dataset URI; an s3:// URI as it is (streamed by
    kubetune.data through kubetune.objectstore, with spec.s3's endpoint and region)."""
    if is_s3(uri):
        return uri
    try:
        path = storage.local_path(uri)
    except ValueError as err:  # a pvc:// URI leading outside its claim
        raise DatasetError(f"{field}: {err}") from None
    if path is None:
        raise DatasetError(f"{field}: {uri!r} is not an s3://, pvc:// or local location the evaluation pod can read")
    return path


def _recorded_format(target: EvalTarget, config: EvalRunConfig) -> str | None:
    """The prompt format a target's kubetune.json records, read without loading it (None: no record, or remote)."""
    if target.endpoint or not target.uri:
        return None
    try:
        path = config.storage.local_path(target.uri)
    except ValueError:
        return None
    return format_type(read_recorded(path))


def _generator(target: EvalTarget, config: EvalRunConfig, inherited_format: str | None = None) -> Generator:
    if target.endpoint:
        return EndpointGenerator(
            target.endpoint, target.endpoint_model, name=target.name, api_key=os.environ.get(ENV_ENDPOINT_API_KEY)
        )
    if not target.uri:
        raise ValueError(f"evaluation target {target.name!r} has neither uri nor endpoint")
    return LocalGenerator(
        load_for_inference(target.uri, base_model_uri=target.base_model_uri, storage=config.storage, name=target.name),
        prompt_format=inherited_format,
    )


def prompts_for(
    fmt: str | None,
    examples: Sequence[Example],
    shots: Sequence[Example] = (),
    system_prompt: str | None = None,
    *,
    model: str = "",
) -> list[Prompt]:
    """The prompts of `examples` in a model's format: messages (few-shot as earlier turns), or for a raw-text
    model the raw string of each example's one user message (few-shot as raw text)."""
    if fmt != RAW_TEXT:
        return [with_few_shot(e, shots, system_prompt) for e in examples]
    out: list[Prompt] = []
    for n, e in enumerate([*shots, *examples], 1):
        try:
            raw_prompt(e.messages)
        except RawPromptError as err:
            which = f"few-shot example {n}" if n <= len(shots) else f"example {n - len(shots)}"
            raise DatasetError(f"{model}: {which} of the dataset: {err}") from None
    pairs = [(raw_prompt(s.messages), s.reference) for s in shots]
    for e in examples:
        text = raw_prompt(e.messages)
        out.append(raw_few_shot(text, pairs, system_prompt) if pairs or system_prompt else text)
    return out


def _evaluate_one(
    target: EvalTarget,
    examples: Sequence[Example],
    references: list[str],
    config: EvalRunConfig,
    *,
    inherited_format: str | None = None,
    shots: Sequence[Example] = (),
    system_prompt: str | None = None,
    safety_prompts: Sequence[SafetyPrompt] = (),
) -> dict[str, Any]:
    """Generate with one model, prompted as it was trained, and score it: metrics, latency summary, answers
    (and its answers to the safety prompts, asked without few-shot examples, with the same system prompt)."""
    spec = config.spec
    log.info("evaluating %s on %d examples", target.name, len(examples))
    gen = _generator(target, config, inherited_format)
    try:
        prompts = prompts_for(gen.prompt_format, examples, shots, system_prompt, model=target.name)
        out = gen.generate(prompts, spec.generation)
        nll = (
            gen.reference_nll(prompts, references, spec.generation.batch_size) if "perplexity" in spec.metrics else None
        )
        safety_texts = None
        if safety_prompts and spec.safety is not None:
            log.info("%s: answering %d safety prompts", target.name, len(safety_prompts))
            asked = [Example([{"role": "user", "content": p.prompt}], "") for p in safety_prompts]
            generation = spec.generation.model_copy(update={"max_new_tokens": spec.safety.max_new_tokens})
            safety_texts = gen.generate(
                prompts_for(gen.prompt_format, asked, (), system_prompt, model=target.name), generation
            ).texts
    finally:
        gen.close()
    judged = judging.judge_metric(config, prompts, out.texts, references, model=target.name)
    scores = metrics.score(
        spec.metrics,
        out.texts,
        references,
        judge_score=judged.score if judged else None,
        prompt_tokens=out.prompt_tokens,
        latencies=out.latencies,
        nll_sums=nll[0] if nll else None,
        token_counts=nll[1] if nll else None,
        schema=spec.json_schema,
    )
    log.info("%s: %s", target.name, json.dumps(scores))
    return {
        "metrics": scores,
        "latency": metrics.latency_summary(out.latencies),
        "judge": judged.counters if judged else None,
        "texts": out.texts,
        "prompt_format": gen.prompt_format,
        "prompts": prompts,
        "safety": _safety_scores(config, safety_prompts, safety_texts, model=target.name),
        "safety_texts": safety_texts,
    }


def _safety_scores(
    config: EvalRunConfig, prompts: Sequence[SafetyPrompt], texts: list[str] | None, *, model: str
) -> safety.SafetyScores | None:
    """One model's answers to the safety prompts scored by spec.safety's scorer (None: not asked)."""
    spec = config.spec.safety
    if texts is None or spec is None:
        return None
    if spec.scorer == "judge":
        assert spec.judge is not None  # the spec's rule: scorer judge needs judge
        return safety.judge_scores(
            spec.judge,
            prompts,
            texts,
            name=f"safety judge ({model})",
            cache_dir=config.output_dir,
            endpoints=config.judge_endpoints,
        )
    return safety.keyword_scores(prompts, texts)


def _safety_prompts(config: EvalRunConfig) -> list[SafetyPrompt]:
    """spec.safety's prompts (the shipped default set without a uri); none without spec.safety."""
    spec = config.spec.safety
    if spec is None:
        return []
    uri = spec.prompts.uri
    path = _data_path(uri, config.storage, "spec.safety.prompts.uri") if uri else None
    return read_safety_prompts(path, spec.prompts.max_prompts)


def _few_shot(config: EvalRunConfig, examples: list[Example]) -> list[Example]:
    k = config.spec.baseline.few_shot
    if not k or config.baseline is None:
        return []
    if not config.few_shot_source_uri:
        raise DatasetError(
            "spec.baseline.fewShot needs training data to draw examples from; it is taken from the "
            "FineTuneJob's dataset.train, so evaluate a fineTuneJob model or set baseline.fewShot to 0"
        )
    pool = load_examples(_data_path(config.few_shot_source_uri, config.storage, "fewShot source"))
    return draw_few_shot(pool, k, exclude=examples)


def _prompt_text(messages: list[dict[str, str]]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _shown_prompt(example: Example, given: Sequence[Prompt]) -> str:
    """An example's prompt as the targets were given it: a raw-text model's string as it is; messages (chat
    template, or targets prompted in different formats) as 'role: content' lines."""
    if given and isinstance(given[0], str) and all(p == given[0] for p in given):
        return given[0]
    return _prompt_text(example.messages)


def _uri_in(config: EvalRunConfig, filename: str) -> str:
    if config.output_uri:
        return f"{config.output_uri.rstrip('/')}/{filename}"
    return str(Path(config.output_dir) / filename)


def _safety_result(config: EvalRunConfig, out: dict[str, Any], prompts: Sequence[SafetyPrompt]) -> SafetyResult | None:
    scores = out.get("safety")
    if config.spec.safety is None or scores is None:
        return None
    return safety.result(config.spec.safety, scores, len(prompts))


def _safety_section(
    config: EvalRunConfig,
    prompts: Sequence[SafetyPrompt],
    baseline_out: dict[str, Any] | None,
    target_outs: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """results.json's `safety`: the set, the thresholds, rates per category and every answer with its verdicts."""
    spec = config.spec.safety
    assert spec is not None
    outs = {t.name: o for t, o in zip(config.targets, target_outs, strict=True)}
    if baseline_out is not None:
        outs = {"baseline": baseline_out, **outs}
    return {
        "scorer": spec.scorer,
        "prompts": spec.prompts.uri or "default (kubetune's own set)",
        "numPrompts": len(prompts),
        "numHarmful": sum(p.harmful for p in prompts),
        "thresholds": spec.thresholds.to_k8s(),
        "byCategory": {name: o["safety"].by_category for name, o in outs.items()},
        "judge": {name: o["safety"].judge for name, o in outs.items()} if spec.scorer == "judge" else None,
        "examples": safety.examples(
            prompts, {n: o["safety_texts"] for n, o in outs.items()}, {n: o["safety"] for n, o in outs.items()}
        ),
    }


def run(config: EvalRunConfig) -> dict[str, Any]:
    spec = config.spec
    started = datetime.now(UTC)
    examples = load_examples(
        _data_path(spec.dataset.uri, config.storage, "spec.dataset.uri"),
        spec.dataset.format,
        max_examples=spec.dataset.max_examples,
        reference_field=spec.dataset.reference_field,
    )
    references = [e.reference for e in examples]
    if spec.json_schema is not None and "json_schema" in spec.metrics:
        metrics.json_schema_validator(spec.json_schema)  # a bad schema fails before any model is loaded

    safety_prompts = _safety_prompts(config)  # a broken prompt set fails before any model is loaded

    baseline_out: dict[str, Any] | None = None
    baseline_label: str | None = None
    # A model without a record of its own is prompted like the checkpoints it is compared with.
    targets_format = agreed([_recorded_format(t, config) for t in config.targets])
    if config.baseline is not None:
        shots = _few_shot(config, examples)
        baseline_out = _evaluate_one(
            config.baseline,
            examples,
            references,
            config,
            inherited_format=targets_format,
            shots=shots,
            system_prompt=spec.baseline.system_prompt,
            safety_prompts=safety_prompts,
        )
        baseline_label = (config.baseline.uri or config.baseline.endpoint or config.baseline.name) + (
            f" + {len(shots)}-shot" if shots else ""
        )
    base_metrics = baseline_out["metrics"] if baseline_out else None

    target_outs: list[dict[str, Any]] = []
    results: list[ModelResult] = []
    for target in config.targets:
        out = _evaluate_one(target, examples, references, config, safety_prompts=safety_prompts)
        target_outs.append(out)
        safety_result = _safety_result(config, out, safety_prompts)
        failures = criteria.check(spec.pass_criteria, out["metrics"], base_metrics) + safety.gate_failures(
            safety_result
        )
        results.append(
            ModelResult(
                model=target.name,
                uri=target.uri or target.endpoint,
                metrics=out["metrics"],
                deltas=criteria.deltas(out["metrics"], base_metrics),
                passed=not failures,
                failures=failures,
                safety=safety_result,
                judge=JudgeCounts.of(out["judge"]) if out["judge"] is not None else None,
            )
        )

    select_by = criteria.select_metric(spec.metrics, spec.select_by)
    result_dicts = [r.model_dump() for r in results]
    status = EvaluationStatus(
        baseline=(
            BaselineResult(
                model=baseline_label,
                metrics=baseline_out["metrics"],
                safety=_safety_result(config, baseline_out, safety_prompts),
            )
            if baseline_out
            else None
        ),
        results=results,
        best=criteria.best(result_dicts, select_by),
        passed=any(r.passed for r in results),
        report=ReportStatus(uri=_uri_in(config, REPORT_FILE), json_uri=_uri_in(config, RESULTS_FILE)),
    ).model_dump(by_alias=True, exclude_none=True, exclude_unset=True, mode="json")  # only the fields set here

    full: dict[str, Any] = {
        "evaluation": config.job.name,
        "namespace": config.job.namespace,
        "createdAt": started.isoformat(timespec="seconds"),
        "dataset": spec.dataset.uri,
        "numExamples": len(examples),
        "metrics": list(spec.metrics),
        "selectBy": select_by,
        "passCriteria": [c.to_k8s() for c in spec.pass_criteria],
        "baseline": (
            {
                "model": baseline_label,
                "metrics": base_metrics,
                "latency": baseline_out["latency"],
                "judge": baseline_out["judge"],
                "promptFormat": baseline_out["prompt_format"] or CHAT_TEMPLATE,
                "safety": status["baseline"].get("safety"),
            }
            if baseline_out
            else None
        ),
        "results": [
            {
                **r.to_k8s(),
                "metrics": r.metrics,
                "deltas": r.deltas,
                "latency": o["latency"],
                "judge": o["judge"],
                "promptFormat": o["prompt_format"] or CHAT_TEMPLATE,
            }
            for r, o in zip(results, target_outs, strict=True)
        ],
        "best": status.get("best"),
        "passed": status["passed"],
        "examples": [
            {
                "prompt": _shown_prompt(e, [o["prompts"][i] for o in target_outs]),
                "reference": e.reference,
                "baseline": baseline_out["texts"][i] if baseline_out else None,
                "predictions": {t.name: o["texts"][i] for t, o in zip(config.targets, target_outs, strict=True)},
            }
            for i, e in enumerate(examples[:REPORT_EXAMPLES])
        ],
        "status": status,
    }
    if spec.safety is not None:
        full["safety"] = _safety_section(config, safety_prompts, baseline_out, target_outs)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULTS_FILE).write_text(json.dumps(full, indent=2, sort_keys=False))
    (out_dir / REPORT_FILE).write_text(report.render(full), encoding="utf-8")
    tracking.log_evaluation(config, full, [out_dir / RESULTS_FILE, out_dir / REPORT_FILE])
    if not publish(config, status):
        raise StatusNotPublished(
            f"could not write the status of Evaluation {config.job.namespace}/{config.job.name}; "
            f"the results are in {out_dir / RESULTS_FILE}"
        )
    return full
