"""How fast `gancli serve` answers, with and without dynamic batching, against `gancli generate`'s PNG rate.

Starts `gancli serve --model MODEL` twice as a subprocess on a free loopback port: with dynamic batching
(its defaults: --max-batch 64, --max-delay-ms 5) and with --max-batch 1. Against each, 1 and then 32
keep-alive clients request GET /v1/models/MODEL/images/I.png (every client its own indices, so nothing
repeats) for --seconds after a one-second warm-up, and images/s, p50 and p99 latency are measured. Then
`gancli generate -n --generate-images --model MODEL` runs for the PNG rate the batch command reaches on the
same machine. The clients are one asyncio loop in this process, with a minimal HTTP/1.1 reader (an HTTP
library would cost the server CPU it needs on a small machine).

Targets (issue 21): 32 clients with batching >= 3x the --max-batch 1 server's images/s and >= 0.5 of
generate's PNG rate; p99 <= 250 ms at 32 clients. It prints each figure and whether the targets are met.

  python benchmarks/bench_serve.py                       # cats-dcgan, 10 s per measurement
  python benchmarks/bench_serve.py --model mnist-dcgan --seconds 20
  python benchmarks/bench_serve.py --batching '--max-batch 8 --max-delay-ms 2'
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

START_SECONDS = 60
WARM_UP_SECONDS = 1.0
CLIENTS = (1, 32)


@dataclass(frozen=True)
class Measured:
    images_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def start_server(model: str, *flags: str) -> tuple[subprocess.Popen, str, int]:
    """`gancli serve` on a free port: (process, host, port) once it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "gancli.cli", "serve", "--model", model, "--port", "0", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    ready, _, _ = select.select([proc.stdout], [], [], START_SECONDS)
    match = re.search(r"http://([\d.]+):(\d+)", proc.stdout.readline() if ready else "")
    if match is None:
        proc.kill()
        raise SystemExit(f"gancli serve --model {model} {' '.join(flags)} did not start")
    return proc, match.group(1), int(match.group(2))


async def read_response(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 response with a Content-Length: its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    await reader.readexactly(length)
    return status


async def client(host: str, port: int, path: str, first: int, step: int, until: float, measure_from: float,
                 latencies: list[float], errors: list[int]) -> None:
    """One keep-alive connection asking for images first, first + step, ... until `until`."""
    reader, writer = await asyncio.open_connection(host, port)
    index = first
    while (sent := time.perf_counter()) < until:
        writer.write(f"GET {path.format(index=index)} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status = await read_response(reader)
        if sent >= measure_from:
            (latencies if status == 200 else errors).append(time.perf_counter() - sent)
        index += step
    writer.close()


async def load(host: str, port: int, model: str, clients: int, seconds: float) -> Measured:
    path = f"/v1/models/{model}/images/{{index}}.png?seed=0"
    start = time.perf_counter()
    measure_from, until = start + WARM_UP_SECONDS, start + WARM_UP_SECONDS + seconds
    latencies: list[float] = []
    errors: list[int] = []
    await asyncio.gather(*(client(host, port, path, k, clients, until, measure_from, latencies, errors)
                           for k in range(clients)))
    took = np.array(latencies) * 1000
    return Measured(len(latencies) / seconds, float(np.percentile(took, 50)), float(np.percentile(took, 99)), len(errors))


def measure_server(model: str, label: str, flags: list[str], seconds: float) -> dict[int, Measured]:
    proc, host, port = start_server(model, *flags)
    try:
        results = {}
        for clients in CLIENTS:
            results[clients] = asyncio.run(load(host, port, model, clients, seconds))
            m = results[clients]
            print(f"{label:<40} {clients:>3} clients: {m.images_per_second:8.1f} images/s   p50 {m.p50_ms:7.1f} ms   "
                  f"p99 {m.p99_ms:7.1f} ms   errors {m.errors}", flush=True)
        return results
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def generate_rate(model: str, n: int) -> float:
    """images/s of `gancli generate -n N --model MODEL` (PNGs), as the command reports it."""
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run([sys.executable, "-m", "gancli.cli", "generate", "-n", str(n), "--out", out,
                               "--model", model], capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    match = re.search(r"([\d,]+) images/s \(", done.stdout)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"gancli generate failed: {done.stdout}{done.stderr}")
    return float(match.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cats-dcgan")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per server and client count")
    parser.add_argument("--generate-images", type=int, default=2000, help="-n of the gancli generate run")
    parser.add_argument("--batching", default="", metavar="FLAGS",
                        help="flags of the batching server, e.g. '--max-batch 16 --max-delay-ms 2' (default: none)")
    args = parser.parse_args()
    print(f"{args.model}, {os.cpu_count()} CPUs, {args.seconds:g} s per measurement", flush=True)
    batched = measure_server(args.model, f"dynamic batching {args.batching}".strip(), args.batching.split(), args.seconds)
    single = measure_server(args.model, "--max-batch 1", ["--max-batch", "1"], args.seconds)
    png_rate = generate_rate(args.model, args.generate_images)
    print(f"gancli generate -n {args.generate_images}: {png_rate:.1f} images/s (PNG files)")
    at_32, speed_up = batched[32], batched[32].images_per_second / single[32].images_per_second
    for target, value, met in (
            ("32 clients: batching / --max-batch 1 >= 3", f"{speed_up:.2f}x", speed_up >= 3),
            ("32 clients: batching / generate's PNG rate >= 0.5", f"{at_32.images_per_second / png_rate:.2f}",
             at_32.images_per_second >= 0.5 * png_rate),
            ("32 clients: p99 <= 250 ms", f"{at_32.p99_ms:.1f} ms", at_32.p99_ms <= 250)):
        print(f"{'met' if met else 'MISSED':<7}{target}: {value}")


if __name__ == "__main__":
    main()
