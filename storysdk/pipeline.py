"""The pipeline: planner -> tokenizers -> generators -> composers, in both story shapes (docs/data-flow.md).

*Plan, then render*: the planner writes every scene first; each generator then renders all
pending scenes (in one call when it batches). *Interleaved*: the planner writes the opening
scenes, and after each scene is rendered it is stepped for the next one with the assets
made so far.

With ``out_dir`` every asset is saved the moment it exists, with the plan; running the same
pipeline on the same request and folder again resumes: finished scenes are loaded, not
rendered again, and the final files are byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

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
)
from .limits import Limits
from .model import MODALITIES, AudioAsset, ImageAsset, Scene, Story, StoryPlan, StoryRequest
from .output import OutputFolder, atomic_write, fingerprint
from .options import suggest, validate_options
from .registry import KINDS, ComponentInfo, Registry, get_registry

__all__ = ["ComponentSpec", "Pipeline"]

#: A component given by name, by ``(name, options)``, by ``{"name": ..., **options}``, or as an instance.
ComponentSpec = Union[str, tuple[str, Mapping[str, Any]], Mapping[str, Any], Component]

DEFAULT_MAX_SCENES = 64


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(note)


class Pipeline:
    """A planner, tokenizers, generators (at most one per modality) and composers.

    >>> pipe = Pipeline(planner="script", generators=[("diffusers-image", {"preset": "tiny"})],
    ...                 composers=["comic"])                                   # doctest: +SKIP
    >>> story = pipe.run(StoryRequest(script="...", seed=1), out_dir="out")   # doctest: +SKIP

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
        self._specs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
        self.planner: Planner = self._build("planner", planner)  # type: ignore[assignment]
        self.tokenizers: list[Tokenizer] = [self._build("tokenizer", s) for s in tokenizers]  # type: ignore[misc]
        self.generators: list[Generator] = [self._build("generator", s) for s in generators]  # type: ignore[misc]
        self.composers: list[Composer] = [self._build("composer", s) for s in composers]  # type: ignore[misc]
        self._check_defaults()
        if max_scenes < 1:
            raise ConfigError(f"max_scenes must be at least 1, got {max_scenes}")
        self.max_scenes = max_scenes
        seen: dict[str, str] = {}
        for g in self.generators:
            if g.modality not in MODALITIES:
                raise ConfigError(
                    f"generator {g.name!r} declares modality {g.modality!r}; use one of {', '.join(MODALITIES)}"
                )
            if g.modality in seen:
                raise ConfigError(
                    f"two {g.modality} generators ({seen[g.modality]!r} and {g.name!r}); a pipeline takes "
                    "one generator per modality — build a second pipeline for the other one"
                )
            seen[g.modality] = g.name

    # -- construction ----------------------------------------------------------------------
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
        for comp in self.components():
            used = weights_of(comp)
            if used is not None:
                out[f"{comp.kind} {comp.name}"] = used
        return out

    def components(self) -> list[Component]:
        """Every component of the pipeline: planner, tokenizers, generators, composers."""
        return [self.planner, *self.tokenizers, *self.generators, *self.composers]

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
        (before any model is loaded)."""
        self._limits.check_plan(plan)
        for comp in self.components():
            comp.check_plan(plan)

    def describe(self) -> dict[str, Any]:
        """The components with their options, as JSON-able data (part of the run fingerprint)."""
        return {k: list(v) for k, v in self._specs.items()}

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
        """Plan (unless ``plan`` is given), render and compose a story.

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
            return self._run_claimed(request, folder, plan, progress, overwrite)
        finally:
            if folder is not None:
                folder.release()

    def _run_claimed(
        self,
        request: StoryRequest,
        folder: OutputFolder | None,
        plan: StoryPlan | None,
        progress: ProgressCallback | None,
        overwrite: bool,
    ) -> Story:
        resumed = False
        weights = self.weights()
        if folder is not None:
            run_info = {
                "request": request.to_dict(),
                "pipeline": self.describe(),
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
            plan = self.plan(request, progress=progress)
        else:
            _check_indices(plan.scenes, "the given plan")
        self.check_plan(plan)
        if folder is not None:
            folder.save_plan(plan)
            for scene in plan.scenes:
                folder.save_tokens(scene)
        story = Story(plan=plan, out_dir=folder.root if folder is not None else None, weights=weights)
        if folder is not None:
            self._load_finished(story, folder, progress)

        if self.planner.interleaved:
            self._run_interleaved(request, story, folder, progress)
        else:
            self._render(story, list(plan.scenes), folder, progress)

        self._compose(story, folder, progress)
        return story

    def _load_finished(self, story: Story, folder: OutputFolder, progress: ProgressCallback | None = None) -> None:
        """Load every saved asset of the plan's scenes, verified; a damaged one is removed (and
        so rendered again) with a ``resume`` progress event naming the file and the problem."""
        plan = story.plan
        size = (plan.width, plan.height) if plan.width and plan.height else None
        for g in self.generators:
            for scene in plan.scenes:

                def damaged(path: Path, problem: str, g: Generator = g, index: int = scene.index) -> None:
                    rel = path.relative_to(folder.root).as_posix() if path.is_relative_to(folder.root) else str(path)
                    _emit(progress, "resume", g.name, 1, 1, index, message=f"{rel} is damaged ({problem}); rendering it again")

                asset = (
                    folder.load_image(scene.index, g.name, size=size, damaged=damaged)
                    if g.modality == "image"
                    else folder.load_audio(scene.index, g.name, damaged=damaged)
                )
                if asset is not None:
                    story.add(asset)

    def _run_interleaved(
        self,
        request: StoryRequest,
        story: Story,
        folder: OutputFolder | None,
        progress: ProgressCallback | None,
    ) -> None:
        plan = story.plan
        limit = min(request.num_scenes or self.max_scenes, self.max_scenes)
        if self._limits.scenes is not None:  # an interleaved story stops at the scenes limit
            limit = min(limit, int(self._limits.scenes))
        ctx = StepContext(request=request, plan=plan, story=story, component=self.planner.name, progress=progress)
        self._render(story, list(plan.scenes), folder, progress)
        while len(plan.scenes) < limit:
            _emit(progress, "plan", self.planner.name, len(plan.scenes), limit, message="next scene")
            try:
                scene = self.planner.step(ctx)
            except StorySDKError:
                raise
            except Exception as exc:
                _add_note(exc, f"storysdk: while planner {self.planner.name!r} wrote scene {ctx.next_index}")
                raise
            if scene is None:
                break
            if not isinstance(scene, Scene):
                raise ComponentError(
                    f"planner {self.planner.name!r} step() returned {type(scene).__name__}, not a Scene or None"
                )
            plan.scenes.append(scene)
            _check_indices(plan.scenes, self.planner.name)
            self.check_plan(plan)
            if folder is not None:
                folder.save_plan(plan)
                folder.save_tokens(scene)
            self._render(story, [scene], folder, progress)

    def _render(
        self,
        story: Story,
        scenes: list[Scene],
        folder: OutputFolder | None,
        progress: ProgressCallback | None,
    ) -> None:
        plan = story.plan
        pending_any = [
            s for s in scenes if any(s.index not in story.assets(g.modality) for g in self.generators)
        ]
        for tok in self.tokenizers:
            todo = [s for s in pending_any if tok.produces not in s.tokens or not tok.produces]
            if not todo:
                continue
            ctx = RenderContext(plan=plan, seed=plan.seed, component=tok.name, progress=progress, story=story)
            _emit(progress, "tokenize", tok.name, 0, len(todo))
            made = tok.tokenize(todo, ctx)
            if len(made) != len(todo):
                raise ComponentError(
                    f"tokenizer {tok.name!r} returned {len(made)} Tokens for {len(todo)} scenes; it must return one per scene"
                )
            for scene, t in zip(todo, made):
                scene.tokens[t.kind] = t
            _emit(progress, "tokenize", tok.name, len(todo), len(todo))

        for gen in self.generators:
            have = story.assets(gen.modality)
            todo = [s for s in scenes if s.index not in have]
            if not todo:
                continue
            ctx = RenderContext(plan=plan, seed=plan.seed, component=gen.name, progress=progress, story=story)
            batches = [todo] if gen.batching else [[s] for s in todo]
            done = 0
            _emit(progress, "generate", gen.name, 0, len(todo))
            for batch in batches:
                wanted = {s.index for s in batch}
                try:
                    for asset in gen.generate(batch, ctx):
                        _check_asset(gen, asset, wanted)
                        if folder is not None:
                            folder.save_asset(asset)
                        wanted.discard(asset.scene_index)  # after the save: a failed save names its scene
                        story.add(asset)
                        done += 1
                        _emit(progress, "generate", gen.name, done, len(todo), asset.scene_index)
                except StorySDKError:
                    raise
                except Exception as exc:
                    where = f"; finished assets are saved in {folder.root}, run again to resume" if folder else ""
                    _add_note(exc, f"storysdk: while generator {gen.name!r} rendered scenes {sorted(wanted)}{where}")
                    raise
                if wanted:
                    raise ComponentError(
                        f"generator {gen.name!r} made no asset for scene(s) {sorted(wanted)}; "
                        "a generator must yield one asset per scene it is given"
                    )

    def _compose(self, story: Story, folder: OutputFolder | None, progress: ProgressCallback | None) -> None:
        if folder is None:
            return
        failures: list[tuple[str, BaseException]] = []
        for i, comp in enumerate(self.composers):
            needed = comp.requires
            if needed and not any(story.assets(m) for m in needed):
                _emit(progress, "compose", comp.name, i, len(self.composers), message=f"skipped: no {'/'.join(needed)}")
                continue
            _emit(progress, "compose", comp.name, i, len(self.composers))
            try:
                paths = comp.compose(story, folder.root)
            except Exception as exc:  # noqa: BLE001 - the other composers still run
                failures.append((comp.name, exc))
                continue
            story.files[comp.name] = [Path(p) for p in paths]
            _emit(progress, "compose", comp.name, i + 1, len(self.composers))
        manifest = {name: [str(p.relative_to(folder.root)) if p.is_relative_to(folder.root) else str(p)
                           for p in paths] for name, paths in story.files.items()}
        with atomic_write(folder.root / "files.json", "w") as fh:
            fh.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if failures:
            name, first = failures[0]
            names = ", ".join(n for n, _ in failures)
            raise ComponentError(
                f"composer(s) {names} failed ({type(first).__name__}: {first}); the scenes' assets and the "
                f"other composers' files are saved in {folder.root}"
            ) from first


def _emit(
    progress: ProgressCallback | None,
    stage: str,
    component: str,
    done: int,
    total: int,
    scene_index: int | None = None,
    message: str = "",
) -> None:
    if progress is not None:
        progress(ProgressEvent(stage, component, done, total, scene_index, message))


def _check_indices(scenes: Iterable[Scene], who: str) -> None:
    seen: set[int] = set()
    for s in scenes:
        if s.index in seen:
            raise ComponentError(f"{who} produced two scenes with index {s.index}; scene indices must be unique")
        seen.add(s.index)


def _check_asset(gen: Generator, asset: object, wanted: set[int]) -> None:
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

