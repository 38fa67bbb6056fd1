"""The tiny model every trainer test starts from, made from the fixture data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from trainer_helpers import RESUME_ROWS, TINY_MODEL_DATA, epochs_config, final_steps, quickstart_rows


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A nano Llama with a BPE tokenizer trained on every fixture file (shared by all method tests)."""
    from kubetune_trainer.tiny import init_tiny

    out = tmp_path_factory.mktemp("models") / "tiny"
    return init_tiny(out, TINY_MODEL_DATA, size="nano", vocab_size=512, seed=0)


@pytest.fixture(scope="session")
def uninterrupted_steps(tiny_model, tmp_path_factory) -> int:
    """Optimizer steps of an uninterrupted `epochs_config` run over RESUME_ROWS rows (the kill/stop tests' reference)."""
    from kubetune_trainer.train import EXIT_OK, run

    cfg = epochs_config(tmp_path_factory.mktemp("uninterrupted"), tiny_model, quickstart_rows(RESUME_ROWS))
    assert run(cfg) == EXIT_OK
    return final_steps(Path(cfg.output_dir))
