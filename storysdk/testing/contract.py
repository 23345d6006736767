"""The contract every component keeps, as a shared test suite (like diffusers' ``PipelineTesterMixin``).

Subclass the class for your component's kind in a test module, say which component and how to
run it fast, and pytest collects the checks::

    from storysdk import StoryRequest
    from storysdk.testing.contract import GeneratorContract

    import my_plugin.plugin


    class TestShapesContract(GeneratorContract):
        plugins = (my_plugin.plugin,)
        name = "shapes"
        options = {"size": 32}
        bad_options = [({"size": 3}, "size")]
        request = StoryRequest(script="[NC] a red circle\\n[NC] a blue square", seed=3)

What is checked, for every kind:

- the options are declared (an ``Options`` class), each with a description, and every
  ``renamed`` entry points at a declared option;
- an unknown option is refused with a "did you mean" suggestion; a value of the wrong type, and
  each of ``bad_options``, is refused with a :class:`~storysdk.errors.ConfigError` naming it;
- ``check_plan`` accepts the plan of ``request`` and refuses each of ``bad_plans``;
- the same seed gives byte-identical files; another seed gives other assets (generators);
- one asset per scene (generators), one ``Tokens`` per scene (tokenizers);
- a track planner's cues (:class:`TrackPlannerContract`) have their own indices, belong to the
  story's scenes and lie within their scenes' spans on the timeline; a resume reuses them;
- a run interrupted after its first asset and run again in the same folder resumes and ends with
  the same files, byte for byte, as an uninterrupted run.

The runs use the fakes of :mod:`storysdk.testing` for the other stages (a ``fake-planner`` or the
``script`` planner, ``fake-image``/``fake-audio`` generators), so each suite tests one component.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from ..errors import ConfigError, StorySDKError
from ..interfaces import Component, ProgressEvent
from ..model import Story, StoryPlan, StoryRequest
from ..pipeline import ComponentSpec, Pipeline
from ..registry import Registry
from . import make_registry

__all__ = [
    "ComponentContract",
    "ComposerContract",
    "GeneratorContract",
    "PlannerContract",
    "TokenizerContract",
    "TrackPlannerContract",
    "folder_bytes",
]


class _Interrupt(Exception):
    """Raised from the progress callback to stop a run after its first asset."""


def folder_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), for byte-for-byte comparisons."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _wrong_value(annotation: Any) -> object | None:
    """A value of a type the annotation does not admit, or ``None`` when it admits anything."""
    args = typing.get_args(annotation)
    if annotation is Any or Any in args or annotation is object:
        return None
    return object()


class ComponentContract:
    """Checks shared by every kind. Set ``name`` (registered name), ``options`` (fast ones),
    ``plugins`` (plugin modules to register besides the built-ins and fakes), ``request``,
    ``bad_options`` (``[(options, text the error names)]``, at least one) and ``bad_plans``
    (``[(callable returning a StoryPlan, text the error names)]``, optional)."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Any]] = {}
    plugins: ClassVar[Sequence[object]] = ()
    request: ClassVar[StoryRequest] = StoryRequest(script="a lighthouse at dusk\na ship in the fog", seed=7)
    bad_options: ClassVar[Sequence[tuple[Mapping[str, Any], str]]] = ()
    bad_plans: ClassVar[Sequence[tuple[Callable[[], StoryPlan], str]]] = ()

    # -- what subclasses may override ------------------------------------------------------
    def registry(self) -> Registry:
        return make_registry(*self.plugins)

    def spec(self, **extra: Any) -> tuple[str, dict[str, Any]]:
        return (self.name, {**self.options, **extra})

    def pipeline(self, registry: Registry, **extra: Any) -> Pipeline:
        """The pipeline the runs use (each kind builds one around its component)."""
        raise NotImplementedError

    def produced(self, story: Story, out: Path) -> dict[str, bytes]:
        """What must be identical between runs: every file of the output folder."""
        return folder_bytes(out)

    # -- helpers ---------------------------------------------------------------------------
    def _run(self, out: Path, *, seed: int | None = None, stop_after_first: bool = False) -> Story:
        pipe = self.pipeline(self.registry())
        request = self.request if seed is None else attrs.evolve(self.request, seed=seed)
        if not stop_after_first:
            return pipe.run(request, out_dir=out)

        def progress(ev: ProgressEvent) -> None:
            if ev.stage == "generate" and ev.done >= 1 and ev.scene_index is not None:
                raise _Interrupt(ev.component)

        with pytest.raises(_Interrupt):
            pipe.run(request, out_dir=out, progress=progress)
        return pipe.run(request, out_dir=out)

    def _component(self, **extra: Any) -> Component:
        return self.registry().create(self.kind, self.name, **{**self.options, **extra})

    # -- the checks ------------------------------------------------------------------------
    def test_options_are_declared_and_described(self) -> None:
        info = self.registry().get(self.kind, self.name)
        assert info.declared(), f"{self.kind} {self.name!r} declares no Options class"
        for opt in info.option_info():
            assert opt.description.strip(), f"option {opt.name!r} of {self.name!r} has no description"
        declared = set(info.options())
        for old, new in info.renamed().items():
            assert new in declared, f"renamed {old!r} -> {new!r}, but {new!r} is not an option"
            assert old not in declared

    def test_unknown_option_is_refused_with_a_suggestion(self) -> None:
        names = list(self.registry().get(self.kind, self.name).options())
        if not names:
            with pytest.raises(ConfigError, match="has no option"):
                self._component(no_such_option=1)
            return
        typo = names[0] + "x"
        with pytest.raises(ConfigError, match=f"Did you mean '{names[0]}'"):
            self._component(**{typo: 1})

    def test_wrong_types_are_refused(self) -> None:
        info = self.registry().get(self.kind, self.name)
        fields = info.factory.Options.model_fields
        for key, field in fields.items():
            if key in self.options:
                continue
            bad = _wrong_value(field.annotation)
            if bad is None:
                continue
            with pytest.raises(ConfigError, match=key):
                self._component(**{key: bad})

    def test_bad_options_are_refused(self) -> None:
        assert self.bad_options or not self.registry().get(self.kind, self.name).options(), (
            "list at least one refused option value in bad_options"
        )
        for opts, needle in self.bad_options:
            with pytest.raises(ConfigError) as err:
                self._component(**opts)
            assert needle in str(err.value), f"{opts!r}: {err.value}"

    def test_renamed_options_name_their_successor(self) -> None:
        info = self.registry().get(self.kind, self.name)
        for old, new in info.renamed().items():
            with pytest.raises(ConfigError, match=f"renamed to '{new}'"):
                self._component(**{old: 1})

    def test_check_plan(self) -> None:
        pipe = self.pipeline(self.registry())
        comp = self._find(pipe)
        comp.check_plan(pipe.plan(self.request))  # the contract's own plan is accepted
        for make_plan, needle in self.bad_plans:
            with pytest.raises(StorySDKError) as err:
                comp.check_plan(make_plan())
            assert needle in str(err.value), str(err.value)

    def _find(self, pipe: Pipeline) -> Component:
        for comp in pipe.components():
            if comp.kind == self.kind and comp.name == self.name:
                return comp
        raise AssertionError(f"the contract's pipeline has no {self.kind} {self.name!r}")

    @pytest.fixture(scope="class")
    @classmethod
    def reference(cls, tmp_path_factory: pytest.TempPathFactory) -> tuple[Story, Path, dict[str, bytes]]:
        """One uninterrupted run of the contract's request, shared by the checks of a class."""
        suite = cls()
        out = tmp_path_factory.mktemp(f"{cls.kind}-{cls.name}") / "reference"
        story = suite._run(out)
        return story, out, suite.produced(story, out)

    def test_same_seed_gives_identical_files(self, reference: Any, tmp_path: Path) -> None:
        again = self._run(tmp_path / "again")
        assert self.produced(again, tmp_path / "again") == reference[2]

    def test_resume_gives_identical_files(self, reference: Any, tmp_path: Path) -> None:
        resumed = self._run(tmp_path / "resumed", stop_after_first=True)
        assert self.produced(resumed, tmp_path / "resumed") == reference[2]


