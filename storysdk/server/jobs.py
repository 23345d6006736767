"""Jobs and the bounded queue that runs them on a fixed number of worker threads.

The GPU (or CPU) does one job per worker at a time; requests beyond that wait in a queue of
``max_queued`` places, and a request that finds the queue full is refused with
:class:`~storysdk.errors.BusyError` (the server answers 429) instead of starting another
model run that would run the device out of memory. Each worker keeps its own
:class:`WorkerContext` for its whole life, with a :class:`~storysdk.cache.ComponentCache`,
so the components that jobs build, and the models they load, stay loaded from one job to the
next. Story jobs and the jobs of plugin endpoints share the queue and the workers.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ..cache import ComponentCache
from ..errors import BusyError, ConfigError, JobCancelled, StorySDKError
from ..interfaces import ProgressEvent

if TYPE_CHECKING:
    from ..interfaces import Component
    from ..registry import ComponentInfo

__all__ = ["Job", "JobQueue", "JobStatus", "WorkerCache", "WorkerContext"]

log = logging.getLogger("storysdk.server")

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: tuple[JobStatus, ...] = ("done", "failed", "cancelled")


class WorkerCache(ComponentCache):
    """A :class:`~storysdk.cache.ComponentCache` that can also say what it holds (for ``GET /v1/status``)."""

    def __init__(self, max_entries: int | None = None) -> None:
        super().__init__(max_entries)
        self._held: OrderedDict[tuple[str, str, str, str], str] = OrderedDict()
        self._held_lock = threading.Lock()

    def get(self, kind: str, info: ComponentInfo, options: Mapping[str, Any]) -> Component:
        component = super().get(kind, info, options)
        try:
            key = (kind, info.plugin, info.name, json.dumps(dict(options), sort_keys=True, allow_nan=False))
        except (TypeError, ValueError):
            return component  # not kept by the cache either
        with self._held_lock:  # the same least-recently-used order as the cache's own
            self._held[key] = f"{kind} {info.name}"
            self._held.move_to_end(key)
            while self.max_entries is not None and len(self._held) > self.max_entries:
                self._held.popitem(last=False)
        return component

    def held(self) -> list[str]:
        """``"kind name"`` of every kept component, least recently used first."""
        with self._held_lock:
            return list(self._held.values())

    def clear(self) -> None:
        super().clear()
        with self._held_lock:
            self._held.clear()


@attrs.define(eq=False)
class WorkerContext:
    """What one worker thread keeps between jobs; a job's work receives it.

    - ``index``: the worker's number (0, 1, ...);
    - ``defaults``: the runtime options of this worker (``preset``, ``device``, ``dtype``,
      ``offload``, from the server's settings): give them to a pipeline as
      ``Pipeline(..., runtime=ctx.defaults)``;
    - ``cache``: the worker's :class:`~storysdk.cache.ComponentCache`: give it to a pipeline as
      ``Pipeline(..., cache=ctx.cache)`` so that its components, and their loaded models, are
      reused by the next jobs on this worker.
    """

    index: int
    defaults: dict[str, Any] = attrs.field(factory=dict)
    cache: WorkerCache = attrs.field(factory=WorkerCache)


#: A job's work: called on a worker thread with the job (for progress) and the worker's context.
Work = Callable[["Job", WorkerContext], Any]


class Job:
    """One unit of work: its status, latest progress, error or result, and a future to await.

    ``kind`` names the endpoint that made it (``"story"``, or a plugin endpoint's own kind);
    ``folder`` is where its files go (``GET /v1/jobs/{id}/files/{path}`` serves them);
    ``info`` is extra JSON data shown with the job; ``key``, when given, identifies the work:
    a job submitted while another job of the same kind and key is queued or running is not
    queued again, :meth:`JobQueue.submit` returns the one already there (unless that one is
    being cancelled: then the new one is queued, and starts once the other has stopped). ``work(job, ctx)``
    runs on a worker thread; it reports progress through :meth:`report` (which raises
    :class:`~storysdk.errors.JobCancelled` once the job is cancelled) and returns the result
    (a dict is shown as the job's ``result``).
    """

    def __init__(
        self,
        kind: str,
        work: Work,
        *,
        folder: Path | None = None,
        info: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.kind = kind
        self.key = key
        self.work = work
        self.folder = folder
        self.info = dict(info or {})
        self.status: JobStatus = "queued"
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.progress: dict[str, Any] | None = None
        self.events = 0
        self.error: dict[str, str] | None = None
        self.result: Any = None
        self.worker: int | None = None
        self.future: Future[Any] = Future()
        self._cancel = threading.Event()
        self._lock = threading.Lock()

    # -- on the worker ---------------------------------------------------------------------
    def report(self, event: ProgressEvent) -> None:
        """A progress callback for :meth:`Pipeline.run`: records ``event``; raises when cancelled."""
        if self._cancel.is_set():
            raise JobCancelled(f"job {self.id} was cancelled; the files written so far are kept")
        with self._lock:
            self.progress = attrs.asdict(event)
            self.events += 1

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> bool:
        """Ask the job to stop: a queued job never starts, a running one stops at its next progress report.

        Returns ``False`` when the job had already finished.
        """
        with self._lock:
            if self.status in FINISHED:
                return False
            self._cancel.set()
            return True

    def _finish(
        self,
        status: JobStatus,
        *,
        result: Any = None,
        error: BaseException | None = None,
        public: Callable[[str], str] | None = None,
    ) -> None:
        """Record the outcome; an error is shown as its type and message, the message through
        ``public`` (the server's redaction of its own paths). Its traceback goes to the log only."""
        with self._lock:
            self.status = status
            self.finished = time.time()
            self.result = result
            if error is not None:
                message = str(error)
                self.error = {"type": type(error).__name__, "message": public(message) if public else message}
                try:
                    error.storysdk_job = self.id  # type: ignore[attr-defined]  # answers name the job
                except (AttributeError, TypeError):
                    pass
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result)

    def to_dict(self) -> dict[str, Any]:
        """The job as JSON-able data (what ``GET /v1/stories/{id}`` answers)."""
        with self._lock:
            data: dict[str, Any] = {
                "id": self.id,
                "kind": self.kind,
                "status": self.status,
                "created": self.created,
                "started": self.started,
                "finished": self.finished,
                "worker": self.worker,
                "progress": self.progress,
                "events": self.events,
                "error": self.error,
                "cancel_requested": self._cancel.is_set() and self.status not in FINISHED,
            }
        data.update(self.info)
        return data


class JobQueue:
    """``workers`` threads taking jobs from a queue of at most ``max_queued`` waiting jobs.

    ``make_context(i)`` builds worker ``i``'s :class:`WorkerContext` (on that worker's thread,
    when it starts). Finished jobs are kept for lookup, the oldest dropped past ``max_kept``.
    A failed job's error is logged with its traceback (logger ``storysdk.server``); the job
    shows its type and its message, through ``public`` (the server hides its own paths there).
    """

    def __init__(
        self,
        *,
        workers: int = 1,
        max_queued: int = 8,
        make_context: Callable[[int], WorkerContext] | None = None,
        max_kept: int = 256,
        public: Callable[[str], str] | None = None,
    ) -> None:
        for name, value, low in (("workers", workers, 1), ("max_queued", max_queued, 0), ("max_kept", max_kept, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
        self.workers = workers
        self.max_queued = max_queued
        self.max_kept = max_kept
        self._make_context = make_context or (lambda i: WorkerContext(i))
        self._public = public
        self._pending: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._contexts: dict[int, WorkerContext] = {}
        self._running: dict[int, Job] = {}
        self._stopping = False

    # -- life --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker threads (once)."""
        with self._cond:
            if self._threads:
                return
            self._stopping = False
            for i in range(self.workers):
                t = threading.Thread(target=self._worker, args=(i,), name=f"storysdk-worker-{i}", daemon=True)
                self._threads.append(t)
                t.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Cancel waiting jobs, ask running ones to stop, and wait up to ``timeout`` s for the workers."""
        with self._cond:
            self._stopping = True
            while self._pending:
                job = self._pending.popleft()
                job.cancel()
                job._finish("cancelled", error=JobCancelled("the server stopped before this job started"))
            for job in self._running.values():
                job.cancel()
            self._cond.notify_all()
            threads, self._threads = self._threads, []
        for t in threads:
            t.join(timeout)

    # -- jobs --------------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        """Queue ``job`` and return it; :class:`BusyError` when ``max_queued`` jobs are already waiting.

        When a queued or running job (not being cancelled) has the same kind and
        :attr:`Job.key`, ``job`` is not queued and that job is returned instead.
        """
        with self._cond:
            same = self._same_work(job)
            if same is not None:
                return same
            if self._stopping:
                raise BusyError("the server is shutting down; send the request to another instance or retry later")
            if len(self._pending) >= self.max_queued:
                raise BusyError(
                    f"all {self.workers} worker(s) are busy and the queue is full ({self.max_queued} waiting); "
                    "retry later (the server's --max-queue sets the queue length)"
                )
            self._pending.append(job)
            self._jobs[job.id] = job
            self._forget_old()
            self._cond.notify_all()
        return job

    def _same_work(self, job: Job) -> Job | None:
        if job.key is None:
            return None
        for other in self._jobs.values():
            unfinished = other.status not in FINISHED and not other.cancel_requested
            if unfinished and other.kind == job.kind and other.key == job.key:
                return other
        return None

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def jobs(self, kind: str | None = None) -> list[Job]:
        with self._cond:
            return [j for j in self._jobs.values() if kind is None or j.kind == kind]

    def position(self, job: Job) -> int | None:
        """0-based place of a waiting job in the queue (``None`` once it has started)."""
        with self._cond:
            for i, j in enumerate(self._pending):
                if j is job:
                    return i
        return None

    def cancel(self, job: Job) -> bool:
        """Cancel ``job``: a waiting job is finished as cancelled at once; see :meth:`Job.cancel`."""
        with self._cond:
            if not job.cancel():
                return False
            if job in self._pending:
                self._pending.remove(job)
                job._finish("cancelled", error=JobCancelled(f"job {job.id} was cancelled before it started"))
        return True

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "workers": self.workers,
                "running": len(self._running),
                "queued": len(self._pending),
                "max_queued": self.max_queued,
                "cached_components": {i: c.cache.held() for i, c in self._contexts.items()},
            }

    def _next_job(self) -> Job | None:
        """The first waiting job that may start: two jobs of one kind and key never run at once
        (they share an output folder); one waits until the other has stopped."""
        busy = {(j.kind, j.key) for j in self._running.values() if j.key is not None}
        for job in self._pending:
            if job.key is None or (job.kind, job.key) not in busy:
                self._pending.remove(job)
                return job
        return None

    def _forget_old(self) -> None:
        excess = len(self._jobs) - self.max_kept
        for job_id in [j.id for j in self._jobs.values() if j.status in FINISHED][: max(excess, 0)]:
            del self._jobs[job_id]

    # -- the workers -------------------------------------------------------------------------
    def _worker(self, index: int) -> None:
        ctx = self._make_context(index)
        with self._cond:
            self._contexts[index] = ctx
        while True:
            with self._cond:
                job = None
                while not self._stopping and (job := self._next_job()) is None:
                    self._cond.wait()
                if self._stopping or job is None:
                    return
                job.status, job.started, job.worker = "running", time.time(), index
                self._running[index] = job
            try:
                if job.cancel_requested:
                    raise JobCancelled(f"job {job.id} was cancelled before it started")
                result = job.work(job, ctx)
            except JobCancelled as exc:
                job._finish("cancelled", error=exc, public=self._public)
            except Exception as exc:  # noqa: BLE001 - recorded on the job; the worker goes on
                if isinstance(exc, StorySDKError):
                    log.warning("job %s (%s) failed: %s: %s", job.id, job.kind, type(exc).__name__, exc)
                else:
                    log.error("job %s (%s) failed", job.id, job.kind, exc_info=exc)
                job._finish("failed", error=exc, public=self._public)
            else:
                job._finish("done", result=result)
            finally:
                with self._cond:
                    self._running.pop(index, None)
                    self._cond.notify_all()  # a job waiting for this one's key may start now
