"""``POST /v1/storydiffusion`` of ``storysdk serve``: the hosted request (docs/storydiffusion-api.md), image out.

Registered by :mod:`.plugin` through the ``register_routes`` hook. The body is the hosted
request's fields as a multipart form, a url-encoded form or a JSON object; the answer is the
comic page's bytes with its content type (``image/webp`` by default). Fields are checked
before the request is queued, so a bad field is answered 422 at once with the field named; a
full queue is answered 429.

The request runs as a job of kind ``storydiffusion`` on the server's queue, through a
:class:`storysdk.Pipeline` with the worker's component cache (:func:`.hosted.run_request`),
in the output folder ``<--out>/storydiffusion/<request hash>``: the same fields and seed
always land in the same folder, so a request sent again after a crash or a cancel renders
only the frames that are missing, and one sent while the same request is still running
waits for that job. ``Prefer: respond-async`` answers 202 with the job at once;
``GET /v1/jobs/{id}`` then reports its progress (and ``result.file`` once done, under
``files_url``) and ``DELETE /v1/jobs/{id}`` cancels it (within one denoising step).

Before the request is queued it is planned and checked against the server's
:class:`~storysdk.limits.Limits` (``ServerConfig.limits``): a caption or prompt over a limit
is a 422 naming the field. The answer and the job say which weights rendered the page
(``x-storysdk-weights``: a JSON object, ``{"generator storydiffusion": "tiny"}``; a
``preset="auto"`` server without the model in its cache says ``"tiny (fallback: ...)"``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from storysdk.errors import OutputFolderError
from storysdk.server import (
    Job,
    WorkerContext,
    job_accepted,
    job_result,
    job_root,
    read_fields,
    server_config,
    server_registry,
    submit_job,
    wants_async,
)

from .hosted import check_request, parse_fields, request_key, run_request

__all__ = ["KIND", "PATH", "storydiffusion_endpoint"]

PATH = "/v1/storydiffusion"
KIND = "storydiffusion"


async def storydiffusion_endpoint(request: Request) -> Response:
    """Check the fields, queue the render, and answer with the image once it is done (or 202 with the job)."""
    registry = server_registry(request)
    fields = await read_fields(request, files=("ref_image",))
    req = parse_fields(fields, registry)  # ConfigError -> 422 naming the field; a blank seed is drawn here
    config = server_config(request)
    defaults, limits = config.defaults, config.limits
    check_request(req, registry=registry, runtime=defaults, limits=limits)  # refused now (422), not on the worker
    key = request_key(req, defaults)
    folder = job_root(request, KIND) / key

    def work(job: Job, ctx: WorkerContext) -> dict[str, Any]:
        def run(overwrite: bool) -> Any:
            return run_request(
                req, folder, registry=registry, runtime=ctx.defaults, cache=ctx.cache,
                progress=job.report, overwrite=overwrite, limits=limits,
            )

        try:
            result = run(False)
        except OutputFolderError:  # this request's folder, from other settings (a device, a library version)
            result = run(True)
        return {"file": result.path.name, "content_type": result.mime, "seed": req.seed, "weights": result.weights}

    job = submit_job(request, Job(KIND, work, folder=folder, key=key, info={"seed": req.seed}))
    if wants_async(request):
        return job_accepted(request, job)
    done = await job_result(job)
    assert job.folder is not None
    return Response(
        content=(job.folder / done["file"]).read_bytes(),
        media_type=done["content_type"],
        headers={
            "x-storysdk-job": job.id,
            "x-storysdk-seed": str(req.seed),
            "x-storysdk-weights": json.dumps(done["weights"], sort_keys=True, ensure_ascii=True),
        },
    )
