"""``POST /v1/storydiffusion``: the hosted StoryDiffusion request (plugins/storysdk-storydiffusion/docs/storydiffusion-api.md), image out.

The body is the hosted request's fields as a multipart form, a url-encoded form or a JSON
object; the answer is the comic page's bytes with its content type (``image/webp`` by
default). Fields are checked before the request is queued, so a bad field is answered 422
at once with the field named; a full queue is answered 429.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from ._deps import storydiffusion_hosted
from .http import read_fields
from .jobs import Job, JobQueue, WorkerContext

__all__ = ["storydiffusion_endpoint"]


async def storydiffusion_endpoint(request: Request) -> Response:
    """Validate the fields, queue the render, and answer with the image once it is done."""
    hosted = storydiffusion_hosted()
    fields = await read_fields(request, files=("ref_image",))
    req = hosted.parse_fields(fields)  # ConfigError -> 422 naming the field; a blank seed is drawn here

    def work(job: Job, ctx: WorkerContext) -> tuple[bytes, str]:
        story = ctx.hosted_renderer().render_story(req)
        return hosted.compose_page(story, req)  # type: ignore[no-any-return]

    queue: JobQueue = request.app.state.queue
    job = queue.submit(Job("storydiffusion", work, info={"seed": req.seed}))
    data, mime = await asyncio.wrap_future(job.future)
    return Response(content=data, media_type=mime, headers={"x-storysdk-job": job.id, "x-storysdk-seed": str(req.seed)})
