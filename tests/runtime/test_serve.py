"""`gancli serve` (runtime/serve/): a real server in a subprocess on a free loopback port, spoken to over HTTP.

Same pixels as `gancli generate`; every bad input is a 4xx with a JSON {"error": ...} body and the server stays
up; concurrent requests are batched; a full queue is a 503 with Retry-After; the API key; SIGTERM with
requests in flight finishes them and exits 0; the gallery page loads its images in headless Chromium.
Torch-free: shipped models only.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from gancli.cli import app

START_SECONDS = 60
MODELS = ["--model", "mnist-mlp", "--model", "mnist-cdcgan", "--model", "cats-dcgan"]


class Server:
    """`gancli serve --port 0 ARGS` in a subprocess; `url` once it listens."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None):
        self.log = tmp / "serve.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "gancli.cli", "serve", "--port", "0", "--device", "cpu", *args],
                                     stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        ready, _, _ = select.select([self.proc.stdout], [], [], START_SECONDS)
        line = self.proc.stdout.readline() if ready else ""
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if match is None:
            self.stop()
            raise AssertionError(f"the server did not start: {line!r} {self.log.read_text()}")
        self.url = f"http://127.0.0.1:{match.group(1)}"

    def client(self, **options) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **options)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("serve"), *MODELS)
    yield running
    assert running.stop() == 0


