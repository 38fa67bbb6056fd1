"""`kubetune model init-tiny OUT --from-data FILE...`: a tiny Llama model for tests, demos and offline use.

The tokenizer is a byte-level BPE trained on the text of the given files (JSONL in any kubetune
format, or plain text), with ChatML-style special tokens and a chat template whose assistant turns
carry `{% generation %}` markers (so TRL can train on the answers only). The weights are random
(seeded): the model knows nothing until it is fine-tuned. Saved with `save_pretrained`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

BOS, EOS, PAD, UNK = "<|bos|>", "<|im_end|>", "<|pad|>", "<|unk|>"
IM_START = "<|im_start|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, IM_START]

# ChatML. The assistant's end-of-turn token sits inside the generation block so the model learns to stop.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SIZES = {
    # name: (hidden, layers, heads, intermediate)
    "nano": (64, 2, 4, 256),
    "tiny": (128, 2, 4, 512),
    "small": (256, 4, 8, 1024),
}


def _strings(value: object) -> Iterator[str]:
    """Every string inside a JSON value (message contents, prompts, completions, text, references)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k != "role":
                yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def iter_texts(files: Sequence[str | Path]) -> Iterator[str]:
    """The training text of the given files: JSONL records' strings, or the lines of a plain text file."""
    for f in files:
        path = Path(f)
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                if path.suffix == ".jsonl" or line.startswith("{"):
                    try:
                        yield from _strings(json.loads(line))
                        continue
                    except json.JSONDecodeError:
                        pass
                yield line
    # Roles and the chat scaffolding, so they are cheap to encode even if the data has none.
    yield "system user assistant"


def train_tokenizer(files: Sequence[str | Path], vocab_size: int = 1024):
    """A byte-level BPE `PreTrainedTokenizerFast` with the chat template and special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(iter_texts(files), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[IM_START],
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _one_id(value: object) -> int | None:
    """A special token's id. transformers types these properties for token lists too; ours are single tokens."""
    if value is not None and not isinstance(value, int):
        raise TypeError(f"expected one special token id, got {value!r}")
    return value


def init_tiny(
    out: str | Path,
    from_data: Sequence[str | Path],
    *,
    size: str = "tiny",
    vocab_size: int = 1024,
    max_position_embeddings: int = 2048,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised Llama model and its tokenizer to `out`; returns the directory."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    missing = [str(f) for f in from_data if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"--from-data: no such file: {', '.join(missing)}")
    if size not in SIZES:
        raise ValueError(f"--size must be one of {', '.join(SIZES)}")
    tokenizer = train_tokenizer(from_data, vocab_size=vocab_size)
    hidden, layers, heads, inter = SIZES[size]
    bos, eos, pad = _one_id(tokenizer.bos_token_id), _one_id(tokenizer.eos_token_id), _one_id(tokenizer.pad_token_id)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        tie_word_embeddings=True,  # rope_theta: the default 10000 (transformers 5 moved it into rope_parameters)
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        max_new_tokens=64,
        do_sample=False,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a one-shard "Writing model shards" bar is noise here
    try:
        model.save_pretrained(out)
    finally:
        hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(out)
    return out


def build_parser(prog: str = "kubetune model init-tiny") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").splitlines()[0])
    p.add_argument("out", help="directory to write the model into")
    p.add_argument("--from-data", nargs="+", required=True, metavar="FILE", help="JSONL or text files")
    p.add_argument("--size", choices=sorted(SIZES), default="tiny", help="model size (default tiny: 128 hidden)")
    p.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary size (default 1024)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = init_tiny(args.out, args.from_data, size=args.size, vocab_size=args.vocab_size, seed=args.seed)
    except (FileNotFoundError, ValueError) as err:
        print(f"init-tiny: {err}", file=sys.stderr)
        return 2
    print(f"wrote a {args.size} Llama model with a {args.vocab_size}-token BPE tokenizer to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
