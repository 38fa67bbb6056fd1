"""A model trained on string prompt-completion data is evaluated and served on the raw prompt, as trained.

TRL's SFTTrainer joins a string prompt and its completion with no separator and tokenizes them with the
tokenizer's own special tokens; wrapping the prompt in the chat template at evaluation or serving time
shows the model text it never saw. Each checkpoint records the format (kubetune.json `prompt_format`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from trainer_helpers import make_config, write_jsonl

from kubetune.api.evaluation import EvaluationSpec
from kubetune.api.runconfig import EvalRunConfig, EvalTarget, Identity
from kubetune_trainer.train import EXIT_OK, run

pytestmark = pytest.mark.slow

POSITIVE = ["great", "lovely", "superb", "friendly", "clean", "tasty", "perfect", "quiet"]
NEGATIVE = ["awful", "rude", "dirty", "cold", "slow", "bland", "noisy", "broken"]
NOUNS = ["food", "room", "staff", "service", "view", "breakfast", "bed", "pool"]
HELD_OUT = 24


def _rows() -> list[dict]:
    rows = [
        {"prompt": f"the {noun} was {adj} ->", "completion": " positive" if adj in POSITIVE else " negative"}
        for noun in NOUNS
        for adj in POSITIVE + NEGATIVE
    ]
    random.Random(0).shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def raw_run(tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    """(run dir, final checkpoint) of a full fine-tune on string prompt-completion rows."""
    d = tmp_path_factory.mktemp("raw-text")
    rows = _rows()
    write_jsonl(d / "test.jsonl", rows[:HELD_OUT])
    train = write_jsonl(d / "train.jsonl", rows[HELD_OUT:])
    cfg = make_config(
        d,
        tiny_model,
        train,
        adapter={"type": "none"},
        hyperparameters={"maxSteps": 40, "batchSize": 16, "learningRate": 5e-3, "packing": False},
        checkpoints={"every": 20, "keep": 2},
    )
    assert run(cfg) == EXIT_OK
    return d, Path(cfg.output_dir) / "final"


def _as_trained(model_dir: Path, prompts: list[str], max_new_tokens: int = 8) -> list[str]:
    """Greedy answers to the raw prompts, tokenized as TRL tokenized them in training (special tokens added)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    answers = []
    for prompt in prompts:
        enc = tok(prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        answers.append(tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    return answers


def _exact_match(answers: list[str], references: list[str]) -> float:
    return sum(" ".join(a.split()) == " ".join(r.split()) for a, r in zip(answers, references, strict=True)) / len(
        answers
    )


def _evaluate(d: Path, targets: list[EvalTarget], baseline: EvalTarget | None, out: str) -> dict:
    from kubetune_trainer.evaluate.runner import run as evaluate

    spec = EvaluationSpec.model_validate(
        {
            "model": {"fineTuneJob": {"name": "router"}},
            "baseline": {"none": True} if baseline is None else {},
            "dataset": {"uri": str(d / "test.jsonl")},
            "metrics": ["exact_match"],
            "generation": {"maxNewTokens": 8, "batchSize": 8},
        }
    )
    config = EvalRunConfig(
        job=Identity(name="router-eval"),
        spec=spec,
        targets=targets,
        baseline=baseline,
        output_dir=str(d / out),
    )
    return evaluate(config)


def test_checkpoints_record_the_raw_text_format_of_string_prompt_completion_data(raw_run):
    d, final = raw_run
    for name in ("checkpoint-20", "checkpoint-40", "final"):
        record = json.loads((final.parent / name / "kubetune.json").read_text())["prompt_format"]
        assert record["type"] == "raw-text"
        assert record["separator"] == "" and record["add_special_tokens"] is True
        assert record["completion_end"] == "<|im_end|>"  # TRL appends EOS to each completion
    entries = [json.loads(line) for line in (d / "progress.jsonl").read_text().splitlines()]
    last = [e for e in entries if e["event"] == "checkpoints"][-1]["checkpoints"]
    assert {c["promptFormat"]["type"] for c in last} == {"raw-text"}  # status.checkpoints[].promptFormat


def test_evaluation_scores_the_model_as_it_was_trained(raw_run, tiny_model):
    """The Evaluation's exact match is the exact match of greedy answers to the raw prompts, for the checkpoint
    and for the base model it is compared with (which has no record and is prompted like the checkpoint)."""
    d, final = raw_run
    rows = [json.loads(line) for line in (d / "test.jsonl").read_text().splitlines()]
    prompts, references = [r["prompt"] for r in rows], [r["completion"] for r in rows]
    results = _evaluate(
        d, [EvalTarget(name="final", uri=str(final))], EvalTarget(name="baseline", uri=str(tiny_model)), "eval"
    )

    trained = _as_trained(final, prompts)
    assert _exact_match(trained, references) >= 0.9  # the task is learnt: the comparison below means something
    assert results["results"][0]["metrics"]["exact_match"] == pytest.approx(_exact_match(trained, references))
    assert results["results"][0]["promptFormat"] == "raw-text"
    shown = results["examples"]
    assert [e["predictions"]["final"] for e in shown] == trained[: len(shown)]
    assert [e["prompt"] for e in shown] == prompts[: len(shown)]  # as given: no "user: " the model never saw

    base = _as_trained(tiny_model, prompts)
    assert results["baseline"]["promptFormat"] == "raw-text"
    assert results["baseline"]["metrics"]["exact_match"] == pytest.approx(_exact_match(base, references))
    assert [e["baseline"] for e in shown] == base[: len(shown)]


def test_a_models_own_record_wins_over_the_format_of_the_checkpoints_it_is_compared_with(raw_run, tmp_path):
    """The baseline of a continual job (fromJob) is the earlier job's checkpoint: prompted by its own record."""
    import shutil

    d, final = raw_run
    chat_model = shutil.copytree(final, tmp_path / "chat-trained")
    meta = json.loads((chat_model / "kubetune.json").read_text())
    (chat_model / "kubetune.json").write_text(json.dumps({**meta, "prompt_format": {"type": "chat-template"}}))
    results = _evaluate(
        d, [EvalTarget(name="continued", uri=str(chat_model))], EvalTarget(name="baseline", uri=str(final)), "eval2"
    )
    assert results["baseline"]["promptFormat"] == "raw-text"
    assert results["results"][0]["promptFormat"] == "chat-template"
    rows = [json.loads(line) for line in (d / "test.jsonl").read_text().splitlines()]
    trained = _as_trained(final, [r["prompt"] for r in rows])
    assert [e["baseline"] for e in results["examples"]] == trained[: len(results["examples"])]


def test_server_prompts_a_raw_text_model_as_trained_and_says_what_chat_does(raw_run):
    from fastapi.testclient import TestClient

    from kubetune.api.runconfig import ServeRunConfig
    from kubetune_trainer.serve.app import create_app

    d, final = raw_run
    prompt = json.loads((d / "test.jsonl").read_text().splitlines()[0])["prompt"]
    expected = _as_trained(final, [prompt])[0]
    config = ServeRunConfig(
        job=Identity(name="router"), model_uri=str(final), served_model_name="router", output_dir=str(d / "serve")
    )
    with TestClient(create_app(config)) as client:
        for _ in range(600):  # the model loads in a background thread
            if client.get("/healthz").status_code == 200:
                break
            import time

            time.sleep(0.1)
        body = {"model": "router", "max_tokens": 8, "temperature": 0}
        text = client.post("/v1/completions", json={**body, "prompt": prompt}).json()["choices"][0]["text"]
        assert text.strip() == expected
        chat = client.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": prompt}]})
        assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"].strip() == expected
        refused = client.post(
            "/v1/chat/completions",
            json={**body, "messages": [{"role": "system", "content": "Route."}, {"role": "user", "content": prompt}]},
        )
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "raw_text_model" and "/v1/completions" in error["message"]
        assert client.get("/v1/models").json()["data"][0]["prompt_format"] == "raw-text"