class GeneratorContract(ComponentContract):
    """A generator rendered after ``planner`` (default: ``fake-planner``) with ``tokenizers``."""

    kind: ClassVar[str] = "generator"
    planner: ClassVar[ComponentSpec] = "fake-planner"
    tokenizers: ClassVar[Sequence[ComponentSpec]] = ()

    def pipeline(self, registry: Registry, **extra: Any) -> Pipeline:
        return Pipeline(
            planner=self.planner, tokenizers=list(self.tokenizers), generators=[self.spec(**extra)], registry=registry
        )

    def test_one_asset_per_scene(self, reference: Any) -> None:
        story = reference[0]
        gen = self._find(self.pipeline(self.registry()))
        scenes = [s.index for s in story.plan.scenes]
        assert len(scenes) >= 2, "give the contract a request with at least two scenes"
        assets = story.assets(gen.modality)  # type: ignore[attr-defined]
        assert sorted(assets) == sorted(scenes)
        assert all(a.scene_index == i for i, a in assets.items())

    def test_other_seed_gives_other_assets(self, reference: Any, tmp_path: Path) -> None:
        self._run(tmp_path / "b", seed=self.request.seed + 1)
        gen = self._find(self.pipeline(self.registry()))
        folder = f"tracks/{gen.name}/"  # the generators=[...] shorthand names the track after its generator
        files_a = {k: v for k, v in folder_bytes(reference[1]).items() if k.startswith(folder)}
        files_b = {k: v for k, v in folder_bytes(tmp_path / "b").items() if k.startswith(folder)}
        assert files_a and files_a != files_b


