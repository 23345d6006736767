"""``storysdk batch``: many stories over the processes that ``accelerate launch`` starts.

Each story renders into ``OUT/<id>/`` (the same folder ``storysdk run`` writes) and its
status goes to ``OUT/<id>/batch.json``; at the end every process's records are gathered with
``accelerate.utils.gather_object`` and the main process writes ``OUT/results.jsonl``, one line
per story in input order. A failed story is recorded and the others still run; running the
same command again skips stories that are done (same story text, seed and options) and runs
the others, resuming their folders.

How the work is spread: the main process reads the stories file and the earlier records and
broadcasts them; every process then takes every ``num_processes``-th *pending* story. This
static split needs no shared folder, no locks and no coordinator, so it works across
machines that share nothing but accelerate's process group; its cost is that stories of
very different length can leave a process idle at the end (dynamic claiming would need a
shared folder or a work queue on the main process). Only the main process needs the stories
file and the story files; relative image paths inside story files must exist on every machine.

Devices: each process gives its components its accelerate device (``PartialState().device``,
``cuda:<local rank>`` under a multi-GPU launch) unless ``defaults`` names one. Launched with
several processes on a machine without an accelerator, the processes run on CPU with gloo.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .batchfile import BatchEntry, load_batch_file
from .cliargs import add_limit_arguments, add_runtime_arguments, limits_from_args, runtime_options
from .errors import ConfigError, OutputFolderError
from .interfaces import ProgressCallback
from .limits import Limits
from .progress import ProgressBar

__all__ = ["BatchResult", "StoryRecord", "add_parser", "run_batch"]

RECORD_FILE = "batch.json"
RESULTS_FILE = "results.jsonl"
TRACEBACK_CHARS = 4000


@attrs.define
class StoryRecord:
    """The status of one story of a batch (``OUT/<id>/batch.json``, one line of ``results.jsonl``)."""

    id: str
    status: str
    fingerprint: str
    rank: int = 0
    host: str = ""
    device: str = ""
    started: float = 0.0
    seconds: float = 0.0
    files: dict[str, list[str]] = attrs.field(factory=dict)
    error: str = ""
    error_type: str = ""
    traceback: str = ""
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-able data."""
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoryRecord:
        """A record from :meth:`to_dict` data (unknown keys are ignored)."""
        names = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@attrs.define
class BatchResult:
    """Every story's record in input order (stories done earlier have ``skipped=True``)."""

    records: list[StoryRecord]
    out_dir: Path
    rank: int = 0
    num_processes: int = 1

    @property
    def done(self) -> list[StoryRecord]:
        """Stories rendered by this run."""
        return [r for r in self.records if r.status == "done" and not r.skipped]

    @property
    def skipped(self) -> list[StoryRecord]:
        """Stories finished by an earlier run and not rendered again."""
        return [r for r in self.records if r.skipped and r.status == "done"]

    @property
    def failed(self) -> list[StoryRecord]:
        """Stories that are not done (with ``retry_failed=False``, earlier failures too)."""
        return [r for r in self.records if r.status != "done"]

    @property
    def results_path(self) -> Path:
        """``OUT/results.jsonl`` (written by the main process)."""
        return self.out_dir / RESULTS_FILE

    @property
    def exit_code(self) -> int:
        """0 when every story is done, 1 when any failed."""
        return 1 if self.failed else 0

    def summary(self) -> str:
        """``"N done, N failed, N skipped"``."""
        return f"{len(self.done)} done, {len(self.failed)} failed, {len(self.skipped)} skipped"


def _json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def _write_record(folder: Path, record: StoryRecord) -> None:
    from .output import atomic_write

    data = record.to_dict()
    data.pop("skipped")
    with atomic_write(folder / RECORD_FILE, "w") as fh:
        fh.write(_json(data) + "\n")


