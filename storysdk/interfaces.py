"""The four extension points: Planner, Tokenizer, Generator, Composer.

Each is a base class with **one** abstract method and capability flags as class
attributes, in the style of ``llm.Model.execute`` and ``httpx.BaseTransport``. A
component is constructed with keyword options (``Generator(steps=4, preset="tiny")``);
the registry and story files pass options the same way.

Example, a complete generator::

    class Solid(Generator):
        name = "solid"
        modality = "image"

        def generate(self, scenes, ctx):
            for scene in scenes:
                rng = random.Random(ctx.scene_seed(scene))
                colour = tuple(rng.randrange(256) for _ in range(3))
                yield ImageAsset(scene.index, Image.new("RGB", (64, 64), colour), made_by=self.name)
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs

from .model import Asset, Cue, Modality, Scene, Story, StoryPlan, StoryRequest, Tokens
from .options import Options, validate_options

__all__ = [
    "Component",
    "Composer",
    "Generator",
    "PlanContext",
    "Planner",
    "ProgressCallback",
    "ProgressEvent",
    "RenderContext",
    "StepContext",
    "Tokenizer",
    "TrackContext",
    "derive_seed",
]


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from ``seed`` and ``parts`` (stable across runs and platforms).

    The pipeline gives every scene its own seed this way, so a scene renders the same
    whether it is rendered alone, in a batch, or after a resume.
    """
    text = "\x1f".join([str(int(seed))] + [str(p) for p in parts])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


@attrs.define(frozen=True)
class ProgressEvent:
    """One progress report: ``stage`` is plan/tokenize/generate/compose (the pipeline's) or
    ``step`` (a component's own ``ctx.report``: denoising steps, tokens), ``done`` of ``total``."""

    stage: str
    component: str
    done: int
    total: int
    scene_index: int | None = None
    message: str = ""
    #: What ``scene_index`` counts: ``"scene"``, or ``"cue"`` for a track planner's cues.
    unit: str = "scene"


#: The pipeline's progress callback. It may raise to stop the run: the server's jobs raise
#: :class:`~storysdk.errors.JobCancelled` from it once a job is cancelled.
ProgressCallback = Callable[[ProgressEvent], None]


def _report(
    progress: ProgressCallback | None, component: str, done: int, total: int, scene_index: int | None, message: str
) -> None:
    if progress is not None:
        progress(ProgressEvent("step", component, int(done), int(total), scene_index, message))


@attrs.define(eq=False)
class RenderContext:
    """What a tokenizer or generator gets besides its scenes: the plan and the story seed.

    :meth:`report` is both the progress channel and the **cancellation point**: the
    pipeline's callback raises from it to stop a run (a cancelled server job raises
    :class:`~storysdk.errors.JobCancelled`). Call it at every denoising step and before every
    long model call, let what it raises propagate (clean up in ``finally``), and yield each
    asset as soon as it exists, so that a cancelled run keeps everything finished before.
    """

    plan: StoryPlan
    seed: int = 0
    component: str = ""
    progress: ProgressCallback | None = None
    story: Story | None = None
    #: The track being rendered (``""`` outside a pipeline). ``plan.scenes`` are that track's
    #: cues (:class:`~storysdk.model.Cue`), the story's other fields unchanged.
    track: str = ""

    def scene_seed(self, scene: Scene | int, *salt: object) -> int:
        """The seed of one scene; independent of which other scenes are rendered with it."""
        index = scene.index if isinstance(scene, Scene) else int(scene)
        return derive_seed(self.seed, "scene", index, *salt)

    def finished(self, modality: Modality = "image") -> dict[int, Asset]:
        """The assets already made on this context's track, by cue index (a resumed run's,
        loaded from the folder); outside a track, the story's assets of ``modality``."""
        if self.story is None:
            return {}
        if self.track and self.track in self.story.tracks:
            return dict(self.story.tracks[self.track].assets)
        return self.story.assets(modality)

    def report(self, done: int, total: int, scene_index: int | None = None, message: str = "") -> None:
        """Report step-level progress (``done`` of ``total`` denoising steps, ...) as a ``"step"`` event.

        The pipeline's callback may raise here to cancel the run: do not catch it.
        """
        _report(self.progress, self.component, done, total, scene_index, message)


