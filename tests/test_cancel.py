"""Cancellation inside generation: every model call of the built-ins is preceded or followed by a report.

A cancelled server job raises :class:`~storysdk.errors.JobCancelled` from the progress
callback at its next report. These tests raise from the callback at the N-th step report and
count the model's forward calls (UNet, DiT, text encoders): each component stops within one
step of the raise, keeps what it finished, and renders the same bytes afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import storysdk
from storysdk.builtins.clip_text import ClipTextTokenizer
from storysdk.builtins.diffusers_audio import DiffusersAudioGenerator
from storysdk.builtins.diffusers_image import DiffusersImageGenerator, step_callbacks
from storysdk.errors import JobCancelled
from storysdk.interfaces import PlanContext, Planner, ProgressEvent, RenderContext, StepContext
from storysdk.model import Scene, Story, StoryPlan, StoryRequest
from storysdk.testing.contract import folder_bytes
from storysdk.testing.faults import forward_calls, stop_at, StopRun as Stop

PROMPTS = ["a girl in a dark forest", "a dragon over the castle", "a boy on a boat", "the end"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread (restored afterwards): toy models are far faster so on a shared machine,
    and the byte comparisons below run every render with the same thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _plan(n: int = 4, **kw: Any) -> StoryPlan:
    kw.setdefault("width", 64)
    kw.setdefault("height", 64)
    return StoryPlan(scenes=[Scene(i, p, duration=0.5) for i, p in enumerate(PROMPTS[:n])], **kw)


def _collect(gen: Any, scenes: Any, ctx: RenderContext) -> tuple[list[Any], BaseException | None]:
    """The assets ``gen`` yields before it raises, and what it raised."""
    got: list[Any] = []
    try:
        for asset in gen.generate(scenes, ctx):
            got.append(asset)
    except Stop as exc:
        return got, exc
    return got, None


# -- the contexts ---------------------------------------------------------------------------


def test_every_context_reports_step_events_and_is_silent_without_a_callback() -> None:
    plan = _plan(1)
    request = StoryRequest(prompt="x")
    events: list[ProgressEvent] = []
    RenderContext(plan=plan, component="g", progress=events.append).report(1, 4, 0, "m")
    PlanContext(request, "p", events.append).report(2, 5)
    StepContext(request, plan, Story(plan=plan), component="s", progress=events.append).report(3, 6, 1, "t")
    assert [(e.stage, e.component, e.done, e.total, e.scene_index, e.message) for e in events] == [
        ("step", "g", 1, 4, 0, "m"),
        ("step", "p", 2, 5, None, ""),
        ("step", "s", 3, 6, 1, "t"),
    ]
    # no callback: nothing happens (components report unconditionally)
    RenderContext(plan=plan).report(1, 1)
    PlanContext(request).report(1, 1)
    StepContext(request, plan, Story(plan=plan)).report(1, 1)


def test_a_raising_callback_propagates_through_report() -> None:
    ctx = PlanContext(StoryRequest(prompt="x"), "p", stop_at(1))
    with pytest.raises(Stop):
        ctx.report(0, 10)


def test_a_planner_with_only_plan_request_plans_through_plan_with() -> None:
    class OneScene(Planner):
        name = "one-scene"

        def plan(self, request: StoryRequest) -> StoryPlan:
            return StoryPlan(scenes=[Scene(0, request.prompt)], seed=request.seed)

    request = StoryRequest(prompt="a fox", seed=3)
    events: list[ProgressEvent] = []
    plan = OneScene().plan_with(request, PlanContext(request, "one-scene", events.append))
    assert [s.prompt for s in plan.scenes] == ["a fox"] and plan.seed == 3
    assert events == []  # the default plan_with only calls plan(request)


# -- diffusers-image ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 8])
def test_diffusers_image_stops_after_exactly_the_reported_unet_steps(n: int) -> None:
    """steps=5, two scenes per batch: a raise at step report n leaves exactly n UNet calls
    (guidance batched, one call per step), and the first batch's pictures when it had finished."""
    plan = _plan()
    gen = DiffusersImageGenerator(preset="tiny", steps=5, batch_size=2)
    progress = stop_at(n)
    ctx = RenderContext(plan=plan, seed=1, component=gen.name, progress=progress)
    with forward_calls(gen.load().unet) as calls:
        got, stopped = _collect(gen, plan.scenes, ctx)
    assert stopped is not None
    assert calls[0] == n
    assert [a.scene_index for a in got] == ([0, 1] if n > 5 else [])
    assert [(e.done, e.total) for e in progress.seen][-1] == ((n - 1) % 5 + 1, 5)  # type: ignore[attr-defined]


