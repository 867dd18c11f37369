"""The HTTP API of `gancli serve` (its OpenAPI schema at /docs and /openapi.json).

Every answer other than 2xx/304 has a JSON body {"error": "..."} in one line: bad input is a 4xx and never a
500 or a traceback (the handlers below turn FastAPI's validation errors, unknown routes and our own checks
into that), and a full queue is a 503 with Retry-After.
"""
from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib.resources import files

import numpy as np
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from gancli import __version__
from gancli.runtime.serve.batcher import Batcher, QueueFull, WorkerDown
from gancli.runtime.serve.encode import encode_pngs, index_chunks, npz_stream, zip_stream
from gancli.runtime.serve.manners import AllowedHosts, ApiKey, BodyLimit, RequestMetrics, error_response
from gancli.runtime.serve.metrics import CONTENT_TYPE, Metrics
from gancli.runtime.serve.params import (ApiError, ImagesRequest, check_range, check_seed, check_truncation,
                                         etag_matches, image_etag, labels_for, model_named, parse_index, parse_seed)
from gancli.runtime.serve.registry import ServedModel
from gancli.runtime.serve.settings import ServeSettings

IMMUTABLE = "public, max-age=31536000, immutable"  # an image's URL names everything its pixels depend on
RETRY_AFTER_SECONDS = "1"
log = logging.getLogger("gancli.serve")


def validation_message(errors: list[dict]) -> str:
    """FastAPI's validation errors as one line: which value, what is wrong with it, what was given."""
    parts = []
    for error in errors[:3]:
        if error["type"] == "json_invalid":
            parts.append(f"malformed JSON body ({error.get('ctx', {}).get('error', 'not JSON')})")
            continue
        where = ".".join(str(p) for p in error["loc"][1:]) or str(error["loc"][0])
        given = f", not {error['input']!r}" if "input" in error and error["type"] != "missing" else ""
        parts.append(f"{where}: {error['msg']}{given}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> Response:
        return error_response(e.status, e.message, e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> Response:
        return error_response(400, validation_message(list(e.errors())))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> Response:
        return error_response(e.status_code, str(e.detail), dict(e.headers or {}))

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, e: QueueFull) -> Response:
        return error_response(503, "the server is busy (its queue is full); retry after a second",
                              {"Retry-After": RETRY_AFTER_SECONDS})

    @app.exception_handler(WorkerDown)
    async def worker_down(request: Request, e: WorkerDown) -> Response:
        return error_response(503, "the model's batching worker has stopped (the server's log says why); "
                                   "restart the server")

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception) -> Response:  # the traceback goes to the server's log only
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(e).__name__}); the server's log has the details")


