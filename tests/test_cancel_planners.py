"""Planners are cancelled within one forward call: the pipeline plans through Planner.plan_with and
gives the interleaved StepContext its component and progress callback."""

from __future__ import annotations

from pathlib import Path

import pytest

import storysdk
from storysdk.errors import JobCancelled
from storysdk.interfaces import PlanContext, ProgressEvent, StepContext
from storysdk.model import Scene, StoryPlan, StoryRequest
from storysdk.testing import make_registry


class SlowWriter(storysdk.Planner):
    """An interleaved stand-in for an LLM planner: 'forward calls' counted, one report before each."""

    name = "slow-writer"
    interleaved = True
    TOKENS = 6

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.forwards = 0

    def _decode(self, report) -> str:
        words = []
        for i in range(self.TOKENS):
            report(i, self.TOKENS)
            self.forwards += 1  # the model call
            words.append(f"w{i}")
        return " ".join(words)

    def plan(self, request: StoryRequest) -> StoryPlan:
        return self.plan_with(request, PlanContext(request, self.name))

    def plan_with(self, request: StoryRequest, ctx: PlanContext) -> StoryPlan:
        text = self._decode(lambda d, t: ctx.report(d, t, 0, "plan"))
        return StoryPlan(scenes=[Scene(0, text)], seed=request.seed, width=16, height=16)

    def step(self, ctx: StepContext) -> Scene | None:
        index = ctx.next_index
        return Scene(index, self._decode(lambda d, t: ctx.report(d, t, index, "step")))


def _cancel_when(pred):
    """As the server's Job.report: once ``pred(event)`` held (DELETE), the next report raises."""
    deleted: list[ProgressEvent] = []

    def job_report(ev: ProgressEvent) -> None:
        if deleted:
            raise JobCancelled("job was cancelled; the files written so far are kept")
        if pred(ev):
            deleted.append(ev)

    return job_report


@pytest.mark.parametrize("where", ["plan", "step"])
def test_the_pipeline_cancels_a_planner_within_one_forward_call(tmp_path: Path, where: str) -> None:
    planner = SlowWriter()
    pipe = storysdk.Pipeline(planner=planner, generators=["fake-image"], registry=make_registry())
    scene = 0 if where == "plan" else 2
    progress = _cancel_when(lambda ev: ev.stage == "step" and ev.component == "slow-writer"
                            and ev.scene_index == scene and ev.done == 3)
    with pytest.raises(JobCancelled):
        pipe.run(StoryRequest(prompt="x", num_scenes=4, seed=1), out_dir=tmp_path / "job", progress=progress)
    # the reports before forward calls 0..3 of that scene, then forward call 3 ran, report 4 raised
    assert planner.forwards == scene * SlowWriter.TOKENS + 4
    saved = sorted(p.name for p in (tmp_path / "job" / "tracks" / "fake-image").glob("*.png")) if scene else []
    assert saved == [f"scene-000{i}.png" for i in range(scene)]
