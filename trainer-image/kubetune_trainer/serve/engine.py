"""Text generation for the server: batches of requests on one loaded model (CPU or one GPU).

`run_batch` generates for several requests in one `generate` call: prompts left-padded to one width,
each row with its own max_tokens and stop strings. A stopping criterion follows every row token by
token: it decodes the row's text, ends the row at its end-of-turn token, its first stop string (never
part of the answer), its max_tokens, or when its request was cancelled (a client that went away), and
reports the row's progress through the request's `on_text`/`on_done` callbacks at once, so a short
answer is not held back by a longer one in the same batch. Generation ends when every row has.

Rows of one batch share the sampling settings (temperature, top_p) and the LoRA adapter: the
scheduler (batching.py) only groups requests that agree on them. `lock` is held while the model
generates or its adapters change (adapters.py).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetune_trainer import prompting
from kubetune_trainer.serve.loading import InferenceModel


class PromptTooLong(ValueError):
    """The prompt plus max_tokens exceeds the model's context."""


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    ignore_eos: bool = False  # vLLM's extension: generate max_tokens whatever the model says (benchmarks, tests)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop string), "length" (max_tokens), "cancelled"


@dataclass
class GenerationRequest:
    """One request's part of a batch; the callbacks run on the generating thread."""

    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None = None  # a LoRA adapter's name; None: the base model
    on_text: Callable[[str], None] = lambda _: None  # text that is final (cannot turn into a stop string)
    on_done: Callable[[Completion], None] = lambda _: None
    cancelled: threading.Event = field(default_factory=threading.Event)


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class _Row:
    """The progress of one request in a batch."""

    def __init__(self, req: GenerationRequest, tokenizer: Any, eos_ids: set[int]) -> None:
        self.req, self.tokenizer, self.eos_ids = req, tokenizer, eos_ids
        self.ids: list[int] = []
        self.sent = 0
        self.done = False
        self.holdback = max((len(s) for s in req.params.stop if s), default=1) - 1

    def finish(self, text: str, reason: str) -> None:
        self.done = True
        if reason != "cancelled" and len(text) > self.sent:
            self.req.on_text(text[self.sent :])
        self.req.on_done(Completion(text, len(self.req.prompt_ids), len(self.ids), reason))

    def add(self, token: int) -> None:
        if self.done:
            return
        if self.req.cancelled.is_set():
            self.finish("", "cancelled")
            return
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut, stopped = _cut_at_stop(text, self.req.params.stop)
        if stopped or (token in self.eos_ids and not self.req.params.ignore_eos):
            self.finish(cut, "stop")
        elif len(self.ids) >= self.req.params.max_tokens:
            self.finish(cut, "length")
        else:
            safe = len(text) - self.holdback
            while safe > self.sent and text[safe - 1] == "\ufffd":  # half a character so far
                safe -= 1
            if safe > self.sent:
                self.req.on_text(text[self.sent : safe])
                self.sent = safe


class _FollowRows:
    """A transformers StoppingCriteria over the batch: feeds each row its newest token, says which rows are done."""

    def __init__(self, rows: list[_Row]) -> None:
        self.rows = rows

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        last = input_ids[:, -1].tolist()
        for row, token in zip(self.rows, last, strict=True):
            row.add(int(token))
        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)


