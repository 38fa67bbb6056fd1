"""Answers from a model: local transformers generation (batched, left-padded) or an OpenAI-compatible endpoint.

Latency is the wall time a request waited for its answer: for a batch, every request in it waited
for the whole batch; for an endpoint, one request at a time.

A prompt is a list of messages or, for a model trained on raw text, the raw string
(kubetune_trainer.prompting); either is tokenized exactly as training tokenized prompts of the model's
format.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubetune.api.evaluation import GenerationSpec
from kubetune_trainer import prompting
from kubetune_trainer.prompting import Prompt
from kubetune_trainer.serve.loading import InferenceModel

log = logging.getLogger(__name__)


@dataclass
class Generations:
    texts: list[str] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)  # the prompt as sent (for the report)


class Generator(Protocol):
    name: str
    prompt_format: str | None  # as recorded with the model (None: no record)

    def generate(self, prompts: Sequence[Prompt], gen: GenerationSpec) -> Generations: ...

    def reference_nll(
        self, prompts: Sequence[Prompt], references: Sequence[str], batch_size: int
    ) -> tuple[list[float], list[int]] | None: ...

    def close(self) -> None: ...


class LocalGenerator:
    """Greedy (temperature 0) or sampled generation with a loaded transformers model."""

    def __init__(self, loaded: InferenceModel, prompt_format: str | None = None) -> None:
        """`prompt_format`: how to prompt a model that has no record of its own (a baseline prompted like the
        checkpoints it is compared with); a model's own record wins."""
        self.loaded = loaded
        self.name = loaded.name
        self.prompt_format = loaded.prompt_format or prompt_format

    def _encode(self, prompts: Sequence[Prompt]) -> tuple[Any, list[str]]:
        """Left-padded batch of the prompts' ids (each tokenized as in training) and their texts."""
        import torch

        tok = self.loaded.tokenizer
        rows = [prompting.encode(tok, p, self.prompt_format) for p in prompts]
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.loaded.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.loaded.device)
        texts = [prompting.render(tok, p, self.prompt_format) for p in prompts]
        return {"input_ids": ids, "attention_mask": mask}, texts

    def generate(self, prompts: Sequence[Prompt], gen: GenerationSpec) -> Generations:
        import torch

        tok, model = self.loaded.tokenizer, self.loaded.model
        out = Generations()
        kwargs: dict[str, Any] = {"max_new_tokens": gen.max_new_tokens, "pad_token_id": tok.pad_token_id}
        if gen.temperature > 0:
            kwargs.update(do_sample=True, temperature=gen.temperature, top_p=gen.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        for start in range(0, len(prompts), gen.batch_size):
            enc, texts = self._encode(prompts[start : start + gen.batch_size])
            started = time.perf_counter()
            with torch.inference_mode():
                ids = model.generate(**enc, **kwargs)
            elapsed = time.perf_counter() - started
            new = ids[:, enc["input_ids"].shape[1] :]
            out.texts += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
            out.prompt_tokens += [int(n) for n in enc["attention_mask"].sum(dim=1)]
            out.latencies += [elapsed] * len(texts)
            out.prompts += texts
        return out

    def reference_nll(
        self, prompts: Sequence[Prompt], references: Sequence[str], batch_size: int
    ) -> tuple[list[float], list[int]]:
        """Per example: summed negative log-likelihood of the reference tokens given the prompt, and their count."""
        import torch

        tok, model = self.loaded.tokenizer, self.loaded.model
        nlls: list[float] = []
        counts: list[int] = []
        for start in range(0, len(prompts), batch_size):
            rows = []
            for p, ref in zip(prompts[start : start + batch_size], references[start : start + batch_size], strict=True):
                p_ids = prompting.encode(tok, p, self.prompt_format)
                r_ids = tok(ref, add_special_tokens=False)["input_ids"]
                rows.append((p_ids, r_ids))
            width = max(len(p) + len(r) for p, r in rows)
            pad = tok.pad_token_id if tok.pad_token_id is not None else 0
            input_ids, attention, labels = [], [], []
            for p_ids, r_ids in rows:  # left padding, labels only on the reference
                n_pad = width - len(p_ids) - len(r_ids)
                input_ids.append([pad] * n_pad + p_ids + r_ids)
                attention.append([0] * n_pad + [1] * (len(p_ids) + len(r_ids)))
                labels.append([-100] * (n_pad + len(p_ids)) + r_ids)
            dev = self.loaded.device
            ids_t = torch.tensor(input_ids, device=dev)
            att_t = torch.tensor(attention, device=dev)
            lab_t = torch.tensor(labels, device=dev)
            with torch.inference_mode():
                logits = model(input_ids=ids_t, attention_mask=att_t).logits.float()
            shift_logits, shift_labels = logits[:, :-1], lab_t[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), reduction="none"
            ).view(shift_labels.shape)
            mask = shift_labels != -100
            nlls += [float(x) for x in (loss * mask).sum(dim=1)]
            counts += [int(x) for x in mask.sum(dim=1)]
        return nlls, counts

    def close(self) -> None:
        import gc

        import torch

        del self.loaded.model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class EndpointGenerator:
    """A live OpenAI-compatible server, one request at a time: messages to `/chat/completions` (a server
    of a raw-text model prompts one user message raw), a raw-text prompt to `/completions`."""

    prompt_format: str | None = None  # unknown: the server prompts its model as it was trained

    def __init__(
        self, base_url: str, model: str | None, *, name: str, api_key: str | None = None, timeout: float = 300
    ):
        import httpx

        self.name = name
        self.model = model or name
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def generate(self, prompts: Sequence[Prompt], gen: GenerationSpec) -> Generations:
        out = Generations()
        for prompt in prompts:
            body: dict[str, Any] = {
                "model": self.model,
                "max_tokens": gen.max_new_tokens,
                "temperature": gen.temperature,
                "top_p": gen.top_p,
            }
            raw = isinstance(prompt, str)
            body["prompt" if raw else "messages"] = prompt
            started = time.perf_counter()
            resp = self._client.post("/completions" if raw else "/chat/completions", json=body)
            elapsed = time.perf_counter() - started
            if resp.status_code >= 400:
                raise RuntimeError(f"endpoint {self._client.base_url} answered {resp.status_code}: {resp.text[:500]}")
            data = resp.json()
            choice = data["choices"][0]
            out.texts.append(((choice.get("text") if raw else choice["message"].get("content")) or "").strip())
            usage = data.get("usage") or {}
            if "prompt_tokens" in usage:
                out.prompt_tokens.append(int(usage["prompt_tokens"]))
            out.latencies.append(elapsed)
            out.prompts.append(prompt if raw else "\n".join(f"{m['role']}: {m['content']}" for m in prompt))
        if len(out.prompt_tokens) != len(out.texts):  # the server did not report usage on every answer
            out.prompt_tokens = []
        return out

    def reference_nll(self, prompts: Sequence[Prompt], references: Sequence[str], batch_size: int) -> None:
        return None  # an endpoint gives no reference log-likelihoods

    def close(self) -> None:
        self._client.close()
