"""Pipeline.check_plan: every component may refuse a plan before anything is rendered."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import storysdk
from storysdk import ConfigError, Generator, ImageAsset, Pipeline, RenderContext, Scene, StoryPlan, StoryRequest
from storysdk.testing import make_registry


class Picky(Generator):
    """Refuses plans with a scene whose prompt mentions 'dragon'; records every call."""

    name = "picky"
    calls: list[str] = []

    def check_plan(self, plan: StoryPlan) -> None:
        type(self).calls.append(f"check:{len(plan.scenes)}")
        for scene in plan.scenes:
            if "dragon" in scene.prompt:
                raise ConfigError(f"scene {scene.index}: picky cannot draw dragons; remove the dragon")

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[ImageAsset]:
        from PIL import Image

        for s in scenes:
            type(self).calls.append(f"generate:{s.index}")
            yield ImageAsset(s.index, Image.new("RGB", (8, 8)), made_by=self.name)


class _Plugin:
    @storysdk.hookimpl
    def register_generators(self, register: Any) -> None:
        register(Picky)


@pytest.fixture(autouse=True)
def _reset() -> None:
    Picky.calls = []


def test_a_refused_plan_stops_the_run_before_any_asset(tmp_path: Path) -> None:
    pipe = Pipeline(planner="fake-planner", generators=["picky"], registry=make_registry(_Plugin()))
    with pytest.raises(ConfigError, match="scene 1: picky cannot draw dragons"):
        pipe.run(StoryRequest(script="a castle\na dragon\na knight"), out_dir=tmp_path)
    assert Picky.calls == ["check:3"]
    assert not (tmp_path / "images").exists()


def test_accepted_plans_are_checked_once_then_rendered(tmp_path: Path) -> None:
    pipe = Pipeline(planner="fake-planner", generators=["picky"], registry=make_registry(_Plugin()))
    story = pipe.run(StoryRequest(script="a castle\na knight"), out_dir=tmp_path)
    assert Picky.calls == ["check:2", "generate:0", "generate:1"] and sorted(story.images) == [0, 1]


def test_a_given_plan_is_checked_too(tmp_path: Path) -> None:
    pipe = Pipeline(planner="fake-planner", generators=["picky"], registry=make_registry(_Plugin()))
    plan = StoryPlan(scenes=[Scene(index=0, prompt="a dragon")])
    with pytest.raises(ConfigError, match="dragons"):
        pipe.run(StoryRequest(), plan=plan, out_dir=tmp_path)


def test_interleaved_plans_are_checked_after_every_step(tmp_path: Path) -> None:
    pipe = Pipeline(planner="fake-interleaved", generators=["picky"], registry=make_registry(_Plugin()), max_scenes=3)
    pipe.run(StoryRequest(prompt="a castle", num_scenes=3), out_dir=tmp_path)
    assert Picky.calls == ["check:1", "generate:0", "check:2", "generate:1", "check:3", "generate:2"]


def test_the_default_check_accepts_every_plan() -> None:
    from storysdk.testing import FakeComposer, FakeImageGenerator, FakePlanner, FakeTokenizer

    plan = StoryPlan(scenes=[Scene(index=0, prompt="a dragon")])
    for cls in (FakeComposer, FakeImageGenerator, FakePlanner, FakeTokenizer):
        assert cls().check_plan(plan) is None
