"""The pipeline: a story planner, then tracks on one timeline, then composers (docs/data-flow.md).

A pipeline is a story planner plus named **tracks**. Each track has a generator (any number of
tracks per modality: ``frames``, ``narration``, ``ambience``, ``music``...), optional tokenizers
and optionally its own **track planner** that turns the story plan into the track's cues
(AudioStory's timed sound events); without one a track has one cue per scene. Every scene and
every cue has a start and a duration on one clock, the :class:`~storysdk.timeline.Timeline`,
decided by a :class:`~storysdk.timeline.Timing` policy; composers lay the story out on it.

*Plan, then render*: the planner writes every scene; the track that sets the pace renders first
(timing mode ``track``), then the timeline is fixed, track planners place their cues, and the
other tracks render, side by side where their generators sit on different devices.
*Interleaved* (SEED-Story): the planner writes the opening scenes and is stepped for each next
one; after each scene, the tracks that can render it scene by scene do so before the planner is
stepped again (their pictures may feed back into it); tracks whose generator needs the whole plan
(StoryDiffusion's id frames) and tracks with a track planner render once the story is written.

With ``out_dir`` every asset is saved the moment it exists (``tracks/<name>/``), with the plan,
each track planner's cues and ``timeline.json``; running the same pipeline on the same request
and folder again resumes per track and cue: finished assets are loaded, not rendered again, and
the final files are byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal, Union

import attrs

from .cache import ComponentCache
from .errors import ComponentError, ConfigError, StorySDKError
from .interfaces import (
    Component,
    Composer,
    Generator,
    PlanContext,
    Planner,
    ProgressCallback,
    ProgressEvent,
    RenderContext,
    StepContext,
    Tokenizer,
    TrackContext,
)
from .limits import Limits
from .mixing import Mix
from .model import MODALITIES, AudioAsset, Cue, ImageAsset, Scene, Story, StoryPlan, StoryRequest, Tokens, Track
from .options import suggest, validate_options
from .output import OutputFolder, TrackFolder, atomic_write, fingerprint
from .registry import KINDS, ComponentInfo, Registry, get_registry
from .timeline import Timeline, Timing, check_timing, scene_durations, sounding_seconds
from .tracks import SCENE_FIELDS, TrackSettings, check_template, check_track_name, render_text, split_track_table, validate_settings

__all__ = ["ComponentSpec", "Pipeline", "PipelineTrack", "TrackSpec"]

#: A component given by name, by ``(name, options)``, by ``{"name": ..., **options}``, or as an instance.
ComponentSpec = Union[str, tuple[str, Mapping[str, Any]], Mapping[str, Any], Component]
#: A track: ``{"generator": ComponentSpec, "planner": ..., "tokenizers": [...], **settings}`` (storysdk.tracks).
TrackSpec = Mapping[str, Any]
#: Which tracks render side by side: ``"devices"`` (tracks whose generators sit on different
#: devices), ``True`` (every track in its own thread, also on one device), ``False`` (one by one).
Parallel = Union[bool, Literal["devices"]]

DEFAULT_MAX_SCENES = 64
#: The key of a composer table naming the sub-folder it writes into (not one of its options).
COMPOSER_DIR_KEY = "dir"
#: Folders of the output folder that hold the run's own files (no composer dir may lie inside one).
RESERVED_DIRS = ("tracks", "tokens")


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(note)


class _StartUp:
    """Tracks rendering side by side start up one at a time: a track holds the lock from its start
    until its generator first reports or yields (its models are loaded by then), so that model
    loading, and the lazy imports of diffusers and transformers (which fail when two threads make
    them at once), never run in two threads together. Without threads it is a no-op."""

    def __init__(self, lock: threading.Lock | None) -> None:
        self._lock = lock
        self._held = False

    def __enter__(self) -> _StartUp:
        if self._lock is not None:
            self._lock.acquire()
            self._held = True
        return self

    def open(self) -> None:
        if self._held:
            self._held = False
            assert self._lock is not None
            self._lock.release()

    def __exit__(self, *exc: object) -> None:
        self.open()


class _Stopped(StorySDKError):
    """Raised in a track rendering side by side with one that failed: it stops at its next report."""


@attrs.define(eq=False)
class PipelineTrack:
    """A track of a pipeline: its name, generator, optional track planner and tokenizers, settings."""

    name: str
    generator: Generator
    planner: Planner | None = None
    tokenizers: list[Tokenizer] = attrs.field(factory=list)
    settings: TrackSettings = attrs.field(factory=lambda: TrackSettings())

    @property
    def modality(self) -> str:
        return self.generator.modality

    @property
    def device(self) -> str:
        """The device its generator renders on, as its options say (``auto`` when they do not)."""
        value = getattr(getattr(self.generator, "options", None), "device", None)
        return str(value) if value not in (None, "", "auto") else "auto"

    def components(self) -> list[Component]:
        return [c for c in (self.planner, *self.tokenizers, self.generator) if c is not None]

    def new_track(self) -> Track:
        st = self.settings
        return Track(self.name, self.modality, generator=self.generator.name,  # type: ignore[arg-type]
                     planner=self.planner.name if self.planner is not None else "",
                     gain=st.gain, duck=st.duck, attack=st.attack, release=st.release)


class Pipeline:
    """A story planner, tracks (each with a generator) and composers.

    >>> pipe = Pipeline(planner="script",
    ...                 tracks={"frames": {"generator": ("diffusers-image", {"preset": "tiny"})},
    ...                         "ambience": {"generator": "diffusers-audio", "gain": -6}},
    ...                 composers=["comic", "soundtrack"])                        # doctest: +SKIP
    >>> story = pipe.run(StoryRequest(script="...", seed=1), out_dir="out")   # doctest: +SKIP

    ``generators=[...]`` is the one-track-per-modality shorthand: each generator becomes a track
    named after it. ``tokenizers`` are story tokenizers: they run on the story's scenes (on a
    resume only on the scenes some track still has to render) and every track's cues get their
    scene's tokens, a track planner's cues too. A track's own ``tokenizers`` run on its cues
    first; a kind a cue has only from its scene is theirs to replace. ``timing`` (a
    :class:`~storysdk.timeline.Timing` or its fields) decides each scene's length, ``mix`` (a
    :class:`~storysdk.mixing.Mix` or its fields) the master settings of the soundtrack, and
    ``parallel`` which tracks render side by side (:data:`Parallel`): when one of them fails
    (or the run is interrupted), the others stop at their next report or asset, keeping what
    they finished, and the first real error is raised. A composer table (or the options of a
    ``(name, options)`` spec) may name a ``dir`` to write into: a folder inside the output
    folder, outside ``tracks/`` and ``tokens/``; two composers of one kind need distinct ones.

    ``defaults`` are options given to every named component that declares them
    (``{"preset": "tiny", "steps": 4}``); explicit options win, and a key that no component
    of the pipeline takes is a :class:`ConfigError` with a suggestion. ``runtime`` options
    (the CLI's ``--preset``/``--device``/``--dtype``, a server's or a batch's settings) go to
    every named component that takes them and are silently left out elsewhere; ``defaults``
    win over them. With ``cache`` (a
    :class:`~storysdk.cache.ComponentCache`), components named with the same options as an
    earlier pipeline's are taken from it, loaded models included. ``limits`` (a
    :class:`~storysdk.limits.Limits`; default: ``Limits()``) bounds the work a run may ask for:
    the components' options, the request and the plan are checked (:meth:`check_limits`)
    before anything is planned, claimed or loaded.
    """

    def __init__(
        self,
        planner: ComponentSpec = "script",
        tokenizers: Sequence[ComponentSpec] = (),
        generators: Sequence[ComponentSpec] = (),
        composers: Sequence[ComponentSpec] = (),
        *,
        tracks: Mapping[str, TrackSpec] | None = None,
        timing: Timing | Mapping[str, Any] | None = None,
        mix: Mix | Mapping[str, Any] | None = None,
        parallel: Parallel = "devices",
        registry: Registry | None = None,
        defaults: Mapping[str, Any] | None = None,
        runtime: Mapping[str, Any] | None = None,
        max_scenes: int = DEFAULT_MAX_SCENES,
        cache: ComponentCache | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.registry = registry if registry is not None else get_registry()
        self.cache = cache
        self.limits = limits if limits is not None else Limits()
        self.defaults = dict(defaults or {})
        self.runtime = dict(runtime or {})
        self._specs: dict[str, Any] = {k: [] for k in KINDS}
        if max_scenes < 1:
            raise ConfigError(f"max_scenes must be at least 1, got {max_scenes}")
        self.max_scenes = max_scenes
        if parallel not in (True, False, "devices"):
            raise ConfigError(f"parallel must be True, False or 'devices', got {parallel!r}")
        self.parallel: Parallel = parallel
        self.timing = timing if isinstance(timing, Timing) else validate_settings(Timing, timing or {}, what="timing")
        self.mix = mix if isinstance(mix, Mix) else validate_settings(Mix, mix or {}, what="mix")
        check_timing(self.timing)
        self.planner: Planner = self._build("planner", planner)  # type: ignore[assignment]
        if not isinstance(self.planner, Planner):
            raise ConfigError(f"{self.planner!r} is not a planner")
        self.tokenizers: list[Tokenizer] = [self._build("tokenizer", s) for s in tokenizers]  # type: ignore[misc]
        if tracks is not None and generators:
            raise ConfigError(
                "give tracks={...} or the generators=[...] shorthand, not both; with tracks, every generator "
                "belongs to a track: tracks={'frames': {'generator': 'diffusers-image'}, ...}"
            )
        self.tracks: dict[str, PipelineTrack] = {}
        if tracks is not None:
            if not isinstance(tracks, Mapping):
                raise ConfigError(f"tracks must map track names to track tables, got {type(tracks).__name__}")
            for name, table in tracks.items():
                self._add_track(check_track_name(name), table)
        else:
            self._shorthand(generators)
        self.composers: list[Composer] = []
        self._composer_dirs: list[str] = []
        for spec in composers:
            self._add_composer(spec)
        self._check_defaults()
        self._check_tracks()
        self._check_composer_tracks()

    # -- construction ----------------------------------------------------------------------
    def _shorthand(self, generators: Sequence[ComponentSpec]) -> None:
        seen: dict[str, str] = {}
        for spec in generators:
            gen = self._build("generator", spec)
            assert isinstance(gen, Generator)
            if gen.modality not in MODALITIES:
                raise ConfigError(
                    f"generator {gen.name!r} declares modality {gen.modality!r}; use one of {', '.join(MODALITIES)}"
                )
            if gen.modality in seen:
                raise ConfigError(
                    f"two {gen.modality} generators ({seen[gen.modality]!r} and {gen.name!r}): the generators=[...] "
                    "shorthand makes one track per modality. Name the tracks instead, any number per modality: "
                    f"tracks={{'{seen[gen.modality]}': {{'generator': '{seen[gen.modality]}'}}, "
                    f"'{gen.name}-2': {{'generator': '{gen.name}'}}}} (a story file: [tracks.<name>] tables)"
                )
            seen[gen.modality] = gen.name
            self._specs.setdefault("tracks", {})[gen.name] = {"generator": self._specs["generator"][-1]}
            self.tracks[gen.name] = PipelineTrack(gen.name, gen)

    def _add_track(self, name: str, table: TrackSpec) -> None:
        components, settings_data = split_track_table(name, table)
        settings = validate_options(TrackSettings, settings_data, kind="track", name=name)
        check_template(settings.text, track=name)
        gen = self._build("generator", components["generator"])
        assert isinstance(gen, Generator)
        if gen.modality not in MODALITIES:
            raise ConfigError(f"track {name!r}: generator {gen.name!r} declares modality {gen.modality!r}; "
                              f"use one of {', '.join(MODALITIES)}")
        described: dict[str, Any] = {"generator": self._specs["generator"][-1], "settings": settings.model_dump()}
        planner = None
        if components.get("planner") is not None:
            planner = self._build("planner", components["planner"])
            assert isinstance(planner, Planner)
            if not planner.plans_tracks:
                able = sorted(i.name for i in self.registry.components("planner") if getattr(i.factory, "plans_tracks", False))
                raise ConfigError(
                    f"track {name!r}: planner {planner.name!r} cannot plan a track's cues (it plans whole stories); "
                    f"track planners: {', '.join(able) or '(none installed)'}; or leave the track's planner out "
                    "for one cue per scene"
                )
            described["planner"] = self._specs["planner"][-1]
        toks = components.get("tokenizers", [])
        if isinstance(toks, (str, Mapping)):
            toks = [toks]
        if not isinstance(toks, (list, tuple)):
            raise ConfigError(f"track {name!r}: tokenizers must be a list of tokenizers, got {type(toks).__name__}")
        tokenizers = [self._build("tokenizer", t) for t in toks]
        described["tokenizers"] = self._specs["tokenizer"][-len(tokenizers):] if tokenizers else []
        self._specs.setdefault("tracks", {})[name] = described
        self.tracks[name] = PipelineTrack(name, gen, planner, tokenizers, settings)  # type: ignore[arg-type]

    def _add_composer(self, spec: ComponentSpec) -> None:
        sub: Any = None
        if isinstance(spec, Mapping) and COMPOSER_DIR_KEY in spec:
            spec = dict(spec)
            sub = spec.pop(COMPOSER_DIR_KEY)
        elif (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], Mapping)
              and COMPOSER_DIR_KEY in spec[1]):
            options = dict(spec[1])
            sub = options.pop(COMPOSER_DIR_KEY)
            spec = (spec[0], options)
        if sub is not None:
            if (not isinstance(sub, str) or not sub.strip() or Path(sub).is_absolute() or ".." in Path(sub).parts
                    or not Path(sub).parts or "\\" in sub):
                raise ConfigError(f"composer dir must be a folder inside the output folder (e.g. \"comic-b\"), got {sub!r}")
            sub = Path(sub).as_posix()  # "b/", "./b" and "b" are one folder
            if Path(sub).parts[0] in RESERVED_DIRS:
                raise ConfigError(f"composer dir {sub!r} is inside the run's own {Path(sub).parts[0]}/ folder; "
                                  f"choose another folder (e.g. \"{Path(sub).name}-pages\")")
        else:
            sub = ""
        comp = self._build("composer", spec)
        assert isinstance(comp, Composer)
        for other, other_dir in zip(self.composers, self._composer_dirs):
            if other.name == comp.name and other_dir == sub:
                where = f"dir {sub!r}" if sub else "the output folder"
                raise ConfigError(
                    f"two {comp.name!r} composers would write the same files into {where}; give one of them its own "
                    f"dir = \"{comp.name}-2\" (a sub-folder of the output folder), or drop one"
                )
        if sub:
            self._specs["composer"][-1] = {**self._specs["composer"][-1], COMPOSER_DIR_KEY: sub}
        self.composers.append(comp)
        self._composer_dirs.append(sub)

    def _check_tracks(self) -> None:
        if self.timing.mode == "track":
            name = self.timing.track
            if name not in self.tracks:
                audio = [t.name for t in self.tracks.values() if t.modality == "audio" and t.planner is None]
                raise ConfigError(f"timing track {name!r} is not one of the pipeline's tracks ({', '.join(self.tracks) or 'none'})"
                                  f".{suggest(str(name), self.tracks)} Set the timing's track to the audio track whose "
                                  f"clips set the scenes' lengths ({', '.join(audio) or 'there is none: add one'}), "
                                  "or use timing mode \"plan\" or \"fixed\"")
            pace = self.tracks[str(name)]
            if pace.modality != "audio" or pace.planner is not None:
                raise ConfigError(f"timing track {name!r} must be an audio track without a track planner "
                                  "(its clip for each scene sets that scene's length)")
            if self.planner.interleaved and pace.generator.needs_whole_plan:
                raise ConfigError(
                    f"timing track {name!r}: its generator {pace.generator.name!r} needs the whole plan, but planner "
                    f"{self.planner.name!r} writes the story scene by scene and each scene's length must be known "
                    "before the next; time the story by another track, or use timing mode \"plan\" or \"fixed\""
                )
        for track in self.tracks.values():
            if track.modality != "audio" and (track.settings.duck is not None or track.settings.gain != 0.0):
                raise ConfigError(f"track {track.name!r} is an image track: gain and duck are for audio tracks; "
                                  "remove them from its table")

    def _check_composer_tracks(self) -> None:
        """A composer option naming a track (``track = "frames"``) must name one of the right modality."""
        for comp in self.composers:
            for option, modality in type(comp).track_options.items():
                value = getattr(getattr(comp, "options", None), option, None)
                names = [value] if isinstance(value, str) else list(value or [])
                fitting = [t.name for t in self.tracks.values() if t.modality == modality]
                for name in names:
                    if name in fitting:
                        continue
                    what = (f"is an {self.tracks[name].modality} track" if name in self.tracks
                            else "is not one of the pipeline's tracks")
                    raise ConfigError(
                        f"composer {comp.name!r}: {option} = {name!r} {what}; {modality} tracks: "
                        f"{', '.join(fitting) or '(none)'}.{suggest(str(name), fitting)}"
                    )

    @property
    def generators(self) -> tuple[Generator, ...]:
        """Every track's generator, in track order (read-only: a track's generator is
        ``pipe.tracks[name].generator``)."""
        return tuple(t.generator for t in self.tracks.values())

    def _build(self, kind: str, spec: ComponentSpec) -> Component:
        base = KINDS[kind][1]
        if isinstance(spec, Component):
            if not isinstance(spec, base):
                raise ConfigError(f"{spec!r} was given as a {kind} but is not a storysdk.{base.__name__}")
            # an instance's options are its own business: the fingerprint records its class only
            cls = type(spec)
            self._specs[kind].append({"name": spec.name, "class": f"{cls.__module__}.{cls.__qualname__}"})
            return spec
        if isinstance(spec, str):
            name, options = spec, {}
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
            name, options = spec[0], dict(spec[1])
        elif isinstance(spec, Mapping):
            if "name" not in spec:
                raise ConfigError(f"a {kind} given as a table needs a 'name' key: {dict(spec)!r}")
            options = dict(spec)
            name = str(options.pop("name"))
        else:
            raise ConfigError(
                f"cannot build a {kind} from {spec!r}; give a name, (name, options), "
                "{'name': ..., **options} or an instance"
            )
        info = self.registry.get(kind, name)
        accepted = info.options()
        merged = {k: v for k, v in self.runtime.items() if k in accepted}
        merged.update((k, v) for k, v in self.defaults.items() if k in accepted)
        merged.update(options)
        for key in self.defaults.keys() & options.keys() & accepted.keys():
            # a [defaults] value this component overrides is still checked against its declaration
            if info.declared():
                validate_options(info.factory.Options, {**merged, key: self.defaults[key]},
                                 kind=f"defaults {key!r} for {kind}", name=name)
        self._specs[kind].append({"name": name, "options": merged})
        if self.cache is not None:
            return self.cache.get(kind, info, merged)
        return info.create(**merged)

    @property
    def limits(self) -> Limits:
        """The :class:`~storysdk.limits.Limits` every run is checked against (settable: a server sets its own)."""
        return self._limits

    @limits.setter
    def limits(self, value: Limits) -> None:
        if not isinstance(value, Limits):
            raise ConfigError(f"limits must be a storysdk.Limits, got {type(value).__name__}")
        self._limits = value

    def check_limits(self, request: StoryRequest | None = None, plan: StoryPlan | None = None) -> None:
        """Check the components' options, ``request`` and ``plan`` against :attr:`limits`.

        :meth:`run` and :meth:`plan` call it first, before anything is planned or loaded; a
        server calls it before queueing a job. Raises :class:`~storysdk.limits.LimitError`.
        """
        self._limits.check_tracks(self.tracks)
        for comp in self.components():
            self._limits.check_options(comp.kind, comp.name, getattr(comp, "options", None))
        if request is not None:
            self._limits.check_request(request)
        if plan is not None:
            self._limits.check_plan(plan)

    def weights(self) -> dict[str, str]:
        """Which weights each model-backed component uses, decided offline without loading them:
        ``{"generator diffusers-image": "tiny (fallback: ...)", ...}`` (:func:`storysdk.runtime.weights_of`).

        A ``preset='auto'`` that fell back to the tiny preset says so here. :meth:`run` records
        this in ``run.json`` (and in the run's fingerprint: a folder rendered with other weights
        holds another story); the CLI prints it in the run summary.
        """
        from .runtime import weights_of

        out: dict[str, str] = {}
        owner = {id(c): name for name, t in self.tracks.items() for c in t.components()}
        tracks_of: dict[tuple[str, str], set[str]] = {}
        for name, t in self.tracks.items():
            for c in t.components():
                tracks_of.setdefault((c.kind, c.name), set()).add(name)
        for comp in self.components():
            used = weights_of(comp)
            if used is None:
                continue
            key = f"{comp.kind} {comp.name}"
            track = owner.get(id(comp))
            if track is not None and track != comp.name and (key in out or len(tracks_of[(comp.kind, comp.name)]) > 1):
                key += f" ({track})"  # the same component name on two tracks: say which
            out[key] = used
        return out

    def components(self) -> list[Component]:
        """Every component of the pipeline: planner, story tokenizers, each track's, composers."""
        out: list[Component] = [self.planner, *self.tokenizers]
        for track in self.tracks.values():
            out.extend(track.components())
        return [*out, *self.composers]

    def _check_defaults(self) -> None:
        """A ``defaults`` key that no component of this pipeline takes is an error, not a no-op."""
        if not self.defaults:
            return
        taken: set[str] = set()
        renamed: dict[str, list[str]] = {}
        for comp in self.components():
            info = self._info_of(comp)
            taken.update(info.options() if info is not None else type(comp).Options.model_fields)
            for old, new in type(comp).Options.renamed.items():
                renamed.setdefault(old, []).append(f"{comp.kind} {comp.name!r} calls it {new!r}")
        unused = [k for k in self.defaults if k not in taken]
        if not unused:
            return
        key = unused[0]
        if key in renamed:
            raise ConfigError(
                f"defaults: no component of this pipeline takes {key!r} any more: {'; '.join(renamed[key])}"
                + (" (the story's own seed is StoryRequest.seed, [story] seed in a story file)" if key == "seed" else "")
            )
        raise ConfigError(
            f"defaults: no component of this pipeline takes the option {key!r}.{suggest(key, taken)} "
            f"Options they take: {', '.join(sorted(taken)) or '(none)'}"
        )

    def _info_of(self, comp: Component) -> ComponentInfo | None:
        try:
            info = self.registry.get(comp.kind, comp.name)
        except StorySDKError:
            return None
        return info if isinstance(comp, info.factory) else None

    def check_plan(self, plan: StoryPlan) -> None:
        """Check ``plan`` against :attr:`limits`, then ask every component whether it can render it
        (before any model is loaded).

        The story planner, story tokenizers, track planners and composers see ``plan``; the
        generator and tokenizers of a track without a track planner see the track's plan (its
        cues: one per scene that has the track's text, timed by :attr:`timing` as far as it is
        known before rendering). A track planner's cues are checked once they are planned.
        """
        self._limits.check_plan(plan)
        for comp in (self.planner, *self.tokenizers, *self.composers):
            comp.check_plan(plan)
        durations = scene_durations(plan.scenes, self.timing)
        # each scene as long as the timing makes it (fixed seconds, a default for untimed scenes)
        self._limits.check_plan(_timed_plan(plan, plan.scenes, durations))
        timeline = Timeline.of_scenes(plan.scenes, durations, self.timing)
        for track in self.tracks.values():
            _check_texts(track, plan)
            if track.planner is not None:
                track.planner.check_plan(plan)
                continue
            pace = self.timing.mode == "track" and track.name == self.timing.track
            cues = _scene_cues(track, plan.scenes, timeline, pace=pace)
            self._check_track_plan(track, _track_plan(plan, cues))

    def _check_track_plan(self, track: PipelineTrack, track_plan: StoryPlan) -> None:
        for comp in (*track.tokenizers, track.generator):
            try:
                comp.check_plan(track_plan)
            except StorySDKError as exc:
                if len(self.tracks) > 1 and f"track {track.name!r}" not in str(exc):
                    _add_note(exc, f"storysdk: in track {track.name!r}")
                raise

    def describe(self) -> dict[str, Any]:
        """The components with their options, the tracks (and their order), timing and mix, as
        plain JSON data (part of the run fingerprint): values JSON has no type for are their
        ``str()``, tuples are lists."""
        out: dict[str, Any] = {k: (list(v) if isinstance(v, list) else dict(v)) for k, v in self._specs.items()}
        out["track_order"] = list(self.tracks)  # "tracks" is a table: sorted keys would lose the order
        out["timing"] = self.timing.model_dump()
        out["mix"] = self.mix.model_dump()
        # plain JSON data, as the fingerprint reads it (an option that is a path becomes its text)
        return json.loads(json.dumps(out, sort_keys=True, default=str))
    # -- planning --------------------------------------------------------------------------
    def plan(self, request: StoryRequest, *, progress: ProgressCallback | None = None) -> StoryPlan:
        """Run the planner alone (for an interleaved planner: only the opening scenes).

        The request is checked against :attr:`limits` first, and the plan it made after.
        """
        self.check_limits(request)
        _emit(progress, "plan", self.planner.name, 0, 1)
        plan = self.planner.plan_with(request, PlanContext(request, self.planner.name, progress))
        if not isinstance(plan, StoryPlan):
            raise ComponentError(f"planner {self.planner.name!r} returned {type(plan).__name__}, not a StoryPlan")
        if not plan.planner:
            plan.planner = self.planner.name
        _check_indices(plan.scenes, self.planner.name)
        self._limits.check_plan(plan)
        _emit(progress, "plan", self.planner.name, 1, 1, message=f"{len(plan.scenes)} scenes")
        return plan

    # -- the run ---------------------------------------------------------------------------
    def run(
        self,
        request: StoryRequest,
        *,
        out_dir: str | Path | None = None,
        plan: StoryPlan | None = None,
        progress: ProgressCallback | None = None,
        overwrite: bool = False,
    ) -> Story:
        """Plan (unless ``plan`` is given), render every track and compose a story.

        With ``out_dir``, assets are saved as they are made and a run on a folder that holds
        an unfinished run of the same request and pipeline resumes it, after checking every
        saved asset (a damaged one is rendered again). ``overwrite`` replaces a folder holding
        another story. The folder is locked from its claim until the run ends, also when it
        fails: a second run on the same folder at the same time is refused with an
        :class:`~storysdk.errors.OutputFolderError`.
        """
        if self.composers and out_dir is None:
            raise ConfigError("composers write files: give out_dir (the CLI's --out)")
        self.check_limits(request, plan)  # before the folder is claimed or any model loads
        folder = OutputFolder(out_dir) if out_dir is not None else None
        try:
            return _Run(self, request, folder, _locked(progress)).run(plan, overwrite)
        finally:
            if folder is not None:
                folder.release()


