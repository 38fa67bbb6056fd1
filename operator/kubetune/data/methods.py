"""Which dataset formats each training method accepts: one table for `kubetune validate`, `kubetune run`
and the trainer.

| method                          | formats                                   | answers in the data      |
|---------------------------------|-------------------------------------------|--------------------------|
| sft                             | chat, prompt-completion, text             | required                 |
| pretraining                     | text                                      | (the text is the target) |
| dpo                             | preference                                | chosen and rejected      |
| rft                             | reinforcement, prompt-completion, chat    | references for graders   |
| distillation, local teacher     | chat, prompt-completion                   | required (GKD trains on them and on the teacher's distributions) |
| distillation, endpoint teacher  | chat, prompt-completion, reinforcement    | optional: the teacher writes them |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.data.formats import CHAT, PREFERENCE, PROMPT_COMPLETION, REINFORCEMENT, TEXT

METHOD_FORMATS: dict[str, tuple[str, ...]] = {
    "sft": (CHAT, PROMPT_COMPLETION, TEXT),
    "pretraining": (TEXT,),
    "dpo": (PREFERENCE,),
    "rft": (REINFORCEMENT, PROMPT_COMPLETION, CHAT),
    "distillation": (CHAT, PROMPT_COMPLETION),
}
ENDPOINT_DISTILLATION_FORMATS: tuple[str, ...] = (CHAT, PROMPT_COMPLETION, REINFORCEMENT)
# Methods whose trainers always see conversations: a string prompt becomes one user message (chat template).
CHAT_ONLY_METHODS = frozenset({"distillation", "rft"})

FORMAT_HINT: dict[str, str] = {
    CHAT: '{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}',
    PROMPT_COMPLETION: '{"prompt": ..., "completion": ...}',
    TEXT: '{"text": ...}',
    PREFERENCE: '{"prompt": ..., "chosen": ..., "rejected": ...}',
    REINFORCEMENT: '{"prompt": ..., "<reference field>": ...}',
}


@dataclass(frozen=True)
class DataNeeds:
    """What a method's training data must be."""

    method: str
    formats: tuple[str, ...]
    prompts_only: bool = False  # lines may stop before the answer (someone else writes it)

    def wanted(self) -> str:
        """'chat ({...}) or text ({...})': the accepted formats with an example line each."""
        out = " or ".join(f"{f} ({FORMAT_HINT[f]})" for f in self.formats)
        return out + (", answers optional: the teacher writes them" if self.prompts_only else "")

    def chat_note(self, fmt: str | None) -> str | None:
        """A one-line note when this method trains string prompts through the chat template; None otherwise."""
        if self.method not in CHAT_ONLY_METHODS or fmt not in (PROMPT_COMPLETION, REINFORCEMENT):
            return None
        return (
            f"spec.method {self.method} trains on conversations: string prompts are sent as one user message "
            "through the model's chat template (evaluation and serving prompt the same way)"
        )

    def mismatch(self, fmt: str | None) -> str | None:
        """Why data of format `fmt` cannot train this method; None when it can (or the format is unknown)."""
        if fmt is None or fmt in ("auto", "unknown") or fmt in self.formats:
            return None
        return (
            f"spec.method {self.method} trains on {self.wanted()} examples, but this data is {fmt}: "
            "convert the data or choose another method"
        )


def data_needs(method: str, endpoint_teacher: bool = False) -> DataNeeds:
    """The formats `method` trains on; `endpoint_teacher`: distillation from an API that answers the prompts."""
    if method == "distillation" and endpoint_teacher:
        return DataNeeds(method, ENDPOINT_DISTILLATION_FORMATS, prompts_only=True)
    return DataNeeds(method, METHOD_FORMATS[method])


def needs_of(spec: Any) -> DataNeeds:
    """data_needs of a FineTuneJobSpec (duck-typed: kubetune.data does not import the API models)."""
    teacher = spec.distillation.teacher if spec.distillation is not None else None
    return data_needs(spec.method, endpoint_teacher=teacher is not None and teacher.endpoint is not None)
