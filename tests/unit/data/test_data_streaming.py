"""Validation streams: a file's rows are never held in memory, only digests and counters."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

from kubetune.data import validate_file


def write_chat_file(path: Path, rows: int) -> int:
    """Write `rows` distinct chat lines; returns the bytes of memory the parsed rows would take if kept."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            row = {
                "messages": [
                    {"role": "system", "content": "Translate the request into StayQL."},
                    {"role": "user", "content": f"The {i % 10 + 1} cheapest hotels in city number {i}, please"},
                    {"role": "assistant", "content": f"SHOW hotels IN city{i} BY price UP TOP {i % 10 + 1}"},
                ]
            }
            f.write(json.dumps(row) + "\n")
    # what keeping the parsed rows would cost, measured on a sample of 1,000
    with path.open(encoding="utf-8") as f:
        tracemalloc.start()
        kept = [json.loads(next(f)) for _ in range(min(rows, 1000))]
        per_row = tracemalloc.get_traced_memory()[0] / len(kept)
        tracemalloc.stop()
    return int(per_row * rows)


def test_200k_lines_validate_in_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    rows_bytes = write_chat_file(path, 200_000)
    # A fresh interpreter, so the peak resident memory (ru_maxrss) belongs to this validation alone.
    script = textwrap.dedent(
        f"""
        import json, resource, time
        from kubetune.data import validate_file
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        report = validate_file({str(path)!r})
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"ok": report.ok, "examples": report.examples, "growth": (after - before) * 1024,
                          "seconds": seconds, "duplicates": report.stats["duplicates"]}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["examples"] == 200_000 and result["duplicates"] == 0
    assert rows_bytes > 200 * 2**20  # keeping the rows would take hundreds of MiB ...
    assert result["growth"] < 32 * 2**20, result  # ... streaming takes a few (the digest table: < 64 bytes a row)
    assert result["growth"] < rows_bytes / 10


def test_traced_peak_does_not_grow_with_the_rows(tmp_path: Path) -> None:
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    write_chat_file(small, 2_000)
    rows_bytes = write_chat_file(large, 20_000)

    def peak(path: Path) -> int:
        tracemalloc.start()
        report = validate_file(path)
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report.ok
        return result

    small_peak, large_peak = peak(small), peak(large)
    # 10x the rows: the peak grows only by the duplicate table (12 bytes a slot, 17-34 bytes a row, ~50 growing)
    assert large_peak - small_peak < 18_000 * 64, (small_peak, large_peak)
    assert large_peak < rows_bytes / 20, (large_peak, rows_bytes)


def test_digest_set_finds_repeats_across_growth() -> None:
    from kubetune.data.digests import DigestSet, text_digest

    seen = DigestSet(capacity=8)
    assert all(seen.add(text_digest(f"row {i}"), i + 1) is None for i in range(50_000))
    assert len(seen) == 50_000
    assert seen.add(text_digest("row 0"), 60_000) == 1
    assert seen.add(text_digest("row 49999"), 60_001) == 50_000
    assert len(seen) == 50_000


def test_repeat_log_counts_every_repeat_and_shows_the_first_in_line_order() -> None:
    from kubetune.data.digests import RepeatLog

    # 200,000 examples (the look-up goes a block of 65,536 at a time), in runs of consecutive lines broken by
    # blank or invalid lines (the line numbers must survive the gaps); the first repeats come late, of lines
    # from several earlier blocks, one of them twice
    rows = [b"row %d" % i for i in range(150_000)]
    rows += [rows[140_000], rows[5], rows[70_000], rows[140_000], rows[149_999], rows[3], *rows[1000:51_000]]
    log, line = RepeatLog(), 1
    expected: list[tuple[int, int]] = []  # (line, first line) of every repeat, in line order
    first: dict[bytes, int] = {}
    for start in range(0, len(rows), 997):
        run = rows[start : start + 997]
        if start % 3:
            log.add_run(line, run)
        else:  # one at a time, as the detailed checks add them
            for offset, row in enumerate(run):
                log.add(line + offset, row)
        for offset, row in enumerate(run):
            if row in first:
                expected.append((line + offset, first[row]))
            else:
                first[row] = line + offset
        line += len(run) + start % 2  # a line that is not an example after every other run
    assert len(log) == len(rows) == 200_006
    assert len(expected) == 50_006 and expected[0][1] > 140_000  # the first repeat is of a line in a late block
    assert log.repeats(5) == (len(expected), expected[:5])
    assert log.repeats(3) == (len(expected), expected[:3])
