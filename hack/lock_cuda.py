"""Write trainer-image/requirements-cuda.lock: the CUDA trainer image's packages, resolved by pip.

    python hack/lock_cuda.py        (make lock-cuda; needs PyPI, takes a minute or two)

The requirements are kubetune's own, its trainer, s3 and gpu extras (pyproject.toml), with torch from PyPI's
default index, which is the CUDA build on Linux x86_64 (its nvidia-* wheels carry the CUDA libraries). pip
resolves them without installing (`pip install --dry-run --report`) for this machine's Python, which must be
the image's (3.11, Linux x86_64). tests/unit/trainer/test_trainer_image.py checks the lock covers the extras.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "trainer-image" / "requirements-cuda.lock"
EXTRAS = ("trainer", "s3", "gpu")


def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *(r for extra in EXTRAS for r in extras[extra])]


def main() -> int:
    if sys.version_info[:2] != (3, 11):
        print("lock_cuda.py: run it with Python 3.11, the image's", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        reqs, report = Path(tmp) / "requirements.txt", Path(tmp) / "report.json"
        reqs.write_text("\n".join(requirements()) + "\n")
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        cmd += ["--index-url", "https://pypi.org/simple", "--report", str(report), "-r", str(reqs)]
        subprocess.run(cmd, check=True)
        installs = json.loads(report.read_text())["install"]
    pins = sorted(f"{i['metadata']['name'].lower()}=={i['metadata']['version']}" for i in installs)
    header = (
        "# The CUDA trainer image's packages (trainer-image/Dockerfile, VARIANT=cuda), resolved by hack/lock_cuda.py\n"
        f"# (make lock-cuda) from pyproject.toml's dependencies and its {', '.join(EXTRAS)} extras; Python 3.11, Linux x86_64.\n"
    )
    LOCK.write_text(header + "\n".join(pins) + "\n")
    print(f"wrote {LOCK.relative_to(ROOT)}: {len(pins)} packages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
