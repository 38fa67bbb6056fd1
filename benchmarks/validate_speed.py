"""`kubetune validate` against a bare `json.loads` loop over the same generated chat JSONL.

    .venv/bin/python benchmarks/validate_speed.py --rows 1000000 --repeats 3

Writes `--rows` OpenAI-style chat lines (a system prompt, one to three user/assistant exchanges of random
words, some non-ASCII, a few exact duplicates) to a temporary directory, then times, each in a fresh
process so that peak RSS is that run's own:

- `json.loads`: `for line in file: if line.strip(): json.loads(line)`, the floor any validator has to beat;
- `validate_file`: kubetune.data.validate.validate_file(path), what `kubetune validate` and the trainer's
  validation step run (every check, statistics, duplicate digests).

The runs alternate (json, validate, json, ...) so that load from other processes falls on both alike.
Reported per run: wall seconds, CPU seconds (user + system: less sensitive to a shared machine), rows/s
(by wall time), peak RSS (ru_maxrss) and the RSS right after the imports; then the median of each, the ratio
json-seconds / validate-seconds (>= 1.0 means validate is at least as fast as parsing alone), and the
load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [
    "the",
    "a",
    "to",
    "of",
    "and",
    "in",
    "is",
    "for",
    "on",
    "that",
    "with",
    "as",
    "it",
    "be",
    "at",
    "by",
    "this",
    "from",
    "are",
    "or",
    "an",
    "was",
    "have",
    "not",
    "your",
    "you",
    "can",
    "will",
    "we",
    "our",
    "they",
    "their",
    "what",
    "which",
    "when",
    "where",
    "how",
    "booking",
    "hotel",
    "flight",
    "room",
    "price",
    "night",
    "check",
    "guest",
    "date",
    "city",
    "trip",
    "travel",
    "refund",
    "policy",
    "change",
    "cancel",
    "confirm",
    "reservation",
    "airport",
    "train",
    "ticket",
    "seat",
    "luggage",
    "breakfast",
    "please",
    "thanks",
    "sure",
    "here",
    "details",
    "number",
    "email",
    "address",
    "payment",
    "card",
    "total",
    "tax",
    "fee",
    "available",
    "option",
    "prefer",
    "café",
    "naïve",
    "résumé",
    "straße",
    "zürich",
    "münchen",
    "são",
    "paulo",
    "東京",
    "京都",
    "ok",
    "yes",
    "no",
    "maybe",
    "soon",
    "later",
    "today",
    "tomorrow",
]
SYSTEM_PROMPTS = [f"You are a helpful travel assistant #{i}. Answer briefly and politely." for i in range(8)]


def _sentence(rng: random.Random, low: int, high: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(low, high))
    return " ".join(words).capitalize() + rng.choice(".?!")


def generate(path: Path, rows: int, seed: int = 0) -> int:
    """Write `rows` chat lines; returns the file's size in bytes. About 0.1% of lines repeat an earlier one."""
    rng = random.Random(seed)
    earlier: list[str] = []
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            if earlier and rng.random() < 0.001:
                f.write(rng.choice(earlier))
                continue
            messages = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}]
            for _ in range(rng.randint(1, 3)):
                messages.append({"role": "user", "content": _sentence(rng, 6, 30)})
                messages.append({"role": "assistant", "content": _sentence(rng, 10, 60)})
            line = json.dumps({"messages": messages}, ensure_ascii=False) + "\n"
            if i % 1000 == 0:
                earlier.append(line)
            f.write(line)
    return path.stat().st_size


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _run_json(path: str) -> int:
    rows = 0
    loads = json.loads
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                loads(line)
                rows += 1
    return rows


def _run_validate(path: str) -> int:
    from kubetune.data.validate import validate_file

    report = validate_file(path)
    if report.errors:
        raise SystemExit(f"validate_file found errors in generated data: {report.errors[:3]}")
    return report.examples


def child(kind: str, path: str) -> None:
    """One measured run, in this process; prints one JSON line."""
    if kind == "validate":
        import kubetune.data.validate  # noqa: F401  (imports are not part of the measurement)
    start_rss = _rss_kib()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    t0 = time.perf_counter()
    rows = _run_json(path) if kind == "json" else _run_validate(path)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "kind": kind,
        "rows": rows,
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime - cpu0, 3),
        "rows_per_s": round(rows / wall),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "start_rss_mib": round(start_rss / 1024, 1),
    }
    print(json.dumps(out))


def _measure(kind: str, path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the data here (kept) instead of a temporary directory")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "chat.jsonl"
        if not path.exists():
            size = generate(path, args.rows)
            print(f"generated {args.rows:,} rows, {size / 2**20:.1f} MiB: {path}")
        load_before = os.getloadavg()
        runs: dict[str, list[dict]] = {"json": [], "validate": []}
        for _ in range(args.repeats):
            for kind in runs:
                result = _measure(kind, path)
                runs[kind].append(result)
                print(json.dumps(result), flush=True)
        load_after = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"load average after:  {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    medians = {}
    for kind, results in runs.items():
        medians[kind] = {k: statistics.median(r[k] for r in results) for k in ("wall_s", "cpu_s", "peak_rss_mib")}
        med = medians[kind]
        rows = results[0]["rows"]
        print(
            f"{kind:>9}: median {med['wall_s']:.2f} s wall, {med['cpu_s']:.2f} s CPU, "
            f"{rows / med['wall_s']:,.0f} rows/s, peak RSS {med['peak_rss_mib']:.1f} MiB"
        )
    print(
        f"ratio json.loads / validate_file: {medians['json']['wall_s'] / medians['validate']['wall_s']:.2f}x wall, "
        f"{medians['json']['cpu_s'] / medians['validate']['cpu_s']:.2f}x CPU"
    )


if __name__ == "__main__":
    main()
