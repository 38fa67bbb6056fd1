"""The examples against spec.hyperparameters.maxSeqLength, counted with the model's own tokenizer before TRL sees them.

TRL cuts every example to max_length, then drops those with no loss token left: SFT when the loss is on the
completion or the assistant turns and the prompt alone fills max_length, DPO when the prompt does. When that is
every example, training crashes later with a `num_samples=0` traceback. kubetune.data estimates this from
characters when the data is validated; here the real tokenizer decides, once the model is loaded: refuse (as a
data error) when nothing would be left to train on, warn with counts when examples are cut.

Counts follow TRL's tokenization: a string prompt and its completion through the tokenizer (special tokens and
the closing EOS included); conversations through the chat template.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetune_trainer.inputs import DataValidationError

log = logging.getLogger(__name__)

FIELD = "spec.hyperparameters.maxSeqLength"
SHOWN = 5  # example numbers named in a message


@dataclass
class Lengths:
    """Which examples (1-based, in the order trained) are longer than max_length, and which keep no answer."""

    examples: int = 0
    cut: list[int] = field(default_factory=list)
    no_answer: list[int] = field(default_factory=list)
    shortest_prompt: int | None = None  # tokens, among the examples whose loss is on the answer only


def _ids(tokenizer: Any, text: str, special: bool) -> int:
    return len(tokenizer(text, add_special_tokens=special)["input_ids"])


def _chat(tokenizer: Any, messages: Sequence[dict[str, Any]], generation_prompt: bool = False) -> int:
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)
    return _ids(tokenizer, text, special=False)


def _prompt_and_total(tokenizer: Any, prompt: Any, answers: Sequence[Any]) -> tuple[int, int]:
    """(prompt tokens, prompt + longest answer tokens) of a prompt-completion or preference record."""
    if isinstance(prompt, str):
        eos = tokenizer.eos_token or ""
        return _ids(tokenizer, prompt, True), max(_ids(tokenizer, prompt + a + eos, True) for a in answers)
    return _chat(tokenizer, prompt, True), max(_chat(tokenizer, [*prompt, *a]) for a in answers)


def _chat_prompt_end(messages: Sequence[dict[str, Any]], first: bool) -> int | None:
    turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    return (turns[0] if first else turns[-1]) if turns else None


def measure(
    records: Sequence[dict[str, Any]], tokenizer: Any, max_length: int, *, loss_on_answer: bool, first_answer: bool
) -> Lengths:
    """Count each record: chat (`messages`), prompt-completion, preference (`chosen`/`rejected`) or `text`.

    `loss_on_answer`: the loss is computed on the answer only, so a prompt that fills max_length leaves nothing;
    `first_answer`: for chats, the answer starts at the first assistant turn (assistant-only loss) rather than
    the last (a chat split at its last answer).
    """
    out = Lengths(examples=len(records))
    for n, r in enumerate(records, 1):
        prompt: int | None = None
        if "messages" in r:
            total = _chat(tokenizer, r["messages"])
            end = _chat_prompt_end(r["messages"], first_answer)
            if end is not None:
                prompt = _chat(tokenizer, r["messages"][:end], True)
        elif "prompt" in r and ("completion" in r or "chosen" in r):
            answers = [r["completion"]] if "completion" in r else [r["chosen"], r["rejected"]]
            prompt, total = _prompt_and_total(tokenizer, r["prompt"], answers)
        elif "text" in r:
            total = _ids(tokenizer, r["text"], True)
        else:
            continue
        if total > max_length:
            out.cut.append(n)
        if loss_on_answer and prompt is not None:
            out.shortest_prompt = prompt if out.shortest_prompt is None else min(out.shortest_prompt, prompt)
            if prompt >= max_length:
                out.no_answer.append(n)
    return out


def _numbers(found: list[int]) -> str:
    return ", ".join(map(str, found[:SHOWN])) + (", ..." if len(found) > SHOWN else "")


def judge(lengths: Lengths, max_length: int, which: str) -> str | None:
    """The refusal when no example of `which` data keeps an answer token (None otherwise); warns about cuts."""
    if lengths.examples and len(lengths.no_answer) == lengths.examples:
        return (
            f"{FIELD} ({max_length:,} tokens) is too short for the {which} data: the prompt of every one of its "
            f"{lengths.examples} examples is at least that long (the shortest: {lengths.shortest_prompt:,} tokens, "
            "counted with the model's tokenizer), so no answer token is left to train on and every example would "
            f"be dropped; raise {FIELD} above {lengths.shortest_prompt:,} or shorten the prompts"
        )
    if lengths.cut:
        dropped = (
            f"; {len(lengths.no_answer)} of them keep no answer token and are left out (examples "
            f"{_numbers(lengths.no_answer)})"
            if lengths.no_answer
            else ""
        )
        log.warning(
            "%d of %d %s examples are longer than %s (%s tokens, counted with the model's tokenizer; examples %s): "
            "training cuts them%s",
            len(lengths.cut),
            lengths.examples,
            which,
            FIELD,
            f"{max_length:,}",
            _numbers(lengths.cut),
            dropped,
        )
    return None


def check(
    trains_as: str,
    train: Sequence[dict[str, Any]],
    evals: Sequence[dict[str, Any]] | None,
    tokenizer: Any,
    max_length: int,
    *,
    loss_on_answer: bool,
    first_answer: bool = False,
) -> None:
    """Raise DataValidationError (exit EXIT_DATA) when TRL would drop every training or validation example of an
    SFT or DPO run; warn with counts when examples are cut. Other methods (RFT, local-teacher distillation) do
    not drop examples by length and are not checked."""
    if trains_as not in ("sft", "pretraining", "dpo"):
        return
    problems = []
    for which, records in (("training", train), ("validation", evals or [])):
        lengths = measure(records, tokenizer, max_length, loss_on_answer=loss_on_answer, first_answer=first_answer)
        problem = judge(lengths, max_length, which)
        if problem:
            problems.append(problem)
    if problems:
        raise DataValidationError("\n".join(problems), {"errors": problems})


def check_run(trains_as: str, spec: Any, train: Any, evals: Any, fmt: str, tokenizer: Any) -> None:
    """`check` with the loss the run's method computes (kubetune_trainer.methods.sft_loss for SFT)."""
    if trains_as == "dpo":
        loss_on_answer, first_answer = True, False
    elif trains_as in ("sft", "pretraining"):
        from kubetune_trainer.methods import sft_loss

        loss = sft_loss(fmt, spec, tokenizer)
        loss_on_answer = loss.assistant_only_loss or loss.completion_only_loss is not False
        first_answer = loss.assistant_only_loss
    else:
        return
    check(
        trains_as,
        train,
        evals,
        tokenizer,
        spec.hyperparameters.max_seq_length,
        loss_on_answer=loss_on_answer,
        first_answer=first_answer,
    )