def test_diffusers_image_renders_the_same_bytes_after_a_cancelled_call() -> None:
    """The pipeline object keeps nothing of a call stopped midway (scheduler, step index)."""
    plan = _plan(2)
    used = DiffusersImageGenerator(preset="tiny", steps=4, batch_size=2)
    _collect(used, plan.scenes, RenderContext(plan=plan, seed=2, progress=stop_at(2)))
    after = list(used.generate(plan.scenes, RenderContext(plan=plan, seed=2)))
    fresh = list(DiffusersImageGenerator(preset="tiny", steps=4, batch_size=2).generate(plan.scenes, RenderContext(plan=plan, seed=2)))
    assert [a.scene_index for a in after] == [0, 1]
    for a, b in zip(after, fresh):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_a_users_own_step_callback_still_runs_after_the_report() -> None:
    plan = _plan(1)
    order: list[Any] = []

    def theirs(pipe: Any, step: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        order.append(("theirs", step))
        return kwargs

    gen = DiffusersImageGenerator(preset="tiny", steps=3, extra={"callback_on_step_end": theirs})
    ctx = RenderContext(plan=plan, progress=lambda ev: order.append(("report", ev.done)))
    list(gen.generate(plan.scenes, ctx))
    assert order == [("report", 1), ("theirs", 0), ("report", 2), ("theirs", 1), ("report", 3), ("theirs", 2)]


def test_step_callbacks_for_old_pipelines_and_pipeline_callback_objects() -> None:
    reports: list[tuple[int, int]] = []

    def report(done: int, total: int) -> None:
        reports.append((done, total))

    # an older pipeline: callback(step, timestep, latents) with callback_steps
    seen: list[int] = []
    old = step_callbacks({"callback": None, "callback_steps": None}, report, 3,
                         {"callback": lambda s, t, x: seen.append(s)})
    assert old["callback_steps"] == 1
    for step in range(3):
        old["callback"](step, 0, None)
    assert reports == [(1, 3), (2, 3), (3, 3)] and seen == [0, 1, 2]

    # a diffusers PipelineCallback object keeps its tensor inputs
    class Theirs:
        tensor_inputs = ["latents", "prompt_embeds"]

        def __call__(self, pipe: Any, step: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            return {"latents": kwargs["latents"] + 1}

    new = step_callbacks({"callback_on_step_end": None}, report, 7, {"callback_on_step_end": Theirs()})
    assert new["callback_on_step_end_tensor_inputs"] == ["latents", "prompt_embeds"]

    class Pipe:
        num_timesteps = 9  # e.g. a second-order scheduler: more UNet calls than steps

    assert new["callback_on_step_end"](Pipe(), 0, 0, {"latents": 1}) == {"latents": 2}
    assert reports[-1] == (1, 9)
    assert step_callbacks({}, report, 3) == {}  # neither: nothing per step
    with pytest.raises(storysdk.ConfigError, match="callback_on_step_end must be callable"):
        step_callbacks({"callback_on_step_end": None}, report, 3, {"callback_on_step_end": 5})


# -- diffusers-audio and clip-text -----------------------------------------------------------


@pytest.mark.parametrize("n", [2, 5])
def test_diffusers_audio_stops_after_exactly_the_reported_dit_steps(n: int) -> None:
    plan = _plan(2)
    gen = DiffusersAudioGenerator(preset="tiny", steps=3)
    progress = stop_at(n)
    with forward_calls(gen.load().transformer) as calls:
        got, stopped = _collect(gen, plan.scenes, RenderContext(plan=plan, seed=1, progress=progress))
    assert stopped is not None and calls[0] == n
    assert [a.scene_index for a in got] == ([0] if n > 3 else [])


def test_clip_text_stops_before_its_encoders_run() -> None:
    plan = _plan(2)
    tok = ClipTextTokenizer(preset="tiny")
    pipe = tok.load()
    with forward_calls(pipe.text_encoder, pipe.text_encoder_2) as calls:
        with pytest.raises(Stop):
            tok.tokenize(plan.scenes, RenderContext(plan=plan, progress=stop_at(1)))
    assert calls[0] == 0
    with forward_calls(pipe.text_encoder, pipe.text_encoder_2) as calls:
        made = tok.tokenize(plan.scenes, RenderContext(plan=plan))
    assert len(made) == 2 and calls[0] > 0


# -- end to end, through the pipeline -------------------------------------------------------

SCRIPT = "a lighthouse at dusk\na ship in the fog\na gull on a rock"


def _pipeline() -> storysdk.Pipeline:
    return storysdk.Pipeline(
        planner="script",
        tokenizers=[("clip-text", {"preset": "tiny"})],
        generators=[
            ("diffusers-image", {"preset": "tiny", "steps": 4, "batch_size": 1}),
            ("diffusers-audio", {"preset": "tiny", "steps": 3}),
        ],
    )


def test_a_job_cancelled_mid_step_stops_within_one_step_keeps_its_files_and_resumes(tmp_path: Path) -> None:
    """As the server's job does: DELETE sets a flag, the next report raises JobCancelled.

    The flag is set during scene 1's second denoising step; the UNet runs that one step more,
    then the run stops. Scene 0's picture stays saved, nothing of scene 1 is written, and the
    resumed run ends byte-identical to an uninterrupted one."""
    request = StoryRequest(script=SCRIPT, width=64, height=64, seed=5, duration=1.5)
    whole = _pipeline()
    whole.run(request, out_dir=tmp_path / "whole")

    pipe = _pipeline()  # the same instances render the resume (as a server worker's cache does)
    cancelled = threading.Event()
    reports: list[ProgressEvent] = []

    def job_report(ev: ProgressEvent) -> None:  # storysdk.server's Job.report
        if cancelled.is_set():
            raise JobCancelled("job x was cancelled; the files written so far are kept")
        reports.append(ev)
        if ev.stage == "step" and ev.component == "diffusers-image" and ev.scene_index == 1 and ev.done == 1:
            cancelled.set()  # DELETE arrives while the UNet computes scene 1's step 2

    image_gen = pipe.generators[0]
    with forward_calls(image_gen.load().unet) as calls:
        with pytest.raises(JobCancelled):
            pipe.run(request, out_dir=tmp_path / "cancelled", progress=job_report)
    assert calls[0] == 4 + 2  # scene 0's four steps, then scene 1's step 1 and the one under way
    images = sorted(p.name for p in (tmp_path / "cancelled" / "tracks" / "diffusers-image").glob("*.png"))
    assert images == ["scene-0000.png"]
    assert not list((tmp_path / "cancelled").rglob("*.wav"))
    pipe.run(request, out_dir=tmp_path / "cancelled")
    assert folder_bytes(tmp_path / "cancelled") == folder_bytes(tmp_path / "whole")