def _locked(progress: ProgressCallback | None) -> ProgressCallback | None:
    """``progress`` made safe to call from tracks rendering side by side (one call at a time)."""
    if progress is None:
        return None
    lock = threading.Lock()

    def call(event: ProgressEvent) -> None:
        with lock:
            progress(event)

    return call


def _timed_plan(plan: StoryPlan, scenes: Sequence[Scene], durations: Mapping[int, float]) -> StoryPlan:
    """``plan`` with ``scenes``, each lasting what the timeline gives it (what the limits check)."""
    timed = [attrs.evolve(s, duration=float(durations[s.index])) for s in scenes]
    return _track_plan(plan, timed)


def _track_plan(plan: StoryPlan, cues: Sequence[Scene]) -> StoryPlan:
    """The plan a track's components see: the story plan with the track's cues as its scenes."""
    return StoryPlan(scenes=list(cues), characters=plan.characters, title=plan.title, style=plan.style,
                     negative_prompt=plan.negative_prompt, width=plan.width, height=plan.height, seed=plan.seed,
                     planner=plan.planner, metadata=plan.metadata)


def _scene_cues(track: PipelineTrack, scenes: Sequence[Scene], timeline: Timeline | None, *, pace: bool) -> list[Cue]:
    """One cue per scene that has the track's text; timed by ``timeline`` (the pace track's cues
    keep their planned duration: their clips set the timeline)."""
    cues = []
    for scene in scenes:
        text = render_text(track.settings.text, scene)
        if text is None:
            continue
        span = timeline.scene(scene.index) if timeline is not None and not pace else None
        cue = Cue.of_scene(scene, start=span.start if span else 0.0, duration=span.duration if span else None,
                           prompt=text)
        cues.append(cue)
    return cues