class PlannerContract(ComponentContract):
    """A planner (plan, then render, or interleaved) with ``generators`` (default: ``fake-image``)."""

    kind: ClassVar[str] = "planner"
    generators: ClassVar[Sequence[ComponentSpec]] = ("fake-image",)

    def pipeline(self, registry: Registry, **extra: Any) -> Pipeline:
        return Pipeline(planner=self.spec(**extra), generators=list(self.generators), registry=registry)

    def test_plan_is_deterministic_and_round_trips(self) -> None:
        pipe = self.pipeline(self.registry())
        one, two = pipe.plan(self.request), pipe.plan(self.request)
        assert one.to_dict() == two.to_dict()
        assert StoryPlan.from_dict(one.to_dict()).to_dict() == one.to_dict()
        indices = [s.index for s in one.scenes]
        assert indices == sorted(set(indices)) and indices

    def test_every_scene_is_rendered(self, reference: Any) -> None:
        story = reference[0]
        assert len(story.plan.scenes) >= 2, "give the contract a request with at least two scenes"
        assert sorted(story.images) == sorted(s.index for s in story.plan.scenes)


class TokenizerContract(ComponentContract):
    """A tokenizer ahead of ``generators`` (default: ``fake-image``), after ``planner``."""

    kind: ClassVar[str] = "tokenizer"
    planner: ClassVar[ComponentSpec] = "fake-planner"
    generators: ClassVar[Sequence[ComponentSpec]] = ("fake-image",)

    def pipeline(self, registry: Registry, **extra: Any) -> Pipeline:
        return Pipeline(
            planner=self.planner, tokenizers=[self.spec(**extra)], generators=list(self.generators), registry=registry
        )

    def test_one_tokens_per_scene_of_the_declared_kind(self, reference: Any) -> None:
        story = reference[0]
        tok = self._find(self.pipeline(self.registry()))
        produces = tok.produces  # type: ignore[attr-defined]
        assert produces, f"tokenizer {self.name!r} declares no 'produces' token kind"
        assert len(story.plan.scenes) >= 2, "give the contract a request with at least two scenes"
        for scene in story.plan.scenes:
            assert produces in scene.tokens and scene.tokens[produces].kind == produces


