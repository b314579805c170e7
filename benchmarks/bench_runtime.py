"""Runtime overhead on llama.cpp: the runtime versus calling xllamacpp directly.

On the tests' tiny GGUF, in one run: time from process start to the first healthy
/health, and generation tokens/s over HTTP, for (a) ``kubeinfer-runtime --config`` and
(b) a bare Python process that builds the same ``CommonParams`` and starts
``xllamacpp.Server``. The runtime adds no hop on the request path, so the goals are a
tokens/s ratio of at least 0.98 and at most 0.5 s more to ready.

    .venv/bin/python benchmarks/bench_runtime.py [--rounds 3] [--requests 20]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import tiny_model  # noqa: E402

N_CTX, THREADS, MAX_TOKENS = 256, 2, 64
DIRECT = f"""
import sys, threading, xllamacpp
p = xllamacpp.CommonParams()
p.model.path = sys.argv[1]
p.hostnames = ["127.0.0.1"]
p.port = int(sys.argv[2])
p.n_ctx = {N_CTX}
p.cpuparams.n_threads = {THREADS}
p.endpoint_metrics = True
server = xllamacpp.Server(p)
threading.Event().wait()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(argv: list[str], port: int, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    t0 = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    while not healthy(port):
        if proc.poll() is not None:
            raise SystemExit(f"{argv[0]} exited {proc.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.005)
    return proc, time.perf_counter() - t0


def tokens_per_second(port: int, requests: int) -> float:
    body = json.dumps(
        {
            "prompt": "The quick brown fox",
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "ignore_eos": True,
        }
    ).encode()
    tokens, elapsed = 0, 0.0
    for _ in range(requests):
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as r:
            tokens += json.load(r)["usage"]["completion_tokens"]
        elapsed += time.perf_counter() - t0
    return tokens / elapsed


def measure(kind: str, gguf: Path, tmp: Path, requests: int) -> tuple[float, float]:
    port = free_port()
    if kind == "runtime":
        config = tmp / "runtime.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "engine": "llama.cpp",
                    "model": {"name": "tiny-llama", "uri": str(gguf)},
                    "server": {"host": "127.0.0.1", "port": port, "metricsPort": free_port()},
                    "params": {"n_ctx": N_CTX, "cpuparams.n_threads": THREADS},
                    "terminationMessagePath": str(tmp / "termination-log"),
                }
            )
        )
        argv = [str(Path(sys.executable).parent / "kubeinfer-runtime"), "--config", str(config)]
    else:
        argv = [sys.executable, "-c", DIRECT, str(gguf), str(port)]
    proc, ready = start(argv, port, tmp / f"{kind}.log")
    try:
        tokens_per_second(port, 2)  # warm-up
        tps = tokens_per_second(port, requests)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return ready, tps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    gguf = tiny_model.build().gguf_path
    results: dict[str, list[tuple[float, float]]] = {"direct": [], "runtime": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            # Alternate the order so neither side always runs on a warmer machine.
            for kind in ("direct", "runtime") if i % 2 == 0 else ("runtime", "direct"):
                results[kind].append(measure(kind, gguf, Path(tmp), args.requests))
    print(
        f"tiny GGUF {gguf.stat().st_size / 2**20:.1f} MiB, n_ctx {N_CTX}, {THREADS} threads, "
        f"{args.rounds} rounds x {args.requests} requests x {MAX_TOKENS} tokens"
    )
    best = {}
    for kind, runs in results.items():
        ready = min(r for r, _ in runs)
        tps = max(t for _, t in runs)
        best[kind] = (ready, tps)
        print(
            f"{kind:8s} time to ready {ready:6.3f} s   tokens/s {tps:8.1f}   "
            f"(all: {', '.join(f'{r:.3f}s/{t:.0f}' for r, t in runs)})"
        )
    ratio = best["runtime"][1] / best["direct"][1]
    extra = best["runtime"][0] - best["direct"][0]
    print(
        f"tokens/s ratio runtime/direct {ratio:.3f} (goal >= 0.98): "
        f"{'ok' if ratio >= 0.98 else 'MISSED'}"
    )
    print(
        f"extra time to ready {extra:+.3f} s (goal <= +0.5 s): {'ok' if extra <= 0.5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
