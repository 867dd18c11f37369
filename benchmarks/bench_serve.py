"""How fast `gancli serve` answers, with and without dynamic batching, against `gancli generate`'s PNG rate,
and where a request's time goes.

Starts `gancli serve --model MODEL` twice as a subprocess on a free loopback port: with dynamic batching
(its defaults: --max-batch 64, --max-delay-ms 0) and with --max-batch 1. Against each, 1 and then 32
keep-alive clients request GET /v1/models/MODEL/images/I.png (every client its own indices, so nothing
repeats) for --seconds after a one-second warm-up, and images/s, p50 and p99 latency are measured; the
batching server's mean batch comes from its /metrics, and the same clients against /healthz give the HTTP
stack's own rate (parsing, event loop, middleware, routing: no image). Then `gancli generate -n
--generate-images --model MODEL` runs for the PNG rate the batch command reaches on the same machine, and
the image work is timed alone in this process (z, onnxruntime at batch 1 and at the mean batch, PNG
encoding: the same functions the server calls), to show where a request's time goes. The clients are
one asyncio loop in this process, with a minimal HTTP/1.1 reader (an HTTP library would cost the server
CPU it needs on a small machine).

Targets (issue 33), at 1 and 32 clients: batching >= 1.0x the --max-batch 1 server's images/s; at 32
clients >= 0.9 of generate's PNG rate and p99 <= 100 ms. It prints each figure and whether it is met.

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
import socket
import subprocess
import sys
import tempfile
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

START_SECONDS = 60
WARM_UP_SECONDS = 1.0
CLIENTS = (1, 32)
INDICES = itertools.count(0, 997)  # every client of every round starts elsewhere: no image is asked for twice


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


@dataclass
class Tally:
    """Answers pooled over the rounds of one server and client count."""

    latencies: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    seconds: float = 0.0
    client_cpu_seconds: float = 0.0  # what the clients themselves took of the machine's CPU

    @property
    def client_ms_per_request(self) -> float:
        return 1000 * self.client_cpu_seconds / max(1, len(self.latencies) + len(self.errors))

    def measured(self) -> Measured:
        took = np.array(self.latencies) * 1000
        return Measured(len(self.latencies) / self.seconds, float(np.percentile(took, 50)),
                        float(np.percentile(took, 99)), len(self.errors))


async def load(host: str, port: int, path: str, clients: int, seconds: float, tally: Tally) -> None:
    """`clients` keep-alive clients asking for `path` (its {index} differs per request) for `seconds`."""
    start, cpu = time.perf_counter(), time.process_time()
    measure_from, until = start + WARM_UP_SECONDS, start + WARM_UP_SECONDS + seconds
    await asyncio.gather(*(client(host, port, path, next(INDICES), clients, until, measure_from, tally.latencies,
                                  tally.errors) for _ in range(clients)))
    tally.seconds += seconds
    tally.client_cpu_seconds += (time.process_time() - cpu) * seconds / (time.perf_counter() - start)


def batch_totals(host: str, port: int, model: str) -> tuple[float, float]:
    """(images, batches) the model has run so far, from the server's /metrics."""
    with socket.create_connection((host, port)) as sock:
        sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        text = b"".join(iter(lambda: sock.recv(65536), b"")).decode()
    total = float(re.search(rf'gancli_batch_size_sum{{model="{model}"}} (\S+)', text).group(1))
    count = float(re.search(rf'gancli_batch_size_count{{model="{model}"}} (\S+)', text).group(1))
    return total, count


def report(label: str, clients: int, m: Measured) -> None:
    print(f"{label:<40} {clients:>3} clients: {m.images_per_second:8.1f} /s   p50 {m.p50_ms:7.1f} ms   "
          f"p99 {m.p99_ms:7.1f} ms   errors {m.errors}", flush=True)


def measure_servers(model: str, servers: dict[str, list[str]], seconds: float, rounds: int
                    ) -> tuple[dict[str, dict[int, Measured]], dict[int, float], dict[int, Measured]]:
    """Every server of `servers` (label -> flags) up at once, measured in turns: for each client count,
    `rounds` rounds of seconds / rounds each, so that the machine's drift (a shared host) falls on all alike.
    Returns (label -> clients -> images measured, the first server's mean batch by clients, and its /healthz
    by clients: the HTTP stack alone)."""
    running = {label: start_server(model, *flags) for label, flags in servers.items()}
    try:
        first = next(iter(servers))
        results: dict[str, dict[int, Measured]] = {label: {} for label in servers}
        batch, health = {}, {}
        for clients in CLIENTS:
            tallies = {label: Tally() for label in servers}
            batched = [0.0, 0.0]
            for round_ in range(rounds):
                turns = list(running.items())
                for label, (_, host, port) in turns if round_ % 2 == 0 else reversed(turns):  # ABBA: no order bias
                    before = batch_totals(host, port, model)
                    asyncio.run(load(host, port, f"/v1/models/{model}/images/{{index}}.png?seed=0", clients,
                                     seconds / rounds, tallies[label]))
                    if label == first:
                        after = batch_totals(host, port, model)
                        batched = [batched[0] + after[0] - before[0], batched[1] + after[1] - before[1]]
            batch[clients] = batched[0] / batched[1]
            for label in servers:
                results[label][clients] = tallies[label].measured()
                report(f"{label} (images)", clients, results[label][clients])
            print(f"{'':<40} {clients:>3} clients: the clients took {tallies[first].client_ms_per_request:.2f} ms "
                  f"of CPU per request (this process, on the same cores)", flush=True)
            _, host, port = running[first]
            health_tally = Tally()
            asyncio.run(load(host, port, "/healthz?i={index}", clients, seconds / rounds, health_tally))
            health[clients] = health_tally.measured()
            report(f"{first} (/healthz: HTTP alone)", clients, health[clients])
        return results, batch, health
    finally:
        for proc, _, _ in running.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def generate_rate(model: str, n: int) -> float:
    """images/s of `gancli generate -n N --model MODEL` (PNGs), as the command reports it. The files go to
    memory (/dev/shm) where there is one: the server writes no file either, and this disk creates files ~10x
    slower for minutes after a large delete (such as the last run's), which made the rate swing 946-1,423."""
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as out:
        done = subprocess.run([sys.executable, "-m", "gancli.cli", "generate", "-n", str(n), "--out", out,
                               "--model", model], capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    match = re.search(r"generating: ([\d,]+) images/s", done.stdout)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"gancli generate failed: {done.stdout}{done.stderr}")
    return float(match.group(1).replace(",", ""))


