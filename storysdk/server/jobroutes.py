"""``/v1/jobs``: every job the server runs, whatever endpoint queued it (story jobs included).

- ``GET /v1/jobs`` (``?kind=story`` keeps one kind): the jobs the server remembers;
- ``GET /v1/jobs/{id}``: one job's status, latest progress, place in the queue, files so far
  and, once done, its result;
- ``GET /v1/jobs/{id}/files/{path}``: one file of the job's folder;
- ``DELETE /v1/jobs/{id}``: cancel (a waiting job at once, a running one at its next progress
  report); the files written so far are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .api import describe_job, job_file, server_config
from .jobs import Job, JobQueue

__all__ = ["JobEndpoints", "cancel_job", "get_job", "get_job_file", "list_jobs"]


class JobEndpoints:
    """The four job endpoints (list, get, cancel, one file) for jobs of ``kind`` (``None``: any).

    ``/v1/jobs`` serves every kind; ``/v1/stories`` is the same four for story jobs, shown by
    its own ``describe``. ``what`` names the jobs in a 404 ("job", "story job").
    """

    def __init__(
        self,
        *,
        kind: str | None = None,
        what: str = "job",
        prefix: str = "/v1/jobs",
        describe: Callable[[Request, Job], dict[str, Any]] = describe_job,
    ) -> None:
        self.kind, self.what, self.prefix, self.describe = kind, what, prefix, describe

    def job(self, request: Request) -> Job:
        queue: JobQueue = request.app.state.queue
        job = queue.get(request.path_params["job_id"])
        if job is None or (self.kind is not None and job.kind != self.kind):
            raise HTTPException(
                404, f"no {self.what} {request.path_params['job_id']!r} (finished jobs are forgotten after a while)"
            )
        return job

    async def list(self, request: Request) -> Response:
        queue: JobQueue = request.app.state.queue
        kind = self.kind if self.kind is not None else (request.query_params.get("kind") or None)
        return JSONResponse({"jobs": [self.describe(request, j) for j in queue.jobs(kind)]})

    async def get(self, request: Request) -> Response:
        return JSONResponse(self.describe(request, self.job(request)))

    async def cancel(self, request: Request) -> Response:
        job = self.job(request)
        queue: JobQueue = request.app.state.queue
        if not queue.cancel(job):
            raise HTTPException(409, f"job {job.id} has already finished ({job.status}); nothing to cancel")
        return JSONResponse(self.describe(request, job), status_code=202)

    async def file(self, request: Request) -> Response:
        job = self.job(request)
        return job_file(job, request.path_params["path"], listing=f"GET {self.prefix}/{job.id}",
                        config=server_config(request))


_jobs = JobEndpoints()
list_jobs = _jobs.list
get_job = _jobs.get
cancel_job = _jobs.cancel
get_job_file = _jobs.file