class Engine:
    def __init__(self, loaded: InferenceModel, *, max_model_len: int | None = None) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.model = loaded.model
        self.lock = threading.Lock()
        self.adapters: dict[str, str] = {}  # loaded LoRA adapters: name -> the URI they came from
        self.adapter_ids: dict[str, str] = {}  # name -> PEFT's internal adapter name (adapters.py)
        self.peft_model: Any = None  # the PeftModel once an adapter is loaded (then also `model`)
        self.broken: str | None = None  # why the model can no longer serve (a failed rollback): /healthz 503
        config_len = getattr(self.model.config, "max_position_embeddings", None)
        self.max_model_len = max_model_len or config_len
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {int(t) for t in (eos if isinstance(eos, list) else [eos]) if t is not None}
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(int(self.tokenizer.eos_token_id))

    # --- prompts ---
    def chat_prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The chat template's prompt; for a raw-text model the text of its one user message, tokenized as in
        training (raises kubetune.data.promptformat.RawPromptError for any other conversation)."""
        return prompting.encode(self.tokenizer, messages, self.loaded.prompt_format)

    def text_prompt_ids(self, prompt: str) -> list[int]:
        """A raw prompt with the tokenizer's special tokens: how raw-text models were trained (TRL)."""
        return prompting.encode(self.tokenizer, prompt, self.loaded.prompt_format)

    def surely_longer_than(self, texts: Sequence[str], limit: int) -> int | None:
        """A lower bound on the tokens of `texts` when it already exceeds `limit`, else None.

        Tokenises only a prefix of each long text (16 characters per allowed token), so a prompt of megabytes
        is refused in milliseconds rather than tokenised in full. A text's tokens are at least its prefix's
        tokens less one (the token the cut may split), so a bound over the limit is never a false refusal.
        """
        total = 0
        for text in texts:
            prefix = text[: 16 * (limit + 2)]
            count = len(self.tokenizer(prefix, add_special_tokens=False)["input_ids"])
            total += count - 1 if len(prefix) < len(text) else count
        return total if total > limit else None

    def check_length(self, prompt_ids: list[int], params: SamplingParams) -> None:
        if self.max_model_len and len(prompt_ids) + params.max_tokens > self.max_model_len:
            raise PromptTooLong(
                f"the prompt has {len(prompt_ids)} tokens and max_tokens is {params.max_tokens}: together more "
                f"than the model's context of {self.max_model_len} tokens; shorten the prompt or lower max_tokens"
            )

    # --- generation ---
    def run_batch(self, requests: Sequence[GenerationRequest]) -> None:
        """Generate for `requests` (same adapter and sampling settings) in one `generate` call."""
        import torch
        from transformers import StoppingCriteriaList

        from kubetune_trainer.serve.adapters import active_adapter

        pad = self.tokenizer.pad_token_id
        width = max(len(r.prompt_ids) for r in requests)
        ids = [[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in requests]
        mask = [[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in requests]
        rows = [_Row(r, self.tokenizer, self.eos_ids) for r in requests]
        first = requests[0].params
        device = self.loaded.device
        kwargs: dict[str, Any] = {
            "input_ids": torch.tensor(ids, device=device),
            "attention_mask": torch.tensor(mask, device=device),
            "max_new_tokens": max(r.params.max_tokens for r in requests),
            "pad_token_id": pad,
            "stopping_criteria": StoppingCriteriaList([_FollowRows(rows)]),
        }
        if first.ignore_eos:
            config = copy.deepcopy(self.model.generation_config)
            config.eos_token_id = None
            kwargs["generation_config"] = config
        if first.temperature > 0:
            kwargs.update(do_sample=True, temperature=first.temperature, top_p=first.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self.lock, active_adapter(self, requests[0].adapter), torch.inference_mode():
            if first.seed is not None:
                torch.manual_seed(first.seed)
            self.model.generate(**kwargs)
        for row in rows:  # rows the model's own limits ended (its maximum length)
            if not row.done:
                text = _cut_at_stop(self.tokenizer.decode(row.ids, skip_special_tokens=True), first.stop)[0]
                row.finish(text, "cancelled" if row.req.cancelled.is_set() else "length")

    def generate(self, prompt_ids: list[int], params: SamplingParams, adapter: str | None = None) -> Completion:
        """One request on its own, blocking until its answer is complete."""
        self.check_length(prompt_ids, params)
        done: list[Completion] = []
        self.run_batch([GenerationRequest(prompt_ids, params, adapter, on_done=done.append)])
        return done[0]
