"""Cancellation inside StoryDiffusion's generation: a raise from the step report stops the UNet
within one step, leaves the UNet's own attention processors in place, and the generator (a
server worker keeps it loaded) renders the same bytes afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storysdk import Pipeline, RenderContext, StoryPlan, StoryRequest
from storysdk.builtins.script import ScriptPlanner
from storysdk.errors import JobCancelled
from storysdk.interfaces import ProgressEvent
from storysdk.testing.contract import folder_bytes
from storysdk.testing.faults import stop_at, StopRun as Stop
from storysdk_storydiffusion.generator import StoryDiffusionGenerator

CHARS = "[Bob] a man in a black suit\n[Ann] a girl with red hair"
SCRIPT = "[Bob] at home\n[Bob] on the road\n[Ann] in the park\n[Ann] reading\n[Bob] and [Ann] talking\n[Bob] running"
STEPS = 3


@contextmanager
def unet_calls(unet: Any) -> Iterator[list[int]]:
    calls = [0]
    handle = unet.register_forward_pre_hook(lambda _m, _a: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        handle.remove()


def plan_of() -> StoryPlan:
    return ScriptPlanner().plan(StoryRequest(script=SCRIPT, characters=CHARS, width=64, height=64, seed=1))


def processor_types(unet: Any) -> dict[str, type]:
    return {name: type(p) for name, p in unet.attn_processors.items()}


def render(gen: StoryDiffusionGenerator, plan: StoryPlan, progress: Any = None) -> tuple[dict[int, np.ndarray], bool]:
    got: dict[int, np.ndarray] = {}
    try:
        for a in gen.generate(plan.scenes, RenderContext(plan=plan, seed=1, progress=progress)):
            got[a.scene_index] = np.asarray(a.image)
    except Stop:
        return got, True
    return got, False


@pytest.mark.parametrize(("mode", "n"), [("standard", 2), ("standard", STEPS + 1), ("standard", 3 * STEPS),
                                         ("lockstep", STEPS), ("lockstep", STEPS + 2)])
def test_a_raise_at_step_report_n_leaves_exactly_n_unet_calls(tiny_pipe: Any, mode: str, n: int) -> None:
    """Standard mode: Bob's id frames, Ann's, then one call per read frame (4 calls); lockstep with one
    read frame per call: 2 calls, each with the id frames again."""
    plan = plan_of()
    before = processor_types(tiny_pipe.unet)
    options = {"pipeline": tiny_pipe, "steps": STEPS, "num_ids": 2, "mode": mode, "read_batch": 1}
    # where each picture comes out in a whole run: after how many step reports
    reports: list[ProgressEvent] = []
    whole = [(len(reports), a.scene_index) for a in StoryDiffusionGenerator(**options).generate(
        plan.scenes, RenderContext(plan=plan, seed=1, progress=reports.append))]
    assert len(reports) == {"standard": 4, "lockstep": 2}[mode] * STEPS
    finished_calls = (n - 1) // STEPS
    progress = stop_at(n)
    with unet_calls(tiny_pipe.unet) as calls:
        got, stopped = render(StoryDiffusionGenerator(**options), plan, progress)
    assert stopped and calls[0] == n  # one UNet call (CFG batch) per denoising step
    assert progress.seen[-1].done == (n - 1) % STEPS + 1  # type: ignore[attr-defined]
    # the pictures of every call that finished came out, none of the stopped call's
    assert sorted(got) == sorted(i for at, i in whole if at <= finished_calls * STEPS)
    assert processor_types(tiny_pipe.unet) == before  # CSA removed from the shared UNet
    assert not tiny_pipe.unet._forward_pre_hooks  # and its batch-size hook


def test_after_a_cancel_the_same_generator_renders_the_same_bytes(tiny_pipe: Any) -> None:
    plan = plan_of()
    gen = StoryDiffusionGenerator(pipeline=tiny_pipe, steps=STEPS, num_ids=2)
    render(gen, plan, stop_at(STEPS + 2))  # stopped inside Ann's id-frame call
    again, stopped = render(gen, plan)
    fresh, _ = render(StoryDiffusionGenerator(pipeline=tiny_pipe, steps=STEPS, num_ids=2), plan)
    assert not stopped and sorted(again) == list(range(6))
    assert all(np.array_equal(again[i], fresh[i]) for i in fresh)


def test_a_cancelled_job_keeps_its_frames_and_resumes_byte_identical(tiny_pipe: Any, tmp_path: Path) -> None:
    """Through the pipeline, as the server's job: the next report after DELETE raises JobCancelled."""
    request = StoryRequest(script=SCRIPT, characters=CHARS, width=64, height=64, seed=1)

    def pipeline() -> Pipeline:
        return Pipeline(planner="script", generators=[StoryDiffusionGenerator(pipeline=tiny_pipe, steps=STEPS, num_ids=2)])

    pipeline().run(request, out_dir=tmp_path / "whole")
    deleted = []

    def job_report(ev: ProgressEvent) -> None:
        if deleted:
            raise JobCancelled("job was cancelled; the files written so far are kept")
        if ev.stage == "step" and ev.message.startswith("id frames of Ann") and ev.done == 1:
            deleted.append(ev)  # DELETE during the second step of Ann's id frames

    pipe = pipeline()
    with unet_calls(tiny_pipe.unet) as calls:
        with pytest.raises(JobCancelled):
            pipe.run(request, out_dir=tmp_path / "job", progress=job_report)
    assert calls[0] == STEPS + 2  # Bob's id frames, then Ann's steps 1 and 2
    assert sorted(p.name for p in (tmp_path / "job" / "tracks" / "storydiffusion").glob("*.png")) == ["scene-0000.png", "scene-0001.png"]
    pipe.run(request, out_dir=tmp_path / "job")
    assert folder_bytes(tmp_path / "job") == folder_bytes(tmp_path / "whole")
