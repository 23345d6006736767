"""``/v1/jobs``: every job the server runs, whatever endpoint queued it (story jobs included).

- ``GET /v1/jobs`` (``?kind=story`` keeps one kind): the jobs the server remembers;
- ``GET /v1/jobs/{id}``: one job's status, latest progress, place in the queue, files so far
  and, once done, its result;
- ``GET /v1/jobs/{id}/files/{path}``: one file of the job's folder;
- ``DELETE /v1/jobs/{id}``: cancel (a waiting job at once, a running one at its next progress
  report); the files written so far are kept.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .api import describe_job, job_file, server_config
from .jobs import Job, JobQueue

__all__ = ["cancel_job", "get_job", "get_job_file", "list_jobs"]


def _job(request: Request) -> Job:
    queue: JobQueue = request.app.state.queue
    job = queue.get(request.path_params["job_id"])
    if job is None:
        raise HTTPException(404, f"no job {request.path_params['job_id']!r} (finished jobs are forgotten after a while)")
    return job


async def list_jobs(request: Request) -> Response:
    queue: JobQueue = request.app.state.queue
    kind = request.query_params.get("kind") or None
    return JSONResponse({"jobs": [describe_job(request, j) for j in queue.jobs(kind)]})


async def get_job(request: Request) -> Response:
    return JSONResponse(describe_job(request, _job(request)))


async def cancel_job(request: Request) -> Response:
    job = _job(request)
    queue: JobQueue = request.app.state.queue
    if not queue.cancel(job):
        raise HTTPException(409, f"job {job.id} has already finished ({job.status}); nothing to cancel")
    return JSONResponse(describe_job(request, job), status_code=202)


async def get_job_file(request: Request) -> Response:
    job = _job(request)
    return job_file(job, request.path_params["path"], listing=f"GET /v1/jobs/{job.id}", config=server_config(request))
