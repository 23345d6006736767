"""``/v1/stories``: run a story file as a job, poll its progress, fetch its files.

- ``POST /v1/stories``: the story file's TOML as the body (``application/toml`` or
  ``text/plain``), or ``{"story": "<toml>", "seed": 7}`` as JSON, or a form with a ``story``
  field (text or file) and an optional ``seed``. Answers 202 with the job (its ``id`` and
  URLs) and a ``Location`` header; 422 names what is wrong with the story file.
- ``GET /v1/stories``: every job the server remembers; ``GET /v1/stories/{id}``: one job's
  status (``queued``, ``running``, ``done``, ``failed``, ``cancelled``), its latest progress
  event, its place in the queue, and the files written so far.
- ``GET /v1/stories/{id}/files/{path}``: one file of the job's output folder.
- ``DELETE /v1/stories/{id}``: cancel (a waiting job at once; a running one at its next
  progress report). Files written so far are kept.

A story sent to a server may embed images only as ``data:`` URIs: paths would read the
server's own files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ConfigError
from ..model import StoryRequest
from ..storyfile import StoryFile, parse_story_file
from .api import describe_job, job_file, job_root, read_fields, server_config, server_registry, submit_job
from .jobs import Job, JobQueue, WorkerContext

__all__ = ["cancel_story", "get_story", "list_stories", "story_file", "submit_story"]

TOML_TYPES = ("application/toml", "text/x-toml", "text/toml", "text/plain")


async def _story_text(request: Request) -> tuple[str, int | None]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in TOML_TYPES:
        body = await request.body()
        try:
            return body.decode("utf-8"), None
        except UnicodeDecodeError:
            raise HTTPException(400, "the story file is not UTF-8 text") from None
    fields = await read_fields(request, files=("story",))
    unknown = sorted(set(fields) - {"story", "seed"})
    if unknown:
        raise ConfigError(f"field '{unknown[0]}' is unknown; send 'story' (the story file's TOML) and optionally 'seed'")
    story = fields.get("story")
    if not story:
        raise ConfigError("field 'story' is missing; send the story file's TOML text in it")
    if isinstance(story, bytes):
        try:
            story = story.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("field 'story' is not UTF-8 text") from None
    seed = fields.get("seed")
    if seed in (None, ""):
        return str(story), None
    try:
        return str(story), int(str(seed))
    except ValueError:
        raise ConfigError(f"field 'seed' must be a whole number, got {seed!r}") from None


def _check_no_paths(request: StoryRequest) -> None:
    refs = [("start_image", request.start_image)]
    if isinstance(request.characters, list):
        refs += [(f"characters[{c.name}].reference_image", c.reference_image) for c in request.characters]
    for where, value in refs:
        if isinstance(value, (str, Path)) and not str(value).startswith("data:"):
            raise ConfigError(
                f"[story] {where} is a file path ({str(value)!r}); a story sent to the server must embed "
                "its images as data: URIs (data:image/png;base64,...)"
            )


def _describe(request: Request, job: Job) -> dict[str, Any]:
    data = describe_job(request, job, route="get_story")
    if "result" in data:
        data["outputs"] = data.pop("result")
    return data


async def submit_story(request: Request) -> Response:
    """Check the story file, then queue it (202) or refuse it (422, 429)."""
    text, seed = await _story_text(request)
    sf: StoryFile = parse_story_file(text, source="the story file")
    if seed is not None:
        sf.request.seed = seed
    _check_no_paths(sf.request)
    registry = server_registry(request)
    defaults = server_config(request).defaults
    await run_in_threadpool(sf.pipeline, registry=registry, defaults=defaults)  # unknown names, bad options -> 422
    root = job_root(request, "stories")

    def work(job: Job, ctx: WorkerContext) -> dict[str, list[str]]:
        assert job.folder is not None
        pipe = sf.pipeline(registry=registry, defaults=ctx.defaults, cache=ctx.cache)
        story = pipe.run(sf.request, out_dir=job.folder, progress=job.report)
        return {name: [Path(p).relative_to(job.folder).as_posix() for p in paths] for name, paths in story.files.items()}

    job = Job("story", work, info={"seed": sf.request.seed})
    job.folder = root / job.id
    submit_job(request, job)
    data = _describe(request, job)
    return JSONResponse(data, status_code=202, headers={"Location": data["url"]})


def _job(request: Request) -> Job:
    queue: JobQueue = request.app.state.queue
    job = queue.get(request.path_params["job_id"])
    if job is None or job.kind != "story":
        raise HTTPException(404, f"no story job {request.path_params['job_id']!r} (finished jobs are forgotten after a while)")
    return job


async def list_stories(request: Request) -> Response:
    queue: JobQueue = request.app.state.queue
    return JSONResponse({"jobs": [_describe(request, j) for j in queue.jobs("story")]})


async def get_story(request: Request) -> Response:
    return JSONResponse(_describe(request, _job(request)))


async def cancel_story(request: Request) -> Response:
    job = _job(request)
    queue: JobQueue = request.app.state.queue
    if not queue.cancel(job):
        raise HTTPException(409, f"job {job.id} has already finished ({job.status}); nothing to cancel")
    return JSONResponse(_describe(request, job), status_code=202)


async def story_file(request: Request) -> Response:
    job = _job(request)
    return job_file(job, request.path_params["path"], listing=f"GET /v1/stories/{job.id}")