def png_pixels(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return image[..., None] if image.ndim == 2 else image


def generated(tmp_path: Path, *args: str) -> list[np.ndarray]:
    """The decoded PNGs of `gancli generate ARGS`, by index."""
    result = CliRunner().invoke(app, ["generate", "--out", str(tmp_path), "--device", "cpu", *args])
    assert result.exit_code == 0, result.output
    return [png_pixels(f.read_bytes()) for f in sorted(tmp_path.glob("*/*.png"))]


# ---- same pixels as gancli generate ---------------------------------------------------------------

@pytest.mark.parametrize("model, query, args", [
    ("cats-dcgan", "seed=2", ["--seed", "2"]),
    ("mnist-cdcgan", "seed=5&class=3,7&truncation=0.8", ["--seed", "5", "--class", "3,7", "--truncation", "0.8"]),
    ("mnist-cdcgan", "seed=1", ["--seed", "1"]),  # no class: image i gets class i mod 10, as generate does
])
def test_an_image_is_the_same_pixels_as_gancli_generate(server, tmp_path, model, query, args):
    files = generated(tmp_path, "-n", "12", "--model", model, *args)
    with server.client() as client:
        for index in (0, 5, 11):
            response = client.get(f"/v1/models/{model}/images/{index}.png?{query}")
            assert response.status_code == 200 and response.headers["content-type"] == "image/png"
            np.testing.assert_array_equal(png_pixels(response.content), files[index])


def test_a_zip_and_an_npz_are_the_same_pixels_as_gancli_generate(server, tmp_path):
    files = generated(tmp_path, "-n", "40", "--model", "mnist-cdcgan", "--seed", "9", "--class", "2,8")
    body = {"n": 30, "start": 10, "seed": 9, "class": "2,8"}
    with server.client() as client:
        archive = zipfile.ZipFile(io.BytesIO(client.post("/v1/models/mnist-cdcgan/images", json=body).content))
        npz = np.load(io.BytesIO(client.post("/v1/models/mnist-cdcgan/images", json={**body, "format": "npz"}).content))
    assert archive.namelist() == [f"{i:09d}.png" for i in range(10, 40)]
    for name in archive.namelist():
        np.testing.assert_array_equal(png_pixels(archive.read(name)), files[int(name[:9])])
    np.testing.assert_array_equal(npz["images"], np.stack(files[10:40]))
    np.testing.assert_array_equal(npz["indices"], np.arange(10, 40))
    np.testing.assert_array_equal(npz["labels"], [2, 8] * 15)


def test_an_image_is_immutable_and_revalidates_by_etag(server):
    with server.client() as client:
        first = client.get("/v1/models/mnist-mlp/images/3.png?seed=4")
        assert "immutable" in first.headers["cache-control"] and first.headers["etag"]
        again = client.get("/v1/models/mnist-mlp/images/3.png?seed=4", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and not again.content
        other = client.get("/v1/models/mnist-mlp/images/3.png?seed=4&truncation=0.5")
        assert other.headers["etag"] != first.headers["etag"]


def test_models_health_readiness_and_the_schema(server):
    with server.client() as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert models["cats-dcgan"] | {"device": "cpu"} == {
            "name": "cats-dcgan", "image_shape": [64, 64, 3], "classes": [], "latent_dim": 100, "precision": "int8",
            "arch": "dcgan", "dataset": "cats", "device": "cpu", "instances": os.cpu_count()}
        assert models["mnist-cdcgan"]["classes"] == [str(d) for d in range(10)]
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"ready": True, "models": ["mnist-mlp", "mnist-cdcgan", "cats-dcgan"]}
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/v1/models", "/v1/models/{name}/images/{index}.png", "/v1/models/{name}/images"} <= set(paths)
        assert client.get("/docs").status_code == 200


# ---- bad input: a 4xx with a JSON error, and the server stays up -----------------------------------

IMAGE = "/v1/models/mnist-cdcgan/images"
BAD_REQUESTS = {
    "unknown model": ("GET", "/v1/models/nope/images/0.png", None, 404, "no model 'nope' here"),
    "negative index": ("GET", f"{IMAGE}/-1.png", None, 400, "index -1"),
    "index 10**9": ("GET", f"{IMAGE}/1000000000.png", None, 400, "indices are 0 to 999,999,999"),
    "index not a number": ("GET", f"{IMAGE}/x.png", None, 400, "index"),
    "seed not an integer": ("GET", f"{IMAGE}/0.png?seed=1.5", None, 400, "seed"),
    "seed negative": ("GET", f"{IMAGE}/0.png?seed=-1", None, 400, "seed must be"),
    "seed 2**128": ("GET", f"{IMAGE}/0.png?seed={2 ** 128}", None, 400, "seed must be"),
    "class on an unconditional model": ("GET", "/v1/models/mnist-mlp/images/0.png?class=3", None, 400, "unconditional"),
    "class it lacks": ("GET", f"{IMAGE}/0.png?class=cat", None, 400, "no such class"),
    "truncation 0": ("GET", f"{IMAGE}/0.png?truncation=0", None, 400, "truncation"),
    "truncation over 1": ("GET", f"{IMAGE}/0.png?truncation=1.5", None, 400, "truncation"),
    "truncation nan": ("GET", f"{IMAGE}/0.png?truncation=nan", None, 400, "truncation"),
    "n over the cap": ("POST", IMAGE, {"n": 1025}, 400, "n must be between 1 and 1,024"),
    "n zero": ("POST", IMAGE, {"n": 0}, 400, "n must be"),
    "n missing": ("POST", IMAGE, {"seed": 1}, 400, "n: Field required"),
    "seed a string": ("POST", IMAGE, {"n": 2, "seed": "1"}, 400, "seed"),
    "unknown field": ("POST", IMAGE, {"n": 2, "colour": "red"}, 400, "colour"),
    "unknown format": ("POST", IMAGE, {"n": 2, "format": "tar"}, 400, "format"),
    "indices past 10**9": ("POST", IMAGE, {"n": 2, "start": 999_999_999}, 400, "indices 999999999 to 1000000000"),
    "malformed JSON": ("POST", IMAGE, b'{"n": 2', 400, "malformed JSON"),
    "a body over the limit": ("POST", IMAGE, b'{"n": 2, "x": "' + b"x" * 70_000 + b'"}', 413, "over this server's limit"),
    "unknown route": ("GET", "/v2/anything", None, 404, "Not Found"),
    "wrong method": ("DELETE", IMAGE, None, 405, "Method Not Allowed"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_input_is_a_4xx_with_a_json_error(server, case):
    method, url, body, status, message = BAD_REQUESTS[case]
    with server.client() as client:
        content = body if isinstance(body, bytes) else None
        response = client.request(method, url, json=None if content else body, content=content,
                                  headers={"content-type": "application/json"} if content else None)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert message in error and "\n" not in error and "Traceback" not in error
        assert client.get("/healthz").status_code == 200


def test_a_chunked_body_over_the_limit_is_refused_too(server):
    with server.client() as client:
        chunks = (b"x" * 10_000 for _ in range(10))  # no Content-Length: counted while read
        response = client.post(IMAGE, content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["error"]


# ---- batching and back-pressure --------------------------------------------------------------------

async def get_all(url: str, paths: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=64)) as client:
        return await asyncio.gather(*(client.get(path) for path in paths))


def batch_sizes(metrics: str, model: str) -> tuple[float, float]:
    """(batches, batches of one image) so far."""
    count = float(re.search(rf'gancli_batch_size_count{{model="{model}"}} (\S+)', metrics).group(1))
    ones = float(re.search(rf'gancli_batch_size_bucket{{le="1.0",model="{model}"}} (\S+)', metrics).group(1))
    return count, ones


def test_concurrent_requests_are_batched(server):
    responses = asyncio.run(get_all(server.url, [f"/v1/models/cats-dcgan/images/{i}.png?seed=11" for i in range(48)]))
    assert all(r.status_code == 200 for r in responses)
    with server.client() as client:
        metrics = client.get("/metrics").text
    count, ones = batch_sizes(metrics, "cats-dcgan")
    assert count > ones  # some batch held more than one image
    assert re.search(r'gancli_requests_total{method="GET",route="/v1/models/{name}/images/{index}.png",status="200"}',
                     metrics)
    assert "gancli_request_seconds_bucket" in metrics and 'gancli_queue_depth{model="cats-dcgan"}' in metrics


def test_a_full_queue_is_a_503_with_retry_after(tmp_path):
    server = Server(tmp_path, "--model", "cats-dcgan", "--max-batch", "1", "--max-queue", "1")
    try:
        responses = asyncio.run(get_all(server.url, [f"/v1/models/cats-dcgan/images/{i}.png" for i in range(64)]))
        busy = [r for r in responses if r.status_code == 503]
        assert busy and all(r.status_code == 200 for r in responses if r not in busy)
        assert busy[0].headers["retry-after"] == "1" and "busy" in busy[0].json()["error"]
        with server.client() as client:
            assert client.get("/v1/models/cats-dcgan/images/0.png").status_code == 200
    finally:
        assert server.stop() == 0


# ---- security ----------------------------------------------------------------------------------------

def test_an_api_key_guards_v1_only(tmp_path):
    server = Server(tmp_path, "--model", "mnist-mlp", env={"GANCLI_API_KEY": "s3cret"})
    try:
        with server.client() as client:
            refused = client.get("/v1/models")
            assert refused.status_code == 401 and "API key" in refused.json()["error"]
            assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
            assert client.get("/v1/models/mnist-mlp/images/0.png", headers={"X-API-Key": "s3cret"}).status_code == 200
            assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("args, message", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0 opens the server beyond this machine; set --api-key"),
    (["--model", "no-such-model"], "no model 'no-such-model'"),
    (["--model", "a=mnist-mlp", "--model", "a=mnist-dcgan"], "the name 'a' is taken"),
    (["--max-batch", "0"], "--max-batch must be between 1 and 4096, not 0"),
    (["--max-delay-ms", "inf"], "--max-delay-ms must be between 0 and 1000, not inf"),
    (["--max-delay-ms", "1e308"], "--max-delay-ms must be between 0 and 1000"),
    (["--max-queue", "nan"], "--max-queue"),
    (["--grace-seconds", "1e12"], "--grace-seconds must be between 0 and 3600"),
    (["--request-timeout", "0"], "--request-timeout must be between 0.1 and 600"),
    (["--idle-timeout", "inf"], "--idle-timeout must be between 0.1 and 3600"),
    (["--max-images", "100000000"], "--max-images must be between 1 and 65536"),
    (["--allowed-hosts", "a b"], "--allowed-hosts 'a b' is not a host name"),
    (["--instances", "1000"], "--instances must be between 0 and 256, not 1000"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_settings_are_one_error_line_before_anything_listens(args, message):
    # a subprocess with a time limit: a setting that is not refused starts a server, which must fail the test
    result = subprocess.run([sys.executable, "-m", "gancli.cli", "serve", "--port", "0", *args], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "GANCLI_API_KEY": "", "COLUMNS": "300"})
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_a_taken_port_is_one_error_line(server):
    port = server.url.rsplit(":", 1)[1]
    result = CliRunner().invoke(app, ["serve", "--model", "mnist-mlp", "--port", port])
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output


# ---- SIGTERM -----------------------------------------------------------------------------------------

def test_sigterm_finishes_the_requests_in_flight_then_exits_0(tmp_path):
    server = Server(tmp_path, "--model", "cats-dcgan", "--max-batch", "16")
    results: dict[str, object] = {}
    started = threading.Event()

    def download() -> None:
        with server.client() as client, client.stream("POST", "/v1/models/cats-dcgan/images", json={"n": 1024}) as r:
            started.set()
            results["status"], results["body"] = r.status_code, r.read()

    thread = threading.Thread(target=download)
    thread.start()
    assert started.wait(60)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.ConnectError):  # no longer accepting
        httpx.get(server.url + "/healthz", timeout=5)
    thread.join(60)
    assert server.proc.wait(timeout=60) == 0
    assert results["status"] == 200
    assert len(zipfile.ZipFile(io.BytesIO(results["body"])).namelist()) == 1024


# ---- torch-free, and the gallery -----------------------------------------------------------------------

def test_serving_loads_no_torch():
    probe = """
import sys
from gancli.runtime.serve.app import create_app
from gancli.runtime.serve.registry import load_models
from gancli.runtime.serve.settings import ServeSettings
create_app(load_models(["mnist-mlp"], "cpu"), ServeSettings())
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision") or m.startswith(("gancli.gan", "gancli.export"))))
import gancli.cli
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "[]"]


def test_the_gallery_shows_images_that_loaded_in_headless_chromium(server):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium)")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=30000",
                          "--dump-dom", server.url + "/"], capture_output=True, text=True, timeout=120).stdout
    assert re.search(r'<body[^>]* data-loaded="48"', dom), dom[-2000:]
    assert dom.count('data-loaded="true"') == 48
    assert "48 of 48 images loaded" in dom


# ---- limits on what a client can make the server hold or wait for ------------------------------------

def raw_exchange(url: str, *parts: bytes, pause: float = 0.0, timeout: float = 20) -> tuple[int, dict, bytes]:
    """Send `parts` on one connection (pausing between them), then read until the server closes it:
    (status, JSON body, the whole answer). A server that never answers fails on the socket's timeout."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            for part in parts:
                sock.sendall(part)
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before all was sent: what is checked is its answer
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body), answer


def test_a_huge_header_is_a_431_before_it_is_read_whole(server):
    header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    status, body, _ = raw_exchange(server.url, header, *[b"a" * 65536] * 400)  # 26 MB, never finished
    assert status == 431 and "limit of 16,384 bytes" in body["error"]
    with server.client() as client:
        assert client.get("/healthz").status_code == 200


def test_an_overlong_url_is_a_414_with_the_json_error_body(server):
    status, body, answer = raw_exchange(server.url, b"GET /v1/models?" + b"x" * 40_000 + b" HTTP/1.1\r\n\r\n")
    assert status == 414 and b"application/json" in answer and "URL" in body["error"]


def test_an_unparseable_request_has_the_json_error_body(server):
    status, body, _ = raw_exchange(server.url, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    assert status == 400 and "not a valid HTTP/1.1 request" in body["error"]


def test_a_slow_client_is_cut_off_and_an_idle_one_closed(tmp_path):
    server = Server(tmp_path, "--model", "mnist-mlp", "--request-timeout", "0.5", "--idle-timeout", "0.5")
    try:
        started = time.monotonic()
        status, body, _ = raw_exchange(server.url, b"GET /healthz HTTP/1.1\r\n", b"Host: 127", b".0.0.1\r\n", pause=0.3)
        assert status == 408 and "0.5 s" in body["error"] and time.monotonic() - started < 5
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            time.sleep(1.5)  # the answer came at once; then nothing for longer than --idle-timeout
            answer = b""
            while chunk := idle.recv(65536):  # the server has closed: recv ends instead of timing out
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        assert server.stop() == 0


def test_only_this_servers_names_are_answered(tmp_path):
    server = Server(tmp_path, "--model", "mnist-mlp", "--allowed-hosts", "gen.example")
    try:
        port = server.url.rsplit(":", 1)[1]
        with server.client() as client:
            for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
                refused = client.get("/v1/models", headers={"Host": host})
                assert refused.status_code == 400 and "--allowed-hosts" in refused.json()["error"], host
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "gen.example"):
                assert client.get("/v1/models", headers={"Host": host}).status_code == 200, host
    finally:
        assert server.stop() == 0


# ---- HTTP manners ------------------------------------------------------------------------------------

def test_errors_speak_http_not_cli_flags(server):
    with server.client() as client:
        error = client.get("/v1/models/mnist-mlp/images/0.png?class=3").json()["error"]
        assert "class=3" in error and "--class" not in error and "drop the class parameter" in error
        error = client.post(IMAGE, json={"n": 2, "class": "cat"}).json()["error"]
        assert "class=cat" in error and "--class" not in error


def test_head_answers_image_and_health_routes_without_a_body(server):
    with server.client() as client:
        got = client.get("/v1/models/mnist-mlp/images/7.png?seed=3")
        head = client.head("/v1/models/mnist-mlp/images/7.png?seed=3")
        assert head.status_code == 200 and head.content == b""
        assert {k: head.headers[k] for k in ("content-type", "etag", "content-length")} == \
            {k: got.headers[k] for k in ("content-type", "etag", "content-length")}
        for path in ("/healthz", "/readyz"):
            answer = client.head(path)
            assert answer.status_code == 200 and answer.content == b"", path


def test_if_none_match_is_a_list_of_etags_not_a_substring(server):
    url = "/v1/models/mnist-mlp/images/3.png?seed=4"
    with server.client() as client:
        etag = client.get(url).headers["etag"]
        assert client.get(url, headers={"If-None-Match": f'"other", {etag}'}).status_code == 304
        assert client.get(url, headers={"If-None-Match": etag.removeprefix("W/")}).status_code == 304  # weak match
        assert client.get(url, headers={"If-None-Match": "*"}).status_code == 304
        assert client.get(url, headers={"If-None-Match": f"x{etag}x"}).status_code == 200  # contains it, is not it


@pytest.mark.parametrize("path", ["images/042.png", "images/+42.png", "images/4_2.png", "images/%2042.png",
                                  "images/42.png?seed=07", "images/42.png?seed=+7", "images/42.png?seed=7_0"])
def test_indices_and_seeds_are_plain_decimal_only(server, path):
    with server.client() as client:
        answer = client.get(f"/v1/models/mnist-mlp/{path}")
    assert answer.status_code == 400 and "plain decimal" in answer.json()["error"]


# ---- the batching worker -------------------------------------------------------------------------------

def test_a_lone_request_is_not_held_for_the_delay(tmp_path):
    server = Server(tmp_path, "--model", "mnist-mlp", "--max-delay-ms", "1000")
    try:
        with server.client() as client:
            client.get("/v1/models/mnist-mlp/images/0.png")  # warm-up
            took = []
            for index in range(1, 4):
                started = time.monotonic()
                assert client.get(f"/v1/models/mnist-mlp/images/{index}.png").status_code == 200
                took.append(time.monotonic() - started)
        assert max(took) < 0.5, took  # the delay is 1 s: no request waited it out
    finally:
        assert server.stop() == 0


def test_a_stopped_batching_worker_fails_health_and_requests_at_once(monkeypatch):
    from fastapi.testclient import TestClient

    from gancli.runtime.serve.app import create_app
    from gancli.runtime.serve.batcher import Batcher
    from gancli.runtime.serve.registry import load_models
    from gancli.runtime.serve.settings import ServeSettings

    def broken(self, first, in_hand):
        raise OverflowError("timeout value is too large")  # what --max-delay-ms inf once did to it

    monkeypatch.setattr(Batcher, "_collect", broken)
    app_ = create_app(load_models(["mnist-mlp"], "cpu"), ServeSettings())
    with TestClient(app_, base_url="http://localhost") as client:
        assert client.get("/healthz").status_code == 200
        first = client.get("/v1/models/mnist-mlp/images/0.png")  # the request that meets the bug
        assert first.status_code == 503 and "batching worker" in first.json()["error"]
        started = time.monotonic()
        assert client.get("/v1/models/mnist-mlp/images/1.png").status_code == 503
        assert time.monotonic() - started < 1
        health = client.get("/healthz")
        assert health.status_code == 503 and "mnist-mlp" in health.json()["error"]


def test_sigterm_right_after_the_announcement_exits_0(tmp_path):
    for _ in range(3):
        server = Server(tmp_path, "--model", "mnist-mlp")
        server.proc.send_signal(signal.SIGTERM)  # at once, as a supervisor might
        assert server.proc.wait(timeout=60) == 0


def test_every_instance_of_a_model_makes_the_same_pixels(tmp_path):
    server = Server(tmp_path, "--model", "mnist-cdcgan", "--instances", "3")
    try:
        paths = [f"/v1/models/mnist-cdcgan/images/{i % 8}.png?seed=6" for i in range(96)]
        responses = asyncio.run(get_all(server.url, paths))  # concurrent: batches run on several instances
        with server.client() as client:
            assert client.get("/v1/models").json()["models"][0]["instances"] == 3
    finally:
        assert server.stop() == 0
    files = generated(tmp_path / "generated", "-n", "8", "--model", "mnist-cdcgan", "--seed", "6")
    for path, response in zip(paths, responses):
        assert response.status_code == 200
        np.testing.assert_array_equal(png_pixels(response.content), files[int(path.split("/")[-1].split(".")[0])])
