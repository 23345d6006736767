"""Cancellation inside SEED-Story: the MLLM reports before every forward call (the cancellation
point), the de-tokenizer after every denoising step. A raise at report n leaves exactly n - 1
LLM forward calls (n UNet calls); a step stopped midway leaves the run's state as it was, so
the next step writes the scene an uninterrupted run writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from storysdk import Pipeline, RenderContext, StoryRequest
from storysdk.errors import JobCancelled
from storysdk.interfaces import ProgressEvent, StepContext
from storysdk.model import Story, StoryPlan
from storysdk.testing.contract import folder_bytes
from storysdk.testing.faults import forward_calls, stop_at, StopRun as Stop
from storysdk_seed_story.detokenizer import SeedStoryDetokenizer
from storysdk_seed_story.planner import SeedStoryPlanner

CAPTION = "Lily and the fox walked to the old bridge."


def planner(**options: Any) -> SeedStoryPlanner:
    return SeedStoryPlanner(preset="tiny", device="cpu", window=2, max_text_tokens=4, **options)


def request_of(start_image: Any, scenes: int = 3) -> StoryRequest:
    return StoryRequest(start_image=start_image, start_caption=CAPTION, num_scenes=scenes, seed=3)


def step_ctx(p: SeedStoryPlanner, request: StoryRequest, plan: StoryPlan | None = None, progress: Any = None) -> StepContext:
    plan = plan if plan is not None else p.plan(request)
    return StepContext(request, plan, Story(plan=plan), component=p.name, progress=progress)


def same_scene(a: Any, b: Any) -> bool:
    return a.prompt == b.prompt and a.metadata == b.metadata and torch.equal(
        a.tokens["seed-story-image-embeds"]["features"], b.tokens["seed-story-image-embeds"]["features"])


@pytest.mark.parametrize("options", [{}, {"image_block": "stepwise"}, {"sink_cache": True}],
                         ids=["prefill", "stepwise", "sink"])
def test_every_llm_forward_call_is_preceded_by_a_report(start_image: Any, options: dict[str, Any]) -> None:
    p = planner(**options)
    request = request_of(start_image)
    _, lm = p.models()
    whole = stop_at(None)
    ctx = step_ctx(p, request, progress=whole)
    with forward_calls(lm.llm.model) as calls:
        expected = p.step(ctx)
    reports = whole.seen  # type: ignore[attr-defined]
    assert expected is not None and len(reports) == calls[0] > 4
    assert all(e.component == "seed-story" and e.scene_index == 1 for e in reports)
    assert [e.done for e in reports] == sorted(e.done for e in reports)  # tokens written so far
    assert reports[-1].total == p.options.max_new_tokens
    for n in sorted({1, 3, len(reports)}):
        ctx = step_ctx(p, request, progress=stop_at(n))
        with forward_calls(lm.llm.model) as calls, pytest.raises(Stop):
            p.step(ctx)
        assert calls[0] == n - 1, f"raise at report {n}"
        ctx.progress = None  # the job goes on (or a resumed run): the same scene comes out
        assert same_scene(p.step(ctx), expected)


def test_a_sink_replay_on_resume_reports_before_each_forward_call(start_image: Any) -> None:
    """A resumed sink-mode story replays every scene's tokens through the LLM: that loop can be
    cancelled too, and leaves no state behind."""
    p = planner(sink_cache=True)
    request = request_of(start_image, scenes=4)
    ctx = step_ctx(p, request)
    ctx.plan.scenes.append(p.step(ctx))
    ctx.plan.scenes.append(p.step(ctx))
    plan = ctx.plan
    expected = p.step(ctx)

    fresh = planner(sink_cache=True)  # as a new process resuming the folder
    _, lm = fresh.models()
    progress = stop_at(5)
    resumed = step_ctx(fresh, request, plan=plan, progress=progress)
    with forward_calls(lm.llm.model) as calls, pytest.raises(Stop):
        fresh.step(resumed)
    assert calls[0] == 4 and "seed-story" not in resumed.state
    assert all(e.message.startswith("replaying") for e in progress.seen)  # type: ignore[attr-defined]
    resumed.progress = None
    assert same_scene(fresh.step(resumed), expected)


def test_the_detokenizer_stops_after_exactly_the_reported_unet_steps(start_image: Any) -> None:
    p = planner()
    request = request_of(start_image)
    ctx = step_ctx(p, request)
    ctx.plan.scenes.append(p.step(ctx))
    plan = ctx.plan
    gen = SeedStoryDetokenizer(preset="tiny", device="cpu", steps=4, start_scene="render")
    unet = gen.load().pipe.unet
    for n, images in [(2, 0), (6, 1)]:
        got = []
        with forward_calls(unet) as calls, pytest.raises(Stop):
            for a in gen.generate(plan.scenes, RenderContext(plan=plan, seed=3, progress=stop_at(n))):
                got.append(a)
        assert calls[0] == n and [a.scene_index for a in got] == list(range(images))
    again = [np.asarray(a.image) for a in gen.generate(plan.scenes, RenderContext(plan=plan, seed=3))]
    fresh = SeedStoryDetokenizer(preset="tiny", device="cpu", steps=4, start_scene="render")
    assert all(np.array_equal(x, np.asarray(y.image))
               for x, y in zip(again, fresh.generate(plan.scenes, RenderContext(plan=plan, seed=3))))


def test_a_cancelled_job_keeps_its_scenes_and_resumes_byte_identical(start_image: Any, tmp_path: Path) -> None:
    """Through the pipeline, as the server's job: the next report after DELETE raises JobCancelled
    (here in the middle of scene 2's denoising)."""
    request = request_of(start_image, scenes=4)

    def pipeline() -> Pipeline:
        return Pipeline(planner=("seed-story", {"window": 2, "max_text_tokens": 4}),
                        generators=[("seed-story-detokenizer", {"steps": 3})],
                        defaults={"preset": "tiny", "device": "cpu"})

    pipeline().run(request, out_dir=tmp_path / "whole")
    deleted: list[ProgressEvent] = []

    def job_report(ev: ProgressEvent) -> None:
        if deleted:
            raise JobCancelled("job was cancelled; the files written so far are kept")
        if ev.stage == "step" and ev.component == "seed-story-detokenizer" and ev.scene_index == 2 and ev.done == 1:
            deleted.append(ev)

    pipe = pipeline()
    with pytest.raises(JobCancelled):
        pipe.run(request, out_dir=tmp_path / "job", progress=job_report)
    images = sorted(p.name for p in (tmp_path / "job" / "tracks" / "seed-story-detokenizer").glob("*.png"))
    assert images == ["scene-0000.png", "scene-0001.png"]
    pipe.run(request, out_dir=tmp_path / "job")
    assert folder_bytes(tmp_path / "job") == folder_bytes(tmp_path / "whole")
