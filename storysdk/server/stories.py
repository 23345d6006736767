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
  progress report, which every generator makes at each denoising step). Files written so far are kept.

Everything is checked before the job is queued (:func:`prepare_story`), so a bad story never
takes a queue place: the TOML, every ``[story]`` field, the components and their options, the
tracks' (``[tracks.<name>]``: generator, track planner, tokenizers) included (models and fonts
only by the operator's names: :mod:`.choices`), ``[timing]`` and ``[mix]``, the server's
:class:`~storysdk.limits.Limits` on the request and the options and, for a planner that needs no
model (the script planner), the plan itself (frame lines, id frames, the scene count). No
model is loaded for that. A story sent to a server may embed images only as ``data:`` URIs:
paths would read the server's own files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ConfigError
from ..limits import Limits
from ..model import StoryRequest
from ..options import DeviceOptions
from ..pipeline import Pipeline
from ..registry import Registry
from ..storyfile import parse_story_file
from .api import describe_job, job_root, read_fields, server_config, server_registry, submit_job
from .choices import check_story_tracks
from .config import ServerConfig
from .fields import content_type
from .jobroutes import JobEndpoints
from .jobs import Job, WorkerContext
from .redact import redact

__all__ = ["PreparedStory", "cancel_story", "get_story", "list_stories", "prepare_story", "story_file", "submit_story"]

TOML_TYPES = ("application/toml", "text/x-toml", "text/toml", "text/plain")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


async def _story_text(request: Request) -> tuple[str, int | None]:
    media, _ = content_type(request)
    if media in TOML_TYPES:
        body = await request.body()
        try:
            return body.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            raise HTTPException(400, f"the story file is not UTF-8 text (byte {exc.start}); send UTF-8") from None
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
    text = str(seed).strip()
    if not text.isdigit() or len(text) > 20:
        raise ConfigError(f"field 'seed' must be a whole number from 0 to 2**64 - 1, got {_shown(seed)}")
    return str(story), int(text)


def _check_no_paths(request: StoryRequest) -> None:
    refs = [("start_image", request.start_image)]
    if isinstance(request.characters, list):
        refs += [(f"characters[{c.name}].reference_image", c.reference_image) for c in request.characters]
    for where, value in refs:
        if isinstance(value, (str, Path)) and not str(value).startswith("data:"):
            raise ConfigError(
                f"[story] {where} is a file path ({_shown(str(value))}); a story sent to the server must embed "
                "its images as data: URIs (data:image/png;base64,...)"
            )


@attrs.frozen
class PreparedStory:
    """A story file checked for the server: the request, the component tables and ``[defaults]`` it runs
    with (model and font names replaced by the operator's paths), and what was found before queueing."""

    request: StoryRequest
    tables: dict[str, list[dict[str, Any]]]
    defaults: dict[str, Any]
    scenes: int | None  # the planned scene count (None: the planner needs its model, it plans on the worker)
    weights: dict[str, str]
    tracks: dict[str, dict[str, Any]] | None = None  # the [tracks.<name>] tables (None: [[generators]])
    timing: dict[str, Any] = attrs.field(factory=dict)
    mix: dict[str, Any] = attrs.field(factory=dict)
    modalities: dict[str, str] = attrs.field(factory=dict)  # each track's modality, in the pipeline's order

    def pipeline(self, registry: Registry, runtime: dict[str, Any], limits: Limits, cache: Any = None) -> Pipeline:
        """The pipeline that runs the story (``runtime``: the worker's settings, which win over ``[defaults]``)."""
        own = {k: v for k, v in self.defaults.items() if k not in runtime}
        return Pipeline(
            planner=self.tables["planner"][0],
            tokenizers=self.tables["tokenizer"],
            generators=self.tables["generator"],
            composers=self.tables["composer"],
            tracks=self.tracks,
            timing=self.timing,
            mix=self.mix,
            registry=registry,
            defaults=own,
            runtime=runtime,
            cache=cache,
            limits=limits,
        )