class ComposerContract(ComponentContract):
    """A composer over a story from ``planner`` and ``generators`` (default: fake image and audio)."""

    kind: ClassVar[str] = "composer"
    planner: ClassVar[ComponentSpec] = "fake-planner"
    generators: ClassVar[Sequence[ComponentSpec]] = ("fake-image", "fake-audio")

    def pipeline(self, registry: Registry, **extra: Any) -> Pipeline:
        return Pipeline(
            planner=self.planner, generators=list(self.generators), composers=[self.spec(**extra)], registry=registry
        )

    def test_writes_its_files_inside_the_folder_and_lists_them(self, reference: Any) -> None:
        story, out, _ = reference
        files = story.files.get(self.name)
        assert files, f"composer {self.name!r} wrote no file"
        for f in files:
            assert f.is_file() and f.resolve().is_relative_to(out.resolve())
        import json

        manifest = json.loads((out / "files.json").read_text(encoding="utf-8"))
        assert sorted(manifest[self.name]) == sorted(str(f.relative_to(out)) for f in files)


class TrackPlannerContract(ComponentContract):
    """A track planner (``plans_tracks``) planning the cues of a track ``track`` rendered by
    ``generator`` (default ``fake-audio``, with ``text`` and the track's ``tokenizers``), next to a
    ``fake-image`` track, in a story planned by ``planner`` (default ``fake-planner``)."""

    kind: ClassVar[str] = "planner"
    planner: ClassVar[ComponentSpec] = "fake-planner"
    generator: ClassVar[ComponentSpec] = "fake-audio"
    text: ClassVar[str] = "{prompt}"
    tokenizers: ClassVar[Sequence[ComponentSpec]] = ()
    track: ClassVar[str] = "events"

    def pipeline(self, registry: Registry, **extra: Any) -> Pipeline:
        return Pipeline(planner=self.planner, tracks={
            "frames": {"generator": "fake-image"},
            self.track: {"planner": self.spec(**extra), "generator": self.generator, "text": self.text,
                         "tokenizers": list(self.tokenizers)},
        }, registry=registry)

    def test_declares_plans_tracks(self) -> None:
        comp = self._component()
        assert getattr(comp, "plans_tracks", False), f"planner {self.name!r} does not declare plans_tracks = True"

    def test_cues_lie_within_their_scenes(self, reference: Any) -> None:
        story = reference[0]
        track = story.tracks[self.track]
        assert track.cues, f"planner {self.name!r} planned no cue for the contract's request"
        indices = [c.index for c in track.cues]
        assert len(indices) == len(set(indices)), f"cue indices repeat: {indices}"
        scenes = {s.index for s in story.plan.scenes}
        for cue in track.cues:
            assert cue.scene in scenes, f"cue {cue.index} belongs to scene {cue.scene}, not one of the plan's"
            span = story.timeline.scene(cue.scene)
            end = cue.start + (cue.duration or 0.0)
            assert span.start - 1e-6 <= cue.start and end <= span.end + 1e-6, (
                f"cue {cue.index} ({cue.start:.3f}-{end:.3f} s) is outside scene {cue.scene} "
                f"({span.start:.3f}-{span.end:.3f} s)")
        assert sorted(track.assets) == sorted(indices)

    def test_saved_cues_are_the_planned_ones(self, reference: Any) -> None:
        import json

        story, out, _ = reference
        saved = json.loads((out / "tracks" / self.track / "cues.json").read_text(encoding="utf-8"))
        assert saved["planner"] == self.name
        assert saved["cues"] == [c.to_dict() for c in story.tracks[self.track].cues]