class _Run:
    """One run of a pipeline: the story, its folder, the timeline as it is known."""

    def __init__(self, pipe: Pipeline, request: StoryRequest, folder: OutputFolder | None,
                 progress: ProgressCallback | None) -> None:
        self.pipe = pipe
        self.request = request
        self.folder = folder
        self.progress = progress
        self.story: Story = None  # type: ignore[assignment]
        self.durations: dict[int, float] = {}
        self.stop = threading.Event()
        #: Set while tracks render side by side: their start-ups run one at a time (:class:`_StartUp`).
        self.startup: threading.Lock | None = None
        #: Tracks whose track planner's cues are known (planned now or loaded from the folder).
        self.planned: set[str] = set()

    # -- the whole run ----------------------------------------------------------------------
    def run(self, plan: StoryPlan | None, overwrite: bool) -> Story:
        pipe, request, folder, progress = self.pipe, self.request, self.folder, self.progress
        resumed = False
        weights = pipe.weights()
        if folder is not None:
            run_info = {
                "request": request.to_dict(),
                "pipeline": pipe.describe(),
                "plan": plan.to_dict() if plan is not None else None,
                "weights": weights,
            }
            resumed = folder.check_or_claim(
                {"fingerprint": fingerprint(run_info), "seed": request.seed, "weights": run_info["weights"]},
                overwrite=overwrite,
            )
            if folder.took_over is not None:
                _emit(progress, "resume", "lock", 1, 1, message=(
                    f"took over {folder.root} from a run that stopped without releasing it "
                    f"(pid {folder.took_over.get('pid', '?')} on host {folder.took_over.get('host', '?')})"))
        if plan is None and resumed and folder is not None:
            plan = folder.load_plan()
        if plan is None:
            plan = pipe.plan(request, progress=progress)
        else:
            _check_indices(plan.scenes, "the given plan")
        pipe.check_plan(plan)
        if folder is not None:
            folder.save_plan(plan)
            for scene in plan.scenes:
                folder.save_tokens(scene)
        story = Story(plan=plan, out_dir=folder.root if folder is not None else None, weights=weights, mix=pipe.mix)
        for track in pipe.tracks.values():
            story.tracks[track.name] = track.new_track()
        self.story = story

        scene_tracks, later = self._split_tracks()
        if pipe.planner.interleaved:
            self._scenes(list(plan.scenes), scene_tracks)
            self._interleave(scene_tracks)
        else:
            later = [*scene_tracks, *later]  # the pace track among them renders first, alone
            self._pace(list(plan.scenes))
            self._durations(list(plan.scenes))
            self._place_pace(list(plan.scenes))
        timeline = Timeline.of_scenes(plan.scenes, self.durations, pipe.timing)
        self._whole_story(later, timeline)
        for name in pipe.tracks:
            timeline.place(story.tracks[name])
        story.timeline = timeline
        if folder is not None:
            folder.save_timeline(timeline)
        self._compose()
        return story

    def _split_tracks(self) -> tuple[list[PipelineTrack], list[PipelineTrack]]:
        """(tracks rendered scene by scene under an interleaved planner, tracks rendered once the story is written)."""
        now, later = [], []
        for track in self.pipe.tracks.values():
            if track.planner is None and not track.generator.needs_whole_plan:
                now.append(track)
            else:
                later.append(track)
        pace = self._pace_track()
        if pace is not None and pace in now:  # the pace track first: its clips time the other tracks' cues
            now.remove(pace)
            now.insert(0, pace)
        return now, later

    def _pace_track(self) -> PipelineTrack | None:
        t = self.pipe.timing
        return self.pipe.tracks[str(t.track)] if t.mode == "track" else None

    # -- timing -----------------------------------------------------------------------------
    def _durations(self, scenes: Sequence[Scene]) -> None:
        """Fix the length of ``scenes`` (the pace track's clips for them are rendered by now) and
        check the story so timed against the limits (``scene_seconds``, ``story_seconds``)
        before the other tracks render."""
        pace = self._pace_track()
        todo = [s for s in scenes if s.index not in self.durations]
        self.durations.update(scene_durations(todo, self.pipe.timing, self.story.tracks[pace.name] if pace else None))
        if pace is not None:
            known = [s for s in self.story.plan.scenes if s.index in self.durations]
            self.pipe._limits.check_plan(_timed_plan(self.story.plan, known, self.durations))

    def _timeline_so_far(self) -> Timeline:
        scenes = [s for s in self.story.plan.scenes if s.index in self.durations]
        return Timeline.of_scenes(scenes, self.durations, self.pipe.timing)

    def _pace(self, scenes: Sequence[Scene]) -> None:
        """Render the pace track's cues for ``scenes`` (timing mode ``track``), then place them."""
        pace = self._pace_track()
        if pace is None:
            return
        self._add_scene_cues(pace, scenes, None, pace=True)
        self._story_tokens(scenes, [pace])
        self._render_track(pace, scenes_only={s.index for s in scenes})

    def _place_pace(self, scenes: Sequence[Scene]) -> None:
        pace = self._pace_track()
        if pace is None:
            return
        timeline = self._timeline_so_far()
        wanted = {s.index for s in scenes}
        track = self.story.tracks[pace.name]
        for cue in track.cues:
            if cue.scene in wanted:
                cue.start = timeline.scene(cue.scene).start
                asset = track.assets.get(cue.index)
                if isinstance(asset, AudioAsset):  # the cue spans what its clip sounds
                    cue.duration = round(max(sounding_seconds(asset), 1e-6), 6)

    # -- scene by scene ---------------------------------------------------------------------
    def _scenes(self, scenes: list[Scene], tracks: list[PipelineTrack]) -> None:
        """Render ``scenes`` (just planned) on the tracks that render scene by scene."""
        pace = self._pace_track()
        if pace is not None:
            self._pace(scenes)
        self._durations(scenes)
        self._place_pace(scenes)
        timeline = self._timeline_so_far()
        others = [t for t in tracks if t is not pace]
        for track in others:
            self._add_scene_cues(track, scenes, timeline, pace=False)
        self._story_tokens(scenes, others)
        for track in others:
            if pace is not None:  # Pipeline.check_plan saw these cues untimed: check them as timed now
                self.pipe._check_track_plan(track, _track_plan(self.story.plan, self.story.tracks[track.name].cues))
            self._render_track(track, scenes_only={s.index for s in scenes})

    def _interleave(self, tracks: list[PipelineTrack]) -> None:
        pipe, plan = self.pipe, self.story.plan
        limit = min(self.request.num_scenes or pipe.max_scenes, pipe.max_scenes)
        if pipe._limits.scenes is not None:  # an interleaved story stops at the scenes limit
            limit = min(limit, int(pipe._limits.scenes))
        ctx = StepContext(request=self.request, plan=plan, story=self.story, component=pipe.planner.name,
                          progress=self.progress)
        while len(plan.scenes) < limit:
            _emit(self.progress, "plan", pipe.planner.name, len(plan.scenes), limit, message="next scene")
            try:
                scene = pipe.planner.step(ctx)
            except StorySDKError:
                raise
            except Exception as exc:
                _add_note(exc, f"storysdk: while planner {pipe.planner.name!r} wrote scene {ctx.next_index}")
                raise
            if scene is None:
                break
            if not isinstance(scene, Scene):
                raise ComponentError(
                    f"planner {pipe.planner.name!r} step() returned {type(scene).__name__}, not a Scene or None"
                )
            plan.scenes.append(scene)
            _check_indices(plan.scenes, pipe.planner.name)
            pipe.check_plan(plan)
            if self.folder is not None:
                self.folder.save_plan(plan)
                self.folder.save_tokens(scene)
            self._scenes([scene], tracks)

    # -- once the story is written ------------------------------------------------------------
    def _whole_story(self, tracks: list[PipelineTrack], timeline: Timeline) -> None:
        """Make the cues of ``tracks`` (track planners plan theirs) and render them, side by side
        where :attr:`Pipeline.parallel` allows."""
        plan = self.story.plan
        pace = self._pace_track()
        todo = [t for t in tracks if t is not pace]
        # first what the folder holds (a resume), so that the story tokenizers run only on scenes
        # some track still has to render; then the track planners plan (seeing the story tokens)
        for track in todo:
            if track.planner is not None:
                self._load_cues(track)
            else:
                self._add_scene_cues(track, plan.scenes, timeline, pace=False)
        self._story_tokens(plan.scenes, todo)
        for track in todo:
            if track.planner is not None and track.name not in self.planned:
                self._plan_cues(track, timeline)
            if track.planner is not None or pace is not None:
                # a track planner's cues are new to the track's components; with a pace track the
                # scene cues' durations are known only now (Pipeline.check_plan saw the others)
                self.pipe._check_track_plan(track, _track_plan(plan, self.story.tracks[track.name].cues))
        groups = self._groups(todo)
        if len(groups) <= 1:
            for track in todo:
                self._render_track(track)
            return
        errors: list[BaseException] = []

        def work(group: list[PipelineTrack]) -> None:
            try:
                for track in group:
                    self._render_track(track)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread below
                errors.append(exc)
                self.stop.set()

        self.startup = threading.Lock()
        with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="storysdk-track") as pool:
            try:
                futures = [pool.submit(work, group) for group in groups]
                # wait in short slices: a Ctrl-C whose signal the OS handed to a track's thread is
                # raised here (the main thread runs Python code) within 0.1 s, not once all is done
                while wait(futures, timeout=0.1).not_done:
                    pass
            except BaseException:  # Ctrl-C (or a cancel) in this thread: the tracks stop at their next report
                self.stop.set()
                raise
        real = [e for e in errors if not isinstance(e, _Stopped)]
        if errors:
            raise (real or errors)[0]

    def _groups(self, tracks: list[PipelineTrack]) -> list[list[PipelineTrack]]:
        parallel = self.pipe.parallel
        if parallel is False or len(tracks) <= 1:
            return [tracks] if tracks else []
        if parallel is True:
            return [[t] for t in tracks]
        by_device: dict[str, list[PipelineTrack]] = {}
        for t in tracks:
            by_device.setdefault(t.device, []).append(t)
        return list(by_device.values())

    def _load_cues(self, track: PipelineTrack) -> None:
        """A resume: the track planner's cues (with their tokens) and finished assets, as saved."""
        tf = self._track_folder(track)
        cues = tf.load_cues() if tf is not None else None
        if cues is None:
            return
        self.story.tracks[track.name].cues = list(cues)
        self.planned.add(track.name)
        self._load_finished(track, cues)

    def _plan_cues(self, track: PipelineTrack, timeline: Timeline) -> None:
        """Plan the track planner's cues, check them (and the ``cues`` limit) and save them."""
        assert track.planner is not None
        out = self.story.tracks[track.name]
        tf = self._track_folder(track)
        _emit(self.progress, "plan", track.planner.name, 0, 1, message=f"track {track.name}")
        seed = track.settings.seed if track.settings.seed is not None else self.story.plan.seed
        ctx = TrackContext(request=self.request, plan=self.story.plan, timeline=timeline, track=track.name,
                           template=track.settings.text, component=track.planner.name, progress=self.progress,
                           seed=seed)
        try:
            cues = track.planner.plan_track(self.story.plan, ctx)
        except StorySDKError:
            raise
        except Exception as exc:
            _add_note(exc, f"storysdk: while planner {track.planner.name!r} planned track {track.name!r}")
            raise
        _check_cues(track, cues, timeline)
        self.pipe._limits.check_cues(track.name, cues, track.planner.name)
        if tf is not None:
            tf.save_cues(list(cues), planner=track.planner.name)
        _emit(self.progress, "plan", track.planner.name, 1, 1, message=f"track {track.name}: {len(cues)} cues")
        out.cues = list(cues)
        self.planned.add(track.name)

    def _add_scene_cues(self, track: PipelineTrack, scenes: Sequence[Scene], timeline: Timeline | None,
                        *, pace: bool) -> None:
        out = self.story.tracks[track.name]
        have = {c.index for c in out.cues}
        new = [c for c in _scene_cues(track, scenes, timeline, pace=pace) if c.index not in have]
        out.cues.extend(new)
        self._load_finished(track, new)

    def _track_folder(self, track: PipelineTrack) -> TrackFolder | None:
        if self.folder is None:
            return None
        return self.folder.track(track.name, cues=track.planner is not None)

    def _load_finished(self, track: PipelineTrack, cues: Sequence[Cue]) -> None:
        """Load every saved asset of ``cues``, verified; a damaged one is removed (and so rendered
        again) with a ``resume`` progress event naming the file and the problem."""
        tf = self._track_folder(track)
        if tf is None or not tf.root.is_dir():
            return
        plan = self.story.plan
        size = (plan.width, plan.height) if plan.width and plan.height else None
        out = self.story.tracks[track.name]
        for cue in cues:
            if cue.index in out.assets:
                continue

            def damaged(path: Path, problem: str, index: int = cue.index) -> None:
                root = self.folder.root if self.folder is not None else path.parent
                rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
                _emit(self.progress, "resume", track.generator.name, 1, 1, index,
                      message=f"{rel} is damaged ({problem}); rendering it again")

            name = track.generator.name
            asset = (tf.load_image(cue.index, name, size=size, damaged=damaged) if track.modality == "image"
                     else tf.load_audio(cue.index, name, damaged=damaged))
            if asset is not None:
                self._record(track, cue, asset)

    def _record(self, track: PipelineTrack, cue: Cue, asset: ImageAsset | AudioAsset) -> None:
        """Keep ``asset`` on its track, and on :attr:`Story.images`/:attr:`Story.audio` (by scene)
        when the track is the first scene-cued track of its modality (what an interleaved
        planner reads back: SEED-Story's pictures)."""
        self.story.tracks[track.name].assets[cue.index] = asset
        if track.planner is None and self._primary_of(track.modality) is track:
            target = self.story.images if track.modality == "image" else self.story.audio
            target[cue.scene] = asset  # type: ignore[assignment]

    def _primary_of(self, modality: str) -> PipelineTrack | None:
        for track in self.pipe.tracks.values():
            if track.modality == modality and track.planner is None:
                return track
        return None

    # -- rendering --------------------------------------------------------------------------
    def _story_tokens(self, scenes: Sequence[Scene], tracks: Sequence[PipelineTrack]) -> None:
        """Run the story tokenizers on those of ``scenes`` that one of ``tracks`` still has to
        render: a cue of the scene without an asset (the tracks' cues are made, and their saved
        assets loaded, by now), or any scene for a track planner that has not planned yet."""
        if not self.pipe.tokenizers:
            return
        pending = [s for s in scenes if any(self._pending(t, s.index) for t in tracks)]
        if pending:
            self._tokenize(self.pipe.tokenizers, pending, self.story.plan, "")

    def _pending(self, track: PipelineTrack, scene_index: int) -> bool:
        if track.planner is not None and track.name not in self.planned:
            return True
        out = self.story.tracks[track.name]
        return any(c.scene == scene_index and c.index not in out.assets for c in out.cues)

    def _tokenize(self, tokenizers: Sequence[Tokenizer], items: Sequence[Scene], plan: StoryPlan, track: str,
                  inherited: Mapping[int, Mapping[str, Tokens]] | None = None) -> None:
        """Run ``tokenizers`` on ``items`` that lack their kind; a kind in ``inherited[item.index]``
        (the tokens a cue took from its scene) does not count: a track's own tokenizer replaces it."""
        inherited = inherited or {}

        def has(s: Scene, kind: str) -> bool:
            tok = s.tokens.get(kind)
            return tok is not None and tok is not inherited.get(s.index, {}).get(kind)

        for tok in tokenizers:
            todo = [s for s in items if not tok.produces or not has(s, tok.produces)]
            if not todo:
                continue
            ctx = RenderContext(plan=plan, seed=plan.seed, component=tok.name, progress=self._progress(), story=self.story,
                                track=track)
            _emit(self.progress, "tokenize", tok.name, 0, len(todo))
            made = tok.tokenize(todo, ctx)
            if len(made) != len(todo):
                raise ComponentError(
                    f"tokenizer {tok.name!r} returned {len(made)} Tokens for {len(todo)} scenes; it must return one per scene"
                )
            for scene, t in zip(todo, made):
                scene.tokens[t.kind] = t
            _emit(self.progress, "tokenize", tok.name, len(todo), len(todo))

    def _inheritable(self, cue: Cue) -> dict[str, Tokens]:
        """The scene tokens ``cue`` may take: all of them when it renders its scene's prompt; when its
        track's text template gives it another text, none of the story tokenizers' (they encode the
        scene's prompt, not the cue's: its generator encodes the cue's own text, or the track's own
        tokenizer does). A planner's tokens (SEED-Story's features, AudioStory's queries) always pass."""
        scene = self.story.plan.scene(cue.scene)
        tokens = dict(scene.tokens)
        if cue.prompt == scene.prompt:
            return tokens
        story_made = {t.name for t in self.pipe.tokenizers}
        for kind, tok in list(tokens.items()):
            if tok.made_by in story_made:
                del tokens[kind]
                if cue.tokens.get(kind) is tok:
                    del cue.tokens[kind]
        return tokens

    def _progress(self, startup: _StartUp | None = None) -> ProgressCallback | None:
        """The progress channel of a track's components: also where a track stops when another
        track rendering side by side failed, and (``startup``) where a generator's start-up ends."""
        progress, stop = self.progress, self.stop

        def call(event: ProgressEvent) -> None:
            if startup is not None:
                startup.open()
            if stop.is_set():
                raise _Stopped("stopped: another track rendering side by side failed")
            if progress is not None:
                progress(event)

        return call

    def _render_track(self, track: PipelineTrack, *, scenes_only: set[int] | None = None) -> None:
        with _StartUp(self.startup) as startup:
            self._render_track_started(track, scenes_only, startup)

    def _render_track_started(self, track: PipelineTrack, scenes_only: set[int] | None, startup: _StartUp) -> None:
        out = self.story.tracks[track.name]
        cues = [c for c in out.cues if scenes_only is None or c.scene in scenes_only]
        todo = [c for c in cues if c.index not in out.assets]
        if not todo:
            return
        # the track's own tokenizers run on its cues first (a kind a cue has only from its scene
        # is theirs to replace), then every cue gets its scene's tokens (the story tokenizers',
        # which may have run after the cue was made) of the kinds it has none of
        scene_tokens = {c.index: self._inheritable(c) for c in todo}
        plan = _track_plan(self.story.plan, out.cues)
        self._tokenize(track.tokenizers, todo, plan, track.name, inherited=scene_tokens)
        for cue in todo:
            for kind, tok in scene_tokens[cue.index].items():
                cue.tokens.setdefault(kind, tok)
        gen = track.generator
        seed = track.settings.seed if track.settings.seed is not None else plan.seed
        ctx = RenderContext(plan=plan, seed=seed, component=gen.name, progress=self._progress(startup),
                            story=self.story, track=track.name)
        tf = self._track_folder(track)
        batches = [todo] if gen.batching else [[c] for c in todo]
        done = 0
        label = gen.name if track.name == gen.name else f"{gen.name} ({track.name})"
        _emit(self.progress, "generate", label, 0, len(todo))
        for batch in batches:
            wanted = {c.index for c in batch}
            try:
                for asset in gen.generate(batch, ctx):
                    startup.open()
                    _check_asset(gen, asset, wanted)
                    if tf is not None:
                        tf.save_asset(asset)
                    wanted.discard(asset.scene_index)  # after the save: a failed save names its cue
                    self._record(track, out.cue(asset.scene_index), asset)
                    done += 1
                    _emit(self.progress, "generate", label, done, len(todo), asset.scene_index,
                          unit="scene" if track.planner is None else "cue")
                    if self.stop.is_set():  # a finished asset is kept (saved above), then the track stops
                        raise _Stopped("stopped: another track rendering side by side failed")
            except StorySDKError:
                raise
            except Exception as exc:
                where = f"; finished assets are saved in {self.folder.root}, run again to resume" if self.folder else ""
                what = "scenes" if track.planner is None else "cues"
                _add_note(exc, f"storysdk: while generator {gen.name!r} rendered {what} {sorted(wanted)} of track "
                               f"{track.name!r}{where}")
                raise
            if wanted:
                raise ComponentError(
                    f"generator {gen.name!r} made no asset for scene(s) {sorted(wanted)} of track {track.name!r}; "
                    "a generator must yield one asset per scene it is given"
                )

    # -- composing --------------------------------------------------------------------------
    def _compose(self) -> None:
        story, folder, progress, pipe = self.story, self.folder, self.progress, self.pipe
        if folder is None:
            return
        failures: list[tuple[str, BaseException]] = []
        written: dict[Path, str] = {}
        n = len(pipe.composers)
        for i, (comp, sub) in enumerate(zip(pipe.composers, pipe._composer_dirs)):
            key = f"{sub}/{comp.name}" if sub else comp.name
            needed = comp.requires
            if needed and not any(t.assets and t.modality in needed for t in story.all_tracks().values()):
                _emit(progress, "compose", key, i, n, message=f"skipped: no {'/'.join(needed)}")
                continue
            _emit(progress, "compose", key, i, n)
            out_dir = folder.root / sub if sub else folder.root
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                paths = [Path(p) for p in comp.compose(story, out_dir)]
            except Exception as exc:  # noqa: BLE001 - the other composers still run
                failures.append((key, exc))
                continue
            clash = [(p, written[p.resolve()]) for p in paths if p.resolve() in written]
            for p in paths:
                written.setdefault(p.resolve(), key)
            story.files[key] = paths
            if clash:
                path, other = clash[0]
                failures.append((key, ComponentError(
                    f"composer {key!r} wrote {path.name}, which composer {other!r} had written: give one of them its "
                    f"own dir = \"{comp.name}-2\" or another file name")))
                continue
            _emit(progress, "compose", key, i + 1, n)
        manifest = {name: [str(p.relative_to(folder.root)) if p.is_relative_to(folder.root) else str(p)
                           for p in paths] for name, paths in story.files.items()}
        with atomic_write(folder.root / "files.json", "w") as fh:
            fh.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if failures:
            name, first = failures[0]
            names_failed = ", ".join(n for n, _ in failures)
            raise ComponentError(
                f"composer(s) {names_failed} failed ({type(first).__name__}: {first}); the tracks' assets and the "
                f"other composers' files are saved in {folder.root}"
            ) from first