def _plans_without_a_model(pipe: Pipeline) -> bool:
    planner = pipe.planner
    caps = planner.capabilities() if hasattr(planner, "capabilities") else {}
    model_backed = (
        isinstance(getattr(planner, "options", None), DeviceOptions)
        or bool(getattr(planner, "needs_gpu", False))
        or bool(getattr(planner, "tiny_preset", False))
        or bool(caps.get("interleaved", getattr(planner, "interleaved", False)))
    )
    return not model_backed


def prepare_story(text: str, seed: int | None, config: ServerConfig, registry: Registry) -> PreparedStory:
    """Check a story file sent to the server, before it is queued (see the module); loads no model.

    Raises :class:`~storysdk.errors.ConfigError` (a :class:`~storysdk.limits.LimitError` for a
    limit), answered 422.
    """
    sf = parse_story_file(text, source="the story file")
    request = sf.request
    if seed is not None:
        request.seed = seed  # checked when set: a seed out of range is a ConfigError
    _check_no_paths(request)
    tables = {"planner": [sf.planner], "tokenizer": sf.tokenizers, "generator": sf.generators, "composer": sf.composers}
    config.limits.check_tracks(sf.tracks if sf.tracks is not None else sf.generators)  # before any is built
    tables, tracks, defaults = check_story_tracks(tables, sf.tracks, sf.defaults, config, registry)
    config.limits.check_request(request)  # before any component is built
    prepared = PreparedStory(request, tables, defaults, None, {}, tracks, dict(sf.timing), dict(sf.mix))
    pipe = prepared.pipeline(registry, dict(config.defaults), config.limits)  # options checked, limits on them
    scenes = None
    if _plans_without_a_model(pipe):
        plan = pipe.plan(request)  # frame lines, the scenes limit
        pipe.check_plan(plan)  # what every component needs of the plan (id frames, sizes)
        scenes = len(plan.scenes)
    named = {"model": config.models, "font": config.fonts}
    weights = {k: redact(v, out_dir=config.out_dir, named=named) for k, v in pipe.weights().items()}
    return attrs.evolve(prepared, scenes=scenes, weights=weights,
                        modalities={name: t.modality for name, t in pipe.tracks.items()})


def _describe(request: Request, job: Job) -> dict[str, Any]:
    data = describe_job(request, job, route="get_story")
    if "result" in data:
        data["outputs"] = data.pop("result")
    return data


async def submit_story(request: Request) -> Response:
    """Check the story file, then queue it (202) or refuse it (4xx) before it takes a queue place."""
    text, seed = await _story_text(request)
    registry = server_registry(request)
    config = server_config(request)
    story = await run_in_threadpool(prepare_story, text, seed, config, registry)
    root = job_root(request, "stories")

    def work(job: Job, ctx: WorkerContext) -> dict[str, list[str]]:
        assert job.folder is not None
        pipe = story.pipeline(registry, ctx.defaults, config.limits, ctx.cache)
        done = pipe.run(story.request, out_dir=job.folder, progress=job.report)
        return {name: [Path(p).relative_to(job.folder).as_posix() for p in paths] for name, paths in done.files.items()}

    info: dict[str, Any] = {"seed": story.request.seed, "weights": story.weights, "tracks": story.modalities}
    if story.scenes is not None:
        info["scenes"] = story.scenes
    job = Job("story", work, info=info)
    job.folder = root / job.id
    submit_job(request, job)
    data = _describe(request, job)
    weights = json.dumps(story.weights, sort_keys=True, ensure_ascii=True)
    return JSONResponse(data, status_code=202, headers={"Location": data["url"], "x-storysdk-weights": weights})


_stories = JobEndpoints(kind="story", what="story job", prefix="/v1/stories", describe=_describe)
list_stories = _stories.list
get_story = _stories.get
cancel_story = _stories.cancel
story_file = _stories.file