def _read_record(folder: Path) -> StoryRecord | None:
    try:
        data = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
        return StoryRecord.from_dict(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def _accelerator_available() -> bool:
    import torch

    acc = getattr(torch, "accelerator", None)
    if acc is None:
        return bool(torch.cuda.is_available())
    current = acc.current_accelerator() if acc.is_available() else None
    return current is not None and current.type != "mps"  # MPS has no multi-process backend


def _launched_world_size() -> int:
    """How many processes the launcher (torchrun, MPI) says it started; 1 when not launched."""
    from accelerate.utils import get_int_from_env

    return int(get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"], 1))


def _process_state(device: str | None) -> Any:
    """accelerate's ``PartialState``, on CPU (gloo) when launched where no accelerator exists."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    world = _launched_world_size()
    launched = world > 1 or int(os.environ.get("LOCAL_RANK", -1)) != -1
    cpu = (
        parse_flag_from_env("ACCELERATE_USE_CPU")
        or (device is not None and str(device).split(":")[0] == "cpu")
        or (launched and not _accelerator_available())
    )
    state = PartialState(cpu=cpu)
    if state.num_processes != world:
        raise ConfigError(
            f"launched as {world} processes but accelerate set up {state.num_processes} "
            f"({state.distributed_type}); every process would render every story. Launch with "
            "'accelerate launch --num_processes N -m storysdk batch ...' on GPUs, or pass --device cpu"
        )
    return state


def _device_name(state: Any) -> str:
    dev = state.device
    return "cpu" if dev.type == "cpu" else str(dev)


def _run_one(
    entry: BatchEntry,
    prev: StoryRecord | None,
    out: Path,
    *,
    fp: str,
    defaults: dict[str, Any],
    rank: int,
    registry: Any,
    cache: Any,
    progress: ProgressCallback | None,
    limits: Limits | None = None,
) -> StoryRecord:
    from .storyfile import parse_story_file

    folder = out / entry.id
    record = StoryRecord(entry.id, "running", fp, rank=rank, host=socket.gethostname(),
                         device=str(defaults.get("device", "")), started=time.time())
    # a folder the pipeline has not claimed holds at most our batch.json: write into it;
    # a changed story replaces the earlier one's output
    changed = prev is not None and prev.fingerprint != fp
    overwrite = changed or not (folder / "run.json").is_file()
    folder.mkdir(parents=True, exist_ok=True)
    _write_record(folder, record)
    t0 = time.monotonic()
    try:
        sf = parse_story_file(entry.text, base_dir=entry.base_dir, source=entry.source)
        if entry.seed is not None:
            sf.request.seed = entry.seed
        pipe = sf.pipeline(registry=registry, defaults=defaults, cache=cache)
        if limits is not None:
            pipe.limits = limits
        try:
            story = pipe.run(sf.request, out_dir=folder, progress=progress, overwrite=overwrite)
        except OutputFolderError:
            # our own unfinished run of this very story, made with other options (another
            # device): start it over; a folder we know nothing about is left alone
            if overwrite or prev is None:
                raise
            story = pipe.run(sf.request, out_dir=folder, progress=progress, overwrite=True)
        record.status = "done"
        record.files = {
            name: [str(p.relative_to(folder)) if p.is_relative_to(folder) else str(p) for p in paths]
            for name, paths in story.files.items()
        }
    except Exception as exc:  # noqa: BLE001 - a failed story is recorded, the others still run
        record.status = "failed"
        record.error = str(exc)
        record.error_type = type(exc).__name__
        record.traceback = "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:]
    record.seconds = round(time.monotonic() - t0, 3)
    _write_record(folder, record)
    return record


def run_batch(
    stories: str | Path | Sequence[BatchEntry],
    out_dir: str | Path,
    *,
    defaults: Mapping[str, Any] | None = None,
    registry: Any = None,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
    retry_failed: bool = True,
    cache: Any = None,
    limits: Limits | None = None,
) -> BatchResult:
    """Render every story of ``stories`` (a JSON Lines file, or entries) into ``out_dir/<id>/``.

    Call it in every process that ``accelerate launch`` starts (or in a plain process: it
    then does all the work). ``defaults`` are runtime options (``preset``, ``dtype``,
    ``device``; without ``device`` each process uses its accelerate device): each story's
    pipeline gives them to the components that take them and skips the others.
    ``retry_failed=False`` leaves stories that failed before (and did not change) alone.
    ``cache`` is the :class:`~storysdk.cache.ComponentCache` the stories share (default: a
    new one holding up to 16 components). ``limits`` bound every story (default:
    :class:`~storysdk.limits.Limits`' defaults). ``log`` receives one line per story.
    Raises :class:`ConfigError` for a bad stories file; a story that fails is recorded in its
    :class:`StoryRecord` instead.
    """
    from accelerate.utils import broadcast_object_list, gather_object

    from .cache import ComponentCache

    out = Path(out_dir)
    opts = dict(defaults or {})
    state = _process_state(opts.get("device"))
    rank, world = state.process_index, state.num_processes
    fp_opts = {k: v for k, v in opts.items() if k != "device"}  # any process may render any story

    payload: list[Any] = [None]
    failure: Exception | None = None
    if state.is_main_process:
        try:
            entries = list(stories) if not isinstance(stories, (str, Path)) else load_batch_file(stories)
            ids = [e.id.lower() for e in entries]
            if len(set(ids)) != len(ids):
                raise ConfigError("two stories have the same id (ids are compared ignoring case); give each its own")
            previous = {e.id: _read_record(out / e.id) for e in entries}
            payload = [{"entries": entries, "previous": previous}]
        except Exception as exc:  # noqa: BLE001 - the other processes must hear of it, not hang
            failure, payload = exc, [{"error": f"the main process stopped: {type(exc).__name__}: {exc}"}]
    payload = broadcast_object_list(payload)
    if failure is not None:
        raise failure
    if "error" in payload[0]:
        raise ConfigError(payload[0]["error"])
    entries, previous = payload[0]["entries"], payload[0]["previous"]

    def finished(e: BatchEntry) -> bool:
        p = previous[e.id]
        if p is None or p.fingerprint != e.fingerprint(fp_opts):
            return False
        return p.status == "done" or (p.status == "failed" and not retry_failed)

    pending = [e for e in entries if not finished(e)]
    mine = pending[rank::world]
    run_opts = {**opts, "device": opts.get("device") or _device_name(state)}
    cache = cache if cache is not None else ComponentCache(max_entries=16)
    records: list[dict[str, Any]] = []
    for entry in mine:
        if log is not None:
            log(f"story {entry.id}: started")
        rec = _run_one(entry, previous[entry.id], out, fp=entry.fingerprint(fp_opts), defaults=run_opts,
                       rank=rank, registry=registry, cache=cache, progress=progress, limits=limits)
        if log is not None:
            tail = f": {rec.error_type}: {rec.error.splitlines()[0] if rec.error else ''}" if rec.error_type else ""
            log(f"story {entry.id}: {rec.status} in {rec.seconds:.1f}s{tail}")
        records.append(rec.to_dict())

    ran = {d["id"]: StoryRecord.from_dict(d) for d in gather_object(records)}
    merged: list[StoryRecord] = []
    for e in entries:
        if e.id in ran:
            merged.append(ran[e.id])
        else:
            merged.append(attrs.evolve(previous[e.id], skipped=True))
    if state.is_main_process:
        from .output import atomic_write

        for rec in ran.values():  # stories rendered on machines that do not share this folder
            if _read_record(out / rec.id) != rec:
                _write_record(out / rec.id, rec)
        with atomic_write(out / RESULTS_FILE, "w") as fh:
            fh.writelines(_json(r.to_dict()) + "\n" for r in merged)
    state.wait_for_everyone()
    return BatchResult(merged, out, rank=rank, num_processes=world)


# -- the command ----------------------------------------------------------------------------
def _cmd_batch(args: argparse.Namespace) -> int:
    import sys

    defaults = runtime_options(args)
    world = _launched_world_size()
    bar = ProgressBar() if not args.quiet and world == 1 else None

    def log(line: str) -> None:
        if bar is not None:
            bar.close()
        prefix = f"[rank {os.environ.get('RANK', '0')}] " if world > 1 else ""  # RANK is set by now
        print(prefix + line, file=sys.stderr, flush=True)

    try:
        result = run_batch(args.stories, args.out, defaults=defaults, progress=bar,
                           log=None if args.quiet else log, retry_failed=not args.skip_failed,
                           limits=limits_from_args(args))
    finally:
        if bar is not None:
            bar.close()
    if result.rank == 0:
        for rec in result.failed:
            first = rec.error.splitlines()[0] if rec.error else "(no error recorded)"
            print(f"failed: {rec.id}: {rec.error_type}: {first}", file=sys.stderr)
        print(f"batch: {result.summary()}; results: {result.results_path}")
    from accelerate import PartialState

    PartialState().destroy_process_group()
    return result.exit_code


def add_parser(subparsers: Any) -> None:
    """Add the ``batch`` subcommand to the ``storysdk`` command's subparsers."""
    p = subparsers.add_parser(
        "batch",
        help="render many stories, spread over the processes 'accelerate launch' starts",
        description="Render every story of a JSON Lines file into OUT/<id>/; run it with "
        "'accelerate launch [--num_processes N] -m storysdk batch ...' to spread the stories over "
        "GPUs and machines. Exit status: 0 all done, 1 some story failed, 2 bad arguments or stories file.",
    )
    p.add_argument("stories", help="stories file: one JSON object per line, "
                   '{"id": ..., "story": "file.toml"} or {"id": ..., "toml": "..."}, optional "seed"')
    p.add_argument("--out", required=True, help="output folder: OUT/<id>/ per story, OUT/results.jsonl")
    add_runtime_arguments(p, device="device for every process (default: each process's accelerate device)")
    add_limit_arguments(p)
    p.add_argument("--skip-failed", action="store_true",
                   help="do not retry stories that failed before and did not change")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_batch)