def _check_texts(track: PipelineTrack, plan: StoryPlan) -> None:
    """A track's text template naming a text no scene of ``plan`` has (``{ambiance}`` for
    ``{ambience}``) would leave the track silently empty: a ConfigError naming the texts there are."""
    if not plan.scenes:
        return
    have = {k for s in plan.scenes for k, v in s.texts.items() if v.strip()}
    for field in check_template(track.settings.text, track=track.name):
        if field in SCENE_FIELDS or field in have:
            continue
        known = ", ".join(f"{{{k}}}" for k in sorted(have)) or "none"
        raise ConfigError(
            f"track {track.name!r}: its text {track.settings.text!r} names {{{field}}}, which no scene of the plan has, "
            f"so the track would stay empty.{suggest(field, have)} The scenes' texts: {known}; every scene has "
            "{prompt}, {caption} and {narration}"
        )


def _check_cues(track: PipelineTrack, cues: object, timeline: Timeline) -> None:
    assert track.planner is not None
    who = f"track planner {track.planner.name!r} (track {track.name!r})"
    if not isinstance(cues, list) or not all(isinstance(c, Cue) for c in cues):
        raise ComponentError(f"{who} must return a list of storysdk.Cue objects, got {type(cues).__name__}")
    _check_indices(cues, who)
    scenes = {s.index for s in timeline.scenes}
    for c in cues:
        if c.scene not in scenes:
            raise ComponentError(f"{who}: cue {c.index} belongs to scene {c.scene}, which the story does not have")
        if c.start < 0 or c.start > timeline.total + 1e-6:
            raise ComponentError(f"{who}: cue {c.index} starts at {c.start:.3f} s, outside the story's "
                                 f"0-{timeline.total:.3f} s")


def _emit(
    progress: ProgressCallback | None,
    stage: str,
    component: str,
    done: int,
    total: int,
    scene_index: int | None = None,
    message: str = "",
    unit: str = "scene",
) -> None:
    if progress is not None:
        progress(ProgressEvent(stage, component, done, total, scene_index, message, unit))


def _check_indices(scenes: Iterable[Scene], who: str) -> None:
    seen: set[int] = set()
    for s in scenes:
        if s.index in seen:
            raise ComponentError(f"{who} produced two scenes with index {s.index}; scene indices must be unique")
        seen.add(s.index)


def _check_asset(gen: Generator, asset: object, wanted: set[int]) -> None:  # noqa: D103
    expected = ImageAsset if gen.modality == "image" else AudioAsset
    if not isinstance(asset, expected):
        raise ComponentError(
            f"generator {gen.name!r} (modality {gen.modality}) yielded {type(asset).__name__}; "
            f"it must yield {expected.__name__} objects"
        )
    if asset.scene_index not in wanted:
        raise ComponentError(
            f"generator {gen.name!r} yielded an asset for scene {asset.scene_index}, which it was not asked "
            f"for (or twice); asked for {sorted(wanted)}"
        )