@attrs.define(eq=False)
class PlanContext:
    """What a planner gets while it writes the plan: the request and the progress channel.

    The pipeline plans through :meth:`Planner.plan_with`. A planner whose planning takes long
    (an LLM writing the plan token by token) reports through :meth:`report` at each token;
    like :meth:`RenderContext.report` it is the cancellation point.
    """

    request: StoryRequest
    component: str = ""
    progress: ProgressCallback | None = None

    def report(self, done: int, total: int, scene_index: int | None = None, message: str = "") -> None:
        """Report ``done`` of ``total`` (tokens, ...) as a ``"step"`` event; may raise to cancel the run."""
        _report(self.progress, self.component, done, total, scene_index, message)


@attrs.define(eq=False)
class TrackContext:
    """What a track planner gets: the request, the story plan, the story's clock and the track.

    ``timeline`` (a :class:`storysdk.timeline.Timeline`) holds every scene's start and duration;
    the cues :meth:`Planner.plan_track` returns go on that clock. :meth:`text` is the track's
    ``text`` template filled for a scene (``None``: the scene has no text for this track and
    gets no cue). ``seed`` is the track's seed (its ``seed`` setting, else the story's), for a
    planner that samples. :meth:`report` is the progress channel and cancellation point, as
    :meth:`RenderContext.report`.
    """

    request: StoryRequest
    plan: StoryPlan
    timeline: Any
    track: str
    template: str = "{prompt}"
    component: str = ""
    progress: ProgressCallback | None = None
    seed: int = 0

    def text(self, scene: Scene) -> str | None:
        from .tracks import render_text

        return render_text(self.template, scene)

    def report(self, done: int, total: int, scene_index: int | None = None, message: str = "") -> None:
        """Report ``done`` of ``total`` as a ``"step"`` event; may raise to cancel the run."""
        _report(self.progress, self.component, done, total, scene_index, message)


@attrs.define(eq=False)
class StepContext:
    """What an interleaved planner sees when asked for the next scene.

    ``plan`` holds the scenes so far (with their tokens), ``story`` the assets made so far,
    and ``state`` is a dict that lives for one run only: the planner keeps caches there
    (a KV cache, a conversation), never on itself or in module globals. :meth:`report` sends
    step-level progress (tokens decoded) and is the cancellation point, as
    :meth:`RenderContext.report`; the pipeline fills ``component`` and ``progress``.
    """

    request: StoryRequest
    plan: StoryPlan
    story: Story
    state: dict[str, Any] = attrs.field(factory=dict)
    component: str = ""
    progress: ProgressCallback | None = None

    @property
    def next_index(self) -> int:
        return max((s.index for s in self.plan.scenes), default=-1) + 1

    def report(self, done: int, total: int, scene_index: int | None = None, message: str = "") -> None:
        """Report ``done`` of ``total`` (tokens of the next scene, ...) as a ``"step"`` event; may raise to cancel."""
        _report(self.progress, self.component, done, total, scene_index, message)


