"""Fake components: deterministic, instant, no models (like httpx's ``MockTransport``).

They follow every rule real components follow (declared options, per-scene seeds, one asset
per scene, yield as soon as ready), so pipeline and plugin tests can mix them with real
components.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..interfaces import Composer, Generator, Planner, RenderContext, StepContext, Tokenizer, TrackContext
from ..model import AudioAsset, Cue, ImageAsset, Modality, Scene, Story, StoryPlan, StoryRequest, Tokens
from ..options import Field, Options
from ..output import atomic_write

__all__ = [
    "FakeAudioGenerator",
    "FakeComposer",
    "FakeEventPlanner",
    "FakeImageGenerator",
    "FakeInterleavedPlanner",
    "FakePlanner",
    "FakeTokenizer",
]


class FakePlanner(Planner):
    """One scene per line of ``request.script`` (or ``num_scenes`` copies of ``request.prompt``)."""

    name = "fake-planner"
    description = "one scene per script line; for tests"

    class Options(Options):
        duration: float = Field(1.0, gt=0, allow_inf_nan=False, description="seconds each scene lasts")

    def plan(self, request: StoryRequest) -> StoryPlan:
        if request.script:
            lines = [ln.strip() for ln in request.script.splitlines() if ln.strip()]
        else:
            lines = [f"{request.prompt} {i}".strip() for i in range(request.num_scenes or 3)]
        scenes = [
            Scene(index=i, prompt=ln, caption=ln, duration=self.options.duration) for i, ln in enumerate(lines)
        ]
        return StoryPlan(
            scenes=scenes,
            style=request.style,
            width=request.width,
            height=request.height,
            seed=request.seed,
            planner=self.name,
        )


class FakeInterleavedPlanner(Planner):
    """An interleaved planner: each next scene's prompt quotes the mean colour of the last picture.

    That makes every scene depend on the assets made before it, as in SEED-Story.
    """

    name = "fake-interleaved"
    interleaved = True
    description = "interleaved planner whose scenes depend on earlier pictures; for tests"

    class Options(Options):
        duration: float = Field(1.0, gt=0, allow_inf_nan=False, description="seconds each scene lasts")

    def plan(self, request: StoryRequest) -> StoryPlan:
        first = Scene(index=0, prompt=request.prompt or "opening", caption="opening", duration=self.options.duration)
        return StoryPlan(
            scenes=[first], width=request.width, height=request.height, seed=request.seed, planner=self.name
        )

    def step(self, ctx: StepContext) -> Scene | None:
        last = ctx.plan.scenes[-1]
        img = ctx.story.images.get(last.index)
        mean = "none" if img is None else ",".join(
            str(int(v)) for v in np.asarray(img.image, dtype=np.float64).mean(axis=(0, 1))
        )
        ctx.state["steps"] = ctx.state.get("steps", 0) + 1
        i = ctx.next_index
        return Scene(index=i, prompt=f"after {mean}", caption=f"scene {i}", duration=self.options.duration)


def _rng(ctx: RenderContext, scene: Scene) -> np.random.Generator:
    return np.random.default_rng(ctx.scene_seed(scene))


class FakeImageGenerator(Generator):
    """A seeded noise picture per scene, tinted by a hash of the prompt.

    ``fail_scenes`` makes it raise a ``RuntimeError`` when it reaches one of those scenes (after
    yielding the scenes before it), to test how failures are reported and resumed.
    """

    name = "fake-image"
    description = "seeded noise pictures; for tests"
    modality: ClassVar[Modality] = "image"
    batching = True

    class Options(Options):
        width: int | None = Field(None, ge=1, description="picture width in pixels; None: the plan's, else 64")
        height: int | None = Field(None, ge=1, description="picture height in pixels; None: the plan's, else 64")
        fail_scenes: list[int] = Field(
            default_factory=list, description="scene indices whose rendering raises RuntimeError (failure tests)"
        )

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[ImageAsset]:
        w = self.options.width or ctx.plan.width or 64
        h = self.options.height or ctx.plan.height or 64
        for scene in scenes:
            if scene.index in self.options.fail_scenes:
                raise RuntimeError(f"fake-image was told to fail on scene {scene.index} (fail_scenes)")
            rng = _rng(ctx, scene)
            tint = np.frombuffer(scene.prompt.encode("utf-8").ljust(3, b"\0")[:3], dtype=np.uint8)
            pix = (rng.integers(0, 128, size=(h, w, 3)) + tint // 2).astype(np.uint8)
            yield ImageAsset(scene.index, Image.fromarray(pix, "RGB"), made_by=self.name)


class FakeAudioGenerator(Generator):
    """A sine per scene whose pitch follows the scene seed; length = the scene's duration."""

    name = "fake-audio"
    description = "seeded sine clips; for tests"
    modality: ClassVar[Modality] = "audio"

    class Options(Options):
        sample_rate: int = Field(8000, ge=1, description="sample rate of the clips in Hz")
        duration: float = Field(
            1.0, gt=0, allow_inf_nan=False, description="seconds of a clip for a scene without a duration"
        )
        channels: int = Field(1, ge=1, description="channels of each clip (the same sine in each)")
        per_character: float | None = Field(
            None, gt=0, allow_inf_nan=False,
            description="seconds per character of the prompt, for a clip whose length its text sets (a voice); "
            "None: the scene's duration",
        )
        fail_scenes: list[int] = Field(
            default_factory=list, description="scene indices whose rendering raises RuntimeError (failure tests)"
        )

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
        opts = self.options
        for scene in scenes:
            if scene.index in opts.fail_scenes:
                raise RuntimeError(f"fake-audio was told to fail on scene {scene.index} (fail_scenes)")
            if opts.per_character is not None:
                seconds = max(len(scene.prompt), 1) * opts.per_character
            else:
                seconds = scene.duration or opts.duration
            n = int(round(seconds * opts.sample_rate))
            freq = 200.0 + float(_rng(ctx, scene).integers(0, 600))
            t = np.arange(n) / opts.sample_rate
            wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
            yield AudioAsset(scene.index, np.tile(wave, (opts.channels, 1)), opts.sample_rate, made_by=self.name)


