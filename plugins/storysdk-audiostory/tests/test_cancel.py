"""Cancellation inside AudioStory: the planner LLM reports before every forward call, the DiT after
every flow step. A raise at report n leaves exactly n - 1 LLM forward calls (n DiT calls), keeps
every clip already made, and the components render the same afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from storysdk import Pipeline, Registry
from storysdk.errors import JobCancelled
from storysdk.interfaces import PlanContext, ProgressEvent, RenderContext
from storysdk.model import Scene, StoryPlan, StoryRequest, Tokens
from storysdk.testing.contract import folder_bytes
from storysdk.testing.faults import forward_calls, stop_at, StopRun as Stop
from storysdk_audiostory.decoding import greedy_decode
from storysdk_audiostory.generators import AudioStoryGenerator
from storysdk_audiostory.planner import AudioStoryPlanner
from storysdk_audiostory.streams import response_text

REQUEST = StoryRequest(prompt="A dog barks, then rain.", duration=10.0, seed=2)


class ScriptedLM(torch.nn.Module):
    """The real tiny Qwen2, its next token pushed (+100 logit) by a table on the last fed token, so
    that it writes a story of two events; ``log`` holds one entry per forward call."""

    def __init__(self, llm: Any, tok: Any, special: Any) -> None:
        super().__init__()
        a, b, five = (tok.encode(x, add_special_tokens=False)[0] for x in ("a", "b", "5"))
        s = special
        self.table = {s.think_open: a, a: s.think_close, s.think_close: s.gen_open, s.gen_open: b, b: s.ts_open,
                      s.ts_open: five, five: s.ts_close, s.ts_close: s.t5_open, s.t5_close: s.aud_open,
                      s.aud_close: s.gen_close}
        self.special, self.llm, self.config = special, llm, llm.config
        self.log: list[int] = []
        self.events = 0

    def parameters(self, recurse: bool = True) -> Any:
        return self.llm.parameters(recurse)

    def model(self, input_ids: Any, **kw: Any) -> Any:
        self.log.append(int(input_ids[0, -1]))
        return self.llm.model(input_ids=input_ids, **kw)

    def lm_head(self, h: Any) -> Any:
        logits = self.llm.lm_head(h)
        last = self.log[-1]
        nxt = self.table.get(last)
        if last == self.special.gen_close:
            self.events += 1
            nxt = self.special.gen_open if self.events < 2 else self.special.im_end
        if nxt is not None:
            logits = logits.clone()
            logits[..., nxt] += 100.0
        return logits


def _scenes(durations: list[float], width: int = 32) -> list[Scene]:
    g = torch.Generator().manual_seed(0)
    return [Scene(i, prompt=f"sound {i}", duration=d,
                  tokens={"tangoflux-cond": Tokens("tangoflux-cond", "test", {"cond": torch.randn(64, width, generator=g)})})
            for i, d in enumerate(durations)]


@pytest.mark.parametrize("one_pass", [True, False], ids=["one-pass", "forced-steps"])
def test_greedy_decode_reports_before_every_forward_call(planner_rt: Any, one_pass: bool) -> None:
    """A scripted stream with two events (query blocks in one pass, or upstream's single steps)."""
    tok, special, llm = planner_rt.tokenizer, planner_rt.special, planner_rt.llm
    prompt = tok.encode("<|im_start|>user\nrain<|im_end|>\n<|im_start|>assistant\n<|think|>", add_special_tokens=False)
    reports: list[tuple[int, int]] = []
    lm = ScriptedLM(llm, tok, special)
    whole = greedy_decode(lm, prompt, special, max_new_tokens=400, one_pass=one_pass,
                          report=lambda d, t: reports.append((d, t)))
    assert whole.stop == "im_end"
    assert len(reports) == len(lm.log) == whole.forward_passes + 1  # the prompt's call, then each fed chunk
    assert reports[0] == (0, 400) and [d for d, _ in reports] == sorted(d for d, _ in reports)
    assert whole.ids.count(special.t5_open) == 2  # the stream has its two events
    for n in (1, 2, len(reports) // 2, len(reports)):
        lm = ScriptedLM(llm, tok, special)
        progress = stop_at(n)

        def report(done: int, total: int) -> None:
            progress(ProgressEvent("step", "test", done, total))

        with pytest.raises(Stop):
            greedy_decode(lm, prompt, special, max_new_tokens=400, one_pass=one_pass, report=report)
        assert len(lm.log) == n - 1, f"raise at report {n}"


def test_the_planner_stops_within_one_token_and_plans_the_same_afterwards(planner_rt: Any) -> None:
    planner = AudioStoryPlanner(preset="tiny", max_new_tokens=12)
    planner._rt = planner_rt
    whole = stop_at(None)
    with forward_calls(planner_rt.llm.model) as calls, pytest.raises(Exception, match="no complete"):
        planner.plan_with(REQUEST, PlanContext(REQUEST, planner.name, whole))  # random weights write no event
    assert len(whole.seen) == calls[0] == 12  # type: ignore[attr-defined]
    assert [e.done for e in whole.seen] == list(range(12))  # type: ignore[attr-defined]
    assert all(e.total == 12 and e.component == "audiostory" for e in whole.seen)  # type: ignore[attr-defined]
    for n in (1, 7):
        with forward_calls(planner_rt.llm.model) as calls, pytest.raises(Stop):
            planner.plan_with(REQUEST, PlanContext(REQUEST, planner.name, stop_at(n)))
        assert calls[0] == n - 1


def test_a_teacher_forced_plan_is_cancelled_before_its_forward_call(planner_rt: Any) -> None:
    planner = AudioStoryPlanner(preset="tiny", response=response_text("two", [("A dog barks", 4.0), ("Rain", 6.0)]))
    planner._rt = planner_rt
    with forward_calls(planner_rt.llm.model) as calls, pytest.raises(Stop):
        planner.plan_with(REQUEST, PlanContext(REQUEST, planner.name, stop_at(1)))
    assert calls[0] == 0
    # plan(request) (third-party callers) plans the same as the pipeline's plan_with
    a = planner.plan(REQUEST)
    b = planner.plan_with(REQUEST, PlanContext(REQUEST, planner.name, stop_at(None)))
    assert [s.caption for s in a.scenes] == [s.caption for s in b.scenes] == ["A dog barks", "Rain"]
    assert all(torch.equal(x.tokens["audiostory-queries"]["t5"], y.tokens["audiostory-queries"]["t5"])
               for x, y in zip(a.scenes, b.scenes))


def test_the_dit_stops_after_exactly_the_reported_steps_and_keeps_finished_clips(audio_rt: Any) -> None:
    """steps=4, two clips one at a time: reports 1-4 are clip 0's DiT steps, 5 comes after clip 0
    is handed over ("clip decoded"), 6 is clip 1's first step."""
    scenes = _scenes([2.0, 1.0])
    plan = StoryPlan(scenes=scenes)

    def gen() -> AudioStoryGenerator:
        g = AudioStoryGenerator(preset="tiny", steps=4)
        g._rt = audio_rt
        return g

    used = gen()
    for n, calls_expected, clips in [(2, 2, []), (5, 4, [0]), (6, 5, [0])]:
        got = []
        with forward_calls(audio_rt.dit.transformer) as calls, pytest.raises(Stop):
            for a in used.generate(scenes, RenderContext(plan=plan, seed=5, progress=stop_at(n))):
                got.append(a.scene_index)
        assert calls[0] == calls_expected and got == clips, f"raise at report {n}"
    again = list(used.generate(scenes, RenderContext(plan=plan, seed=5)))
    fresh = list(gen().generate(scenes, RenderContext(plan=plan, seed=5)))
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(again, fresh)) and len(again) == 2


def test_a_cancelled_job_keeps_its_clips_and_resumes_byte_identical(tmp_path: Path) -> None:
    from storysdk_audiostory import plugin

    reg = Registry(entrypoints=False)
    reg.register_plugin(plugin, name="audiostory")
    events = [("A dog barks in the yard", 2.5), ("Rain starts to fall", 3.0), ("Thunder rumbles far away", 3.0)]

    def pipeline() -> Pipeline:
        return Pipeline(planner=("audiostory", {"response": response_text("three events", events)}),
                        tokenizers=["audiostory-bridge"], generators=[("audiostory", {"steps": 3})],
                        composers=["soundtrack"], registry=reg, defaults={"preset": "tiny", "device": "cpu"})

    request = StoryRequest(prompt="A dog barks, rain, thunder.", duration=8.5, seed=3)
    pipeline().run(request, out_dir=tmp_path / "whole")
    deleted: list[ProgressEvent] = []

    def job_report(ev: ProgressEvent) -> None:  # as the server's Job.report after DELETE
        if deleted:
            raise JobCancelled("job was cancelled; the files written so far are kept")
        if ev.stage == "step" and ev.component == "audiostory" and ev.scene_index == 1 and ev.done == 1:
            deleted.append(ev)

    with pytest.raises(JobCancelled):
        pipeline().run(request, out_dir=tmp_path / "job", progress=job_report)
    assert sorted(p.name for p in (tmp_path / "job").rglob("*.wav")) == ["scene-0000.wav"]
    pipeline().run(request, out_dir=tmp_path / "job")
    assert folder_bytes(tmp_path / "job") == folder_bytes(tmp_path / "whole")