class Component:
    """Shared by all four kinds: a registered ``name``, capability flags and declared options.

    ``needs_gpu``: too slow to be useful without one (the tiny preset still runs on CPU).
    ``tiny_preset``: accepts ``preset="tiny"`` (offline, seeded random weights).
    ``Options``: the declared options (:class:`storysdk.options.Options`); the constructor
    validates its keyword arguments against it and keeps the result as ``self.options``.
    A subclass that overrides ``__init__`` calls ``super().__init__(**options)`` first.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    needs_gpu: ClassVar[bool] = False
    tiny_preset: ClassVar[bool] = False
    description: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    options: Options

    def __init__(self, **options: Any) -> None:
        self.options = validate_options(type(self).Options, options, kind=self.kind, name=self.name)

    def capabilities(self) -> dict[str, Any]:
        return capabilities_of(type(self))

    def check_plan(self, plan: StoryPlan) -> None:
        """Refuse a plan this component cannot render, before any model is loaded.

        The pipeline calls it on every component once the plan exists (and again after each
        step of an interleaved planner). Raise a :class:`~storysdk.errors.ConfigError` (or a
        subclass) naming what is wrong and the fix; the default accepts every plan. Rules of
        one method live here, in its own component: StoryDiffusion's id frames, for example.
        """


def capabilities_of(cls: type) -> dict[str, Any]:
    """The capability flags a component class declares, as plain data."""
    caps: dict[str, Any] = {"needs_gpu": cls.needs_gpu, "tiny_preset": cls.tiny_preset}
    for flag in ("modality", "batching", "needs_whole_plan", "interleaved", "plans_tracks", "produces", "consumes",
                 "requires"):
        if hasattr(cls, flag):
            value = getattr(cls, flag)
            caps[flag] = list(value) if isinstance(value, tuple) else value
    return caps


class Planner(Component, ABC):
    """Turns a :class:`StoryRequest` into a :class:`StoryPlan`.

    A planner with ``interleaved = True`` (SEED-Story's shape) may return a plan with only
    the opening scenes from :meth:`plan`; the pipeline then calls :meth:`step` after each
    scene is rendered, so the next scene can depend on the assets made so far.
    """

    kind = "planner"
    interleaved: ClassVar[bool] = False
    #: Whether :meth:`plan_track` is implemented: the planner can be a track's planner.
    plans_tracks: ClassVar[bool] = False

    @abstractmethod
    def plan(self, request: StoryRequest) -> StoryPlan:
        """Return the plan (all scenes, or the opening ones for an interleaved planner)."""

    def plan_with(self, request: StoryRequest, ctx: PlanContext) -> StoryPlan:
        """What the pipeline calls to plan: :meth:`plan` (``ctx`` unused) unless a planner overrides it.

        A planner that decodes for long (an LLM) overrides this method to report progress
        through ``ctx.report`` (its cancellation point) and implements ``plan(request)`` as
        ``return self.plan_with(request, PlanContext(request, self.name))``.
        """
        return self.plan(request)

    def step(self, ctx: StepContext) -> Scene | None:
        """Interleaved planners: the next scene given ``ctx``, or ``None`` when the story ends."""
        raise NotImplementedError(f"planner {self.name!r} is not interleaved")

    def plan_track(self, plan: StoryPlan, ctx: TrackContext) -> list[Cue]:
        """Track planners (``plans_tracks = True``): the cues of track ``ctx.track`` for ``plan``.

        Each :class:`~storysdk.model.Cue` has its own ``index`` (unique in the track), the
        ``scene`` it belongs to, and a ``start`` and ``duration`` on ``ctx.timeline``'s clock
        (cues of one scene within that scene's span). Attach the conditioning the track's
        generator needs as the cues' tokens; the pipeline saves them with the cues.
        """
        raise NotImplementedError(f"planner {self.name!r} cannot plan a track's cues")


class Tokenizer(Component, ABC):
    """Turns scenes into the conditioning a generator consumes (:class:`Tokens` of kind ``produces``)."""

    kind = "tokenizer"
    produces: ClassVar[str] = ""

    @abstractmethod
    def tokenize(self, scenes: Sequence[Scene], ctx: RenderContext) -> list[Tokens]:
        """One :class:`Tokens` per scene, in the order of ``scenes``."""


class Generator(Component, ABC):
    """Renders scenes into assets of one ``modality`` (``"image"`` or ``"audio"``).

    ``batching = True`` tells the pipeline to pass all pending scenes in one call (the
    generator chunks them as its memory allows); otherwise it passes one scene per call.
    ``consumes`` lists token kinds the generator uses when present.
    ``generate`` yields each asset as soon as it exists, so the pipeline can save it at once;
    the order of assets may differ from the order of ``scenes``.
    """

    kind = "generator"
    modality: ClassVar[Modality] = "image"
    batching: ClassVar[bool] = False
    #: Whether the generator needs the whole plan before it renders (StoryDiffusion renders a
    #: character's id frames together): under an interleaved planner its track renders once
    #: the story is written; otherwise each scene renders before the planner is stepped again.
    needs_whole_plan: ClassVar[bool] = False
    consumes: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterable[Asset]:
        """Yield one asset per scene; seed each scene from ``ctx.scene_seed(scene)``."""


class Composer(Component, ABC):
    """Lays a finished :class:`Story` out into files (pages, soundtrack, storybook, ...).

    ``requires`` lists the modalities without which the composer has nothing to do; the
    pipeline skips it (with a progress message) when the story has none of them.
    """

    kind = "composer"
    requires: ClassVar[tuple[Modality, ...]] = ()
    #: Options that name tracks, with the modality the track must have (``{"track": "image"}``);
    #: the pipeline checks their values (a name, a list of names, or ``None``) against its tracks
    #: when it is built, before anything renders.
    track_options: ClassVar[dict[str, Modality]] = {}

    @abstractmethod
    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        """Write files under ``out_dir`` and return their paths."""
