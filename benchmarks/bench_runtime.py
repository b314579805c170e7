"""Runtime overhead on llama.cpp: the runtime versus calling xllamacpp directly.

On the tests' tiny GGUF, in one run: time from process start to the first healthy
/health, and generation tokens/s over HTTP, for (a) ``kubeinfer-runtime --config`` and
(b) a bare Python process that builds the same ``CommonParams`` and starts
``xllamacpp.Server``. The runtime adds no hop on the request path, so the goals are a
tokens/s ratio of at least 0.98 and at most 0.5 s more to ready.

    .venv/bin/python benchmarks/bench_runtime.py [--rounds 5] [--requests 100]

Both servers run side by side for the throughput part and take requests in turn, one at a
time, so load from elsewhere on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

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


def one_request(port: int) -> float:
    """Generation tokens/s of one completion request."""
    body = json.dumps(
        {
            "prompt": "The quick brown fox",
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "ignore_eos": True,
        }
    ).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        tokens = json.load(r)["usage"]["completion_tokens"]
    return float(tokens) / (time.perf_counter() - t0)


def command(kind: str, gguf: Path, tmp: Path, port: int) -> list[str]:
    if kind == "direct":
        return [sys.executable, "-c", DIRECT, str(gguf), str(port)]
    config = tmp / f"runtime-{port}.yaml"
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
    return [str(Path(sys.executable).parent / "kubeinfer-runtime"), "--config", str(config)]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="starts of each, for readiness")
    parser.add_argument("--requests", type=int, default=100, help="requests to each server")
    args = parser.parse_args()
    gguf = tiny_model.build().gguf_path
    kinds = ("direct", "runtime")
    ready: dict[str, list[float]] = {k: [] for k in kinds}
    tps: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for i in range(args.rounds):
            for kind in kinds if i % 2 == 0 else kinds[::-1]:
                port = free_port()
                proc, seconds = start(command(kind, gguf, tmp, port), port, tmp / f"{kind}.log")
                ready[kind].append(seconds)
                stop(proc)
        # Throughput: both servers up, requests alternating one by one, so that noise
        # from the rest of the machine falls on both alike. Medians, not means.
        ports = {k: free_port() for k in kinds}
        procs = {
            k: start(command(k, gguf, tmp, ports[k]), ports[k], tmp / f"{k}.log")[0] for k in kinds
        }
        try:
            for kind in kinds:
                one_request(ports[kind])  # warm-up
            for i in range(args.requests):
                for kind in kinds if i % 2 == 0 else kinds[::-1]:
                    tps[kind].append(one_request(ports[kind]))
        finally:
            for proc in procs.values():
                stop(proc)
    print(
        f"tiny GGUF {gguf.stat().st_size / 2**20:.1f} MiB, n_ctx {N_CTX}, {THREADS} threads; "
        f"{args.rounds} starts each; {args.requests} alternating requests x {MAX_TOKENS} tokens"
    )
    med_ready = {k: statistics.median(v) for k, v in ready.items()}
    med_tps = {k: statistics.median(v) for k, v in tps.items()}
    for kind in kinds:
        print(
            f"{kind:8s} time to ready median {med_ready[kind]:.3f} s "
            f"(min {min(ready[kind]):.3f})   tokens/s median {med_tps[kind]:.0f}"
        )
    ratio = med_tps["runtime"] / med_tps["direct"]
    extra = med_ready["runtime"] - med_ready["direct"]
    print(
        f"tokens/s ratio runtime/direct {ratio:.3f} (goal >= 0.98): "
        f"{'ok' if ratio >= 0.98 else 'MISSED'}"
    )
    print(
        f"extra time to ready {extra:+.3f} s (goal <= +0.5 s): {'ok' if extra <= 0.5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