def per_image_ms(work, images: int, seconds: float = 2.0) -> float:
    """CPU time of `work()` (which handles `images` images), per image, in ms: repeated for about `seconds`."""
    work()
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
        runs += 1
    return (time.perf_counter() - started) / runs / images * 1000


def image_work(model: str, batch: int) -> dict[str, float]:
    """ms per image of what the server does for one: z, onnxruntime at `batch`, PNG encoding; one thread each,
    through the functions the server calls (the graph the server opens for MODEL on the CPU). Beside it, one
    session with a thread per core, its wall time times the cores: the CPU it would spend per image."""
    from gancli.runtime.latents import latents
    from gancli.runtime.serve.encode import to_encoder_order
    from gancli.runtime.serve.registry import load_models
    from gancli.runtime.session import GeneratorSession
    from gancli.runtime.writer import encode

    served = load_models([model], "cpu", instances=1)[model]
    session = served.session
    pooled = GeneratorSession(served.path, device="cpu", threads=0)  # one session, a thread per core
    cores = os.cpu_count() or 1
    dim = session.metadata.latent_dim
    z = latents(0, np.arange(batch), dim, 1.0)
    one = to_encoder_order(session.images(z[:1]))[0]
    return {"z": per_image_ms(lambda: latents(0, np.arange(batch), dim, 1.0), batch),
            "onnxruntime, batch 1": per_image_ms(lambda: session.images(z[:1]), 1),
            f"onnxruntime, batch {batch}": per_image_ms(lambda: session.images(z), batch),
            f"onnxruntime, batch {batch}, {cores} threads (x{cores})": cores * per_image_ms(lambda: pooled.images(z), batch),
            "PNG": per_image_ms(lambda: encode(one, "png"), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cats-dcgan")
    parser.add_argument("--seconds", type=float, default=12.0, help="measured time per server and client count")
    parser.add_argument("--rounds", type=int, default=4, help="turns the servers take within those seconds")
    parser.add_argument("--generate-images", type=int, default=4000, help="-n of the gancli generate run")
    parser.add_argument("--batching", default="", metavar="FLAGS",
                        help="flags of the batching server, e.g. '--max-batch 16 --max-delay-ms 2' (default: none)")
    args = parser.parse_args()
    print(f"{args.model}, {os.cpu_count()} CPUs, {args.seconds:g} s per measurement in {args.rounds} rounds", flush=True)
    batching, single = f"batching {args.batching}".strip(), "--max-batch 1"
    results, batch, health = measure_servers(args.model, {batching: args.batching.split(),
                                                          single: ["--max-batch", "1"]}, args.seconds, args.rounds)
    png_rate = generate_rate(args.model, args.generate_images)
    print(f"gancli generate -n {args.generate_images}: {png_rate:.1f} images/s (PNG files)")

    print("\nwhere a request's time goes (image work: ms of one core per image, one thread each):")
    for clients in CLIENTS:
        print(f"  {clients:>2} clients: mean batch {batch[clients]:.1f}; /healthz round trip "
              f"{1000 * clients / health[clients].images_per_second:.2f} ms (the HTTP stack and event loop alone)")
    for part, ms in image_work(args.model, max(1, round(batch[32]))).items():
        print(f"  {part:<28} {ms:6.3f} ms")

    targets = []
    for clients in CLIENTS:
        ratio = results[batching][clients].images_per_second / results[single][clients].images_per_second
        targets.append((f"{clients} clients: batching / --max-batch 1 >= 1.0", f"{ratio:.2f}x", ratio >= 1.0))
    at_32 = results[batching][32]
    targets += [("32 clients: batching / generate's PNG rate >= 0.9", f"{at_32.images_per_second / png_rate:.2f}",
                 at_32.images_per_second >= 0.9 * png_rate),
                ("32 clients: p99 <= 100 ms", f"{at_32.p99_ms:.1f} ms", at_32.p99_ms <= 100)]
    for target, value, met in targets:
        print(f"{'met' if met else 'MISSED':<7}{target}: {value}")


if __name__ == "__main__":
    main()