class FakeEventPlanner(Planner):
    """A track planner: ``per_scene`` cues splitting each scene's span evenly (AudioStory's shape)."""

    name = "fake-events"
    description = "a track planner: even sound events per scene; for tests"
    plans_tracks: ClassVar[bool] = True

    class Options(Options):
        per_scene: int = Field(2, ge=1, le=16, description="cues per scene")

    def plan(self, request: StoryRequest) -> StoryPlan:
        raise ConfigError(
            "fake-events plans a track's cues, not a story: use it as a track's planner "
            "(tracks={'ambience': {'planner': 'fake-events', 'generator': 'fake-audio'}}) and plan the story "
            "with another planner (fake-planner)"
        )

    def plan_track(self, plan: StoryPlan, ctx: TrackContext) -> list[Cue]:
        cues: list[Cue] = []
        n = self.options.per_scene
        for scene in plan.scenes:
            text = ctx.text(scene)
            if text is None:
                continue
            span = ctx.timeline.scene(scene.index)
            for k in range(n):
                cues.append(Cue(index=len(cues), prompt=f"{text} (event {k + 1})", caption=scene.caption,
                                duration=span.duration / n, start=span.start + k * span.duration / n,
                                scene=scene.index))
        return cues


class FakeTokenizer(Tokenizer):
    """Tokens of kind ``fake`` holding the prompt's UTF-8 bytes as a numpy array."""

    name = "fake-tokenizer"
    description = "the prompt's UTF-8 bytes as tokens; for tests"
    produces = "fake"

    def tokenize(self, scenes: Sequence[Scene], ctx: RenderContext) -> list[Tokens]:
        return [
            Tokens(self.produces, self.name, {"bytes": np.frombuffer(s.prompt.encode("utf-8"), dtype=np.uint8).copy()})
            for s in scenes
        ]


class FakeComposer(Composer):
    """Writes ``story.json``: each scene's caption and which assets it has."""

    name = "fake-composer"
    description = "story.json: each scene's caption and assets; for tests"

    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        data = [
            {
                "index": s.index,
                "caption": s.caption,
                "image": s.index in story.images,
                "audio": s.index in story.audio,
            }
            for s in story.plan.scenes
        ]
        path = Path(out_dir) / "story.json"
        with atomic_write(path, "w") as fh:
            json.dump(data, fh, indent=2)
        return [path]
