"""The built-in server under concurrent load: 64 short requests at once against the same 64 one by one.

    HF_HUB_OFFLINE=1 PYTHONPATH=operator:trainer-image .venv/bin/python benchmarks/serve_concurrency.py

Builds a tiny untrained Llama (kubetune_trainer.tiny.init_tiny, the tests' model; `--size`), starts
`kubetune-trainer serve` on it in a process of its own (so the client's threads never share its GIL),
then sends `--requests` completions (`--max-tokens` each, temperature 0, ignore_eos so every answer has
the same length) first sequentially, then all at once, while a probe GETs /healthz every 20 ms from the
first request to the last answer. Reported: requests/s of each phase and their ratio (goal at least 5x), the
batches the server formed (from its kubetune_serve_batch_size histogram), /healthz latency p50/p99/max
over both phases (goal p99 < 100 ms), and the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = [
    "the room was clean and the staff were friendly",
    "breakfast was cold and the service was slow",
    "a quiet hotel near the station with a lovely view",
    "the pool was closed and the bed was broken",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metric(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def _probe(base_url: str, stop, out) -> None:
    """GET /healthz every 20 ms until `stop` is set; the latencies go to `out`. In a process of its own, as the
    kubelet's probe is: in the load generator's event loop it measured the client's own queueing too."""
    latencies = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            r = client.get("/healthz")
            latencies.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            time.sleep(0.02)
    out.put(latencies)


async def _load(base_url: str, n: int, max_tokens: int, concurrent: bool) -> float:
    body = {"prompt": "the pool was", "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    limits = httpx.Limits(max_connections=n + 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:

        async def one(i: int) -> None:
            r = await client.post("/v1/completions", json={**body, "prompt": f"{SENTENCES[i % 4]} {i}"})
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == max_tokens, r.text

        started = time.perf_counter()
        if concurrent:
            await asyncio.gather(*(one(i) for i in range(n)))
        else:
            for i in range(n):
                await one(i)
        return time.perf_counter() - started


def _phase(base_url: str, n: int, max_tokens: int, concurrent: bool) -> tuple[float, list[float]]:
    """The load of one phase, with /healthz probed from another process throughout."""
    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    prober = ctx.Process(target=_probe, args=(base_url, stop, out))
    prober.start()
    time.sleep(0.5)  # the prober's interpreter is up and probing before the load starts
    try:
        seconds = asyncio.run(_load(base_url, n, max_tokens, concurrent))
    finally:
        stop.set()
    latencies = out.get(timeout=60)
    prober.join(timeout=10)
    return seconds, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--size", default="nano", help="init_tiny size (nano, micro, ...)")
    parser.add_argument("--max-batch-size", type=int, default=64)
    args = parser.parse_args()

    from kubetune_trainer.tiny import init_tiny

    tmp = Path(tempfile.mkdtemp(prefix="kubetune-bench-serve-"))
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": s, "completion": s}) + "\n" for s in SENTENCES * 5))
    model = init_tiny(tmp / "model", [data], size=args.size, vocab_size=300)
    port = _free_port()
    config = {
        "kind": "ServeRunConfig",
        "job": {"name": "bench"},
        "model_uri": str(model),
        "served_model_name": "bench",
        "output_dir": str(tmp / "out"),
        "port": port,
    }
    (tmp / "serve.json").write_text(json.dumps(config))
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT / 'trainer-image'}",
        "HF_HUB_OFFLINE": "1",
        "KUBETUNE_SERVE_MAX_BATCH_SIZE": str(args.max_batch_size),
    }
    command = [sys.executable, "-m", "kubetune_trainer.cli", "serve", "--config", str(tmp / "serve.json")]
    server = subprocess.Popen([*command, "--log-level", "warning"], env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base_url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        _phase(base_url, 4, args.max_tokens, False)  # warm-up
        load_before = os.getloadavg()[0]
        seq_s, seq_lat = _phase(base_url, args.requests, args.max_tokens, False)
        before = httpx.get(f"{base_url}/metrics").text
        con_s, con_lat = _phase(base_url, args.requests, args.max_tokens, True)
        after = httpx.get(f"{base_url}/metrics").text
        load_after = os.getloadavg()[0]
    finally:
        server.terminate()
        server.wait(timeout=30)

    def q(values: list[float], p: int) -> float:
        return statistics.quantiles(values, n=100)[p - 1] * 1000 if len(values) > 1 else values[0] * 1000

    calls = _metric(after, "kubetune_serve_batch_size_count") - _metric(before, "kubetune_serve_batch_size_count")
    lat = seq_lat + con_lat
    print(f"model: init_tiny {args.size}; {args.requests} requests x {args.max_tokens} tokens; cores: {os.cpu_count()}")
    print(f"load average (1 min): {load_before:.1f} -> {load_after:.1f}")
    print(f"sequential: {seq_s:.2f} s, {args.requests / seq_s:.1f} req/s")
    print(f"concurrent: {con_s:.2f} s, {args.requests / con_s:.1f} req/s, {calls:.0f} generate calls")
    print(f"throughput ratio: {seq_s / con_s:.1f}x (goal >= 5x)")
    print(
        f"/healthz over both phases: {len(lat)} probes, p50 {q(lat, 50):.1f} ms, p99 {q(lat, 99):.1f} ms, "
        f"max {max(lat) * 1000:.1f} ms (goal p99 < 100 ms); concurrent phase only: p99 {q(con_lat, 99):.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
