"""`gancli serve`: exported generators behind HTTP, torch-free (FastAPI on uvicorn, onnxruntime, OpenCV).

  server.py    settings, start-up checks, and uvicorn with a SIGTERM drain that exits 0
  registry.py  which models are served, under which names (nothing else is ever read from disk)
  batcher.py   dynamic batching: concurrent requests for a model coalesced into one onnxruntime batch
  app.py       the routes: health, metrics, models, images by index, zip/npz streams, the gallery
  params.py    request values -> one 4xx with a JSON {"error": ...} body
  encode.py    PNGs on every core, and the zip and npz streams
  manners.py   the API key, the body size limit and the request metrics, for every request
  metrics.py   the Prometheus metrics
  gallery.html the gallery page at /

Image i of a request is the same pixels as image i of `gancli generate` with the same seed, class rule and
truncation: z comes from runtime/latents.py and the label from runtime/labels.py, and a row's output does
not depend on the rows batched with it.
"""
