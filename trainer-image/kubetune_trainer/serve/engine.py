"""Text generation for the server: one request at a time on one loaded model (CPU or one GPU).

`generate` blocks until the answer is complete; `stream` yields text pieces as tokens arrive
(transformers' TextIteratorStreamer, generation in a worker thread). Both hold `lock`, so requests
queue rather than compete for the device. Stop strings end generation as soon as they appear, and
are never part of the answer (a streamed answer holds back text that may be the start of one).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
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


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop string) or "length" (max_tokens)


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class _StopOnStrings:
    """A transformers StoppingCriteria: stop once a stop string appears in the generated text (or on request)."""

    def __init__(self, tokenizer: Any, prompt_len: int, stop: Sequence[str]) -> None:
        self.tokenizer, self.prompt_len, self.stop = tokenizer, prompt_len, [s for s in stop if s]
        self.cancelled = threading.Event()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = self.cancelled.is_set()
        if not done and self.stop:
            text = self.tokenizer.decode(input_ids[0, self.prompt_len :], skip_special_tokens=True)
            done = any(s in text for s in self.stop)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class Engine:
    def __init__(self, loaded: InferenceModel, *, max_model_len: int | None = None) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.model = loaded.model
        self.lock = threading.Lock()
        config_len = getattr(self.model.config, "max_position_embeddings", None)
        self.max_model_len = max_model_len or config_len

    # --- prompts ---
    def chat_prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The chat template's prompt; for a raw-text model the text of its one user message, tokenized as in
        training (raises kubetune.data.promptformat.RawPromptError for any other conversation)."""
        return prompting.encode(self.tokenizer, messages, self.loaded.prompt_format)

    def text_prompt_ids(self, prompt: str) -> list[int]:
        """A raw prompt with the tokenizer's special tokens: how raw-text models were trained (TRL)."""
        return prompting.encode(self.tokenizer, prompt, self.loaded.prompt_format)

    def check_length(self, prompt_ids: list[int], params: SamplingParams) -> None:
        if self.max_model_len and len(prompt_ids) + params.max_tokens > self.max_model_len:
            raise PromptTooLong(
                f"the prompt has {len(prompt_ids)} tokens and max_tokens is {params.max_tokens}: together more "
                f"than the model's context of {self.max_model_len} tokens; shorten the prompt or lower max_tokens"
            )

    # --- generation ---
    def _kwargs(self, prompt_ids: list[int], params: SamplingParams, criteria: _StopOnStrings) -> dict[str, Any]:
        import torch
        from transformers import StoppingCriteriaList

        device = self.loaded.device
        ids = torch.tensor([prompt_ids], device=device)
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": params.max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "stopping_criteria": StoppingCriteriaList([criteria]),
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _finish(self, prompt_ids: list[int], new_ids: list[int], params: SamplingParams) -> Completion:
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        text, stopped = _cut_at_stop(text, params.stop)
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        ended = stopped or (bool(new_ids) and new_ids[-1] in eos_ids) or len(new_ids) < params.max_tokens
        return Completion(text, len(prompt_ids), len(new_ids), "stop" if ended else "length")

    def _run(self, prompt_ids: list[int], params: SamplingParams, criteria: _StopOnStrings, **extra: Any) -> list[int]:
        import torch

        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = self.model.generate(**self._kwargs(prompt_ids, params, criteria), **extra)
        return [int(t) for t in out[0, len(prompt_ids) :]]

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> Completion:
        self.check_length(prompt_ids, params)
        criteria = _StopOnStrings(self.tokenizer, len(prompt_ids), params.stop)
        with self.lock:
            new_ids = self._run(prompt_ids, params, criteria)
        return self._finish(prompt_ids, new_ids, params)

    def stream(self, prompt_ids: list[int], params: SamplingParams) -> Iterator[str | Completion]:
        """Text pieces as they are generated, then the Completion (its text is the whole answer).

        Closing the iterator early (a client that went away) stops the generation.
        """
        from transformers import TextIteratorStreamer

        self.check_length(prompt_ids, params)
        criteria = _StopOnStrings(self.tokenizer, len(prompt_ids), params.stop)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                with self.lock:
                    result["ids"] = self._run(prompt_ids, params, criteria, streamer=streamer)
            except BaseException as e:  # surfaced in the consumer below
                result["error"] = e
                streamer.end()

        thread = threading.Thread(target=work, name="kubetune-generate", daemon=True)
        thread.start()
        holdback = max((len(s) for s in params.stop if s), default=1) - 1
        text, sent, exhausted = "", 0, False
        try:
            for piece in streamer:
                text += piece
                cut, stopped = _cut_at_stop(text, params.stop)
                if stopped:
                    criteria.cancelled.set()
                    if len(cut) > sent:
                        yield cut[sent:]
                    sent = len(cut)
                    break
                safe = len(text) - holdback
                if safe > sent:
                    yield text[sent:safe]
                    sent = safe
            else:
                exhausted = True
                cut, _ = _cut_at_stop(text, params.stop)
                if len(cut) > sent:
                    yield cut[sent:]
        finally:
            criteria.cancelled.set()  # also when the consumer stops early: generation ends at the next token
            if not exhausted:
                for _ in streamer:  # until generation has ended (the streamer's end marker)
                    pass
            thread.join()
        if "error" in result:
            raise result["error"]
        yield self._finish(prompt_ids, result["ids"], params)