def create_app(models: dict[str, ServedModel], settings: ServeSettings) -> FastAPI:
    """The app serving `models`; their batchers run from its start-up to its shut-down (after the drain)."""
    metrics = Metrics(settings.max_batch)
    batchers = {name: Batcher(name, model.sessions, settings.max_batch, settings.max_delay_ms / 1000,
                              settings.max_queue) for name, model in models.items()}
    for name, batcher in batchers.items():
        batcher.on_batch = metrics.watch_model(name, lambda b=batcher: b.waiting)
    pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="gancli-encode")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for batcher in batchers.values():
            batcher.start()
        try:
            yield
        finally:
            for batcher in batchers.values():
                batcher.close()
            pool.shutdown()

    app = FastAPI(title="gancli serve", version=__version__, lifespan=lifespan, description="Images from exported GAN generators: image i of a seed is the same pixels as file i "
                              "of `gancli generate --seed S`.")
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(ApiKey, key=settings.api_key)
    app.add_middleware(AllowedHosts, hosts=settings.answered_hosts())
    app.add_middleware(RequestMetrics, metrics=metrics)  # added last: outermost, so it counts the 401s too
    install_error_handlers(app)
    gallery = (files(__package__) / "gallery.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def gallery_page() -> HTMLResponse:
        return HTMLResponse(gallery)

    @app.api_route("/healthz", methods=["GET", "HEAD"], summary="Alive: every model's batching worker running",
                   responses={503: {"description": "a batching worker has stopped"}})
    async def healthz() -> Response:
        down = [name for name, b in batchers.items() if not b.alive]
        if down:  # a liveness probe then restarts the server, rather than requests waiting on a dead worker
            return error_response(503, f"the batching worker of {', '.join(down)} has stopped")
        return JSONResponse({"status": "ok"})

    @app.api_route("/readyz", methods=["GET", "HEAD"], summary="Models loaded and their batchers running",
                   responses={503: {"description": "not ready"}})
    async def readyz() -> Response:
        if not all(b.alive for b in batchers.values()):
            return error_response(503, "not ready: the models' batchers are not running")
        return JSONResponse({"ready": True, "models": list(models)})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models", summary="The models served")
    async def list_models() -> dict:
        return {"models": [model.describe() for model in models.values()]}

    @app.api_route("/v1/models/{name}/images/{index}.png", methods=["GET", "HEAD"], summary="One image, as PNG",
                   response_class=Response, responses={200: {"content": {"image/png": {}}},
                                                       304: {"description": "not modified (If-None-Match)"}})
    async def image(request: Request, name: str,
                    index: str = Path(description="0 to 999999999, in plain decimal."),
                    seed: str = Query("0", description="0 to 2**128 - 1, in plain decimal."),
                    classes: str | None = Query(None, alias="class", description="Names or indices, as `--class`."),
                    truncation: float = Query(1.0, description="psi in (0, 1]: z' = psi z (1: off).")) -> Response:
        """Image `index` of `gancli generate --seed SEED [--class CLASS] [--truncation T]`, the same pixels."""
        model = model_named(models, name)
        with batchers[name].arrival() as queued:
            number, seed_number = parse_index(index), parse_seed(seed)
            check_truncation(truncation)
            indices = np.array([number], dtype=np.int64)
            labels = labels_for(model, classes, indices)
            headers = {"ETag": image_etag(model, number, seed_number, labels, truncation), "Cache-Control": IMMUTABLE}
            if etag_matches(request.headers.get("if-none-match", ""), headers["ETag"]):
                return Response(status_code=304, headers=headers)
            images = await batchers[name].images(seed_number, indices, labels, truncation, queued=queued)
        return Response((await encode_pngs(images, pool))[0], media_type="image/png", headers=headers)

    @app.post("/v1/models/{name}/images", summary="Many images, as a zip of PNGs or an npz, streamed",
              response_class=StreamingResponse,
              responses={200: {"content": {"application/zip": {}, "application/x-npz": {}}}})
    async def many_images(name: str, body: ImagesRequest) -> StreamingResponse:
        """Images start .. start+n-1 of `seed`: 000000042.png files in a zip, or an npz with the arrays
        images (uint8 [n, H, W, C]), indices and (conditional models) labels, as `gancli generate` writes them."""
        model = model_named(models, name)
        batcher = batchers[name]
        with batcher.arrival() as queued:
            check_range(body.start, body.n, settings.max_images)
            check_seed(body.seed)
            check_truncation(body.truncation)
            labels = labels_for(model, body.classes, np.arange(body.start, body.start + body.n))
            chunks = index_chunks(body.start, body.n, settings.max_batch)

            async def images_of(indices: np.ndarray, wait_for_room: bool = True,
                                queued: Callable[[], None] = lambda: None) -> np.ndarray:
                rows = None if labels is None else labels[indices - body.start]
                return await batcher.images(body.seed, indices, rows, body.truncation, wait_for_room, queued)

            # a full queue is still a 503 here, before the answer starts
            first = await images_of(chunks[0], wait_for_room=False, queued=queued)
        filename = f"{name}-seed{body.seed}-{body.start}-{body.start + body.n - 1}.{body.format}"
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
        if body.format == "npz":
            stream = npz_stream(chunks, images_of, first, model.image_shape, labels)
            return StreamingResponse(stream, media_type="application/x-npz", headers=headers)
        return StreamingResponse(zip_stream(chunks, images_of, pool, first), media_type="application/zip",
                                 headers=headers)

    return app
