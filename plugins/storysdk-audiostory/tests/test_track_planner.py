"""The ``audiostory`` planner as a track's planner (docs/audiostory.md §10): per-scene
instructions on the story's timeline, events as cues filling each scene's span, the query
states attached as tokens, resumed cues, and a whole pipeline whose ambience track mixes
exactly as AudioStory joins a story (§1.7, §9)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from storysdk import Pipeline, StoryRequest
from storysdk.audio import crossfade_join
from storysdk.errors import ConfigError, StorySDKError
from storysdk.interfaces import TrackContext
from storysdk.mixing import mixdown
from storysdk.model import Scene, StoryPlan
from storysdk.testing import make_registry
from storysdk.timeline import Timeline, Timing
from storysdk_audiostory import plugin
from storysdk_audiostory import constants as C
from storysdk_audiostory.planner import QUERIES_KIND, AudioStoryPlanner
from storysdk_audiostory.streams import event_text, response_text

SR = 32000  # AudioStory's output rate, docs/audiostory.md §1.7
CROSSFADE = 3.0  # docs/audiostory.md §1.7
LEAD = random.Random(0).choice(C.GEN_PROMPT_ALL)  # upstream's random.seed(0) opener, §1.3

SCENE_SECONDS = [4.0, 5.0, 4.5]
TEXTS = ["gulls over a harbour at dawn", "a storm on black rocks", "a fire crackling in a cabin"]
# one teacher-forced answer per scene (the tiny LLM's random weights cannot write one)
EVENTS = [
    [("Gulls cry", 1.0), ("Oars splash", 3.0)],   # 4.0 s: fills the 4 s span as written
    [("Thunder rolls", 7.0)],                     # 7.0 s for 5 s: outside 25 %, rescaled to 5 s
    [("Wood cracks", 1.5), ("Fire roars", 3.2)],  # 4.7 s for 4.5 s: within 25 %, stretched to fill
]
RESPONSES = [response_text(f"scene {i}", ev) for i, ev in enumerate(EVENTS)]
# what each event must last on the track: written, scaled to the span (§8 repair), or fitted
EXPECTED = [[1.0, 3.0], [5.0], [1.5 * 4.5 / 4.7, 3.2 * 4.5 / 4.7]]


def _registry():
    return make_registry(plugin)


def _plan(texts=TEXTS) -> StoryPlan:
    scenes = [
        Scene(index=i, prompt=f"picture {i}", caption=f"caption {i}", duration=d,
              texts={"ambience": t} if t else {})
        for i, (d, t) in enumerate(zip(SCENE_SECONDS, texts))
    ]
    return StoryPlan(scenes=scenes, title="harbour", seed=3, width=64, height=64)


def _ctx(plan: StoryPlan, events: list | None = None) -> TrackContext:
    durations = {s.index: float(s.duration) for s in plan.scenes}
    timeline = Timeline.of_scenes(plan.scenes, durations, Timing())

    def progress(event):
        if events is not None:
            events.append(event)

    return TrackContext(request=StoryRequest(seed=3), plan=plan, timeline=timeline, track="ambience",
                        template="{ambience}", component="audiostory", progress=progress)


@pytest.fixture(scope="module")
def planner() -> AudioStoryPlanner:
    return AudioStoryPlanner(preset="tiny", device="cpu", responses=RESPONSES)


@pytest.fixture(scope="module")
def planned(planner):
    events: list = []
    plan = _plan()
    return plan, planner.plan_track(plan, _ctx(plan, events)), events


def test_the_planner_is_a_track_planner():
    assert AudioStoryPlanner.plans_tracks is True
    assert AudioStoryPlanner().capabilities()["plans_tracks"] is True


def test_cues_fill_each_scene_span_in_time_order(planned):
    plan, cues, _ = planned
    starts = np.cumsum([0.0, *SCENE_SECONDS])
    assert [c.index for c in cues] == list(range(5))
    assert [c.scene for c in cues] == [0, 0, 1, 2, 2]
    assert [c.caption for c in cues] == [e for ev in EVENTS for e, _ in ev]
    assert [c.prompt for c in cues] == [c.caption for c in cues]
    for scene, expected in enumerate(EXPECTED):
        mine = [c for c in cues if c.scene == scene]
        assert [c.duration for c in mine] == pytest.approx(expected, abs=1e-6)
        assert sum(c.duration for c in mine) == pytest.approx(SCENE_SECONDS[scene], abs=1e-5)
        # the first event starts with its scene, each next one where the one before ends
        assert [c.start for c in mine] == pytest.approx(list(starts[scene] + np.cumsum([0.0, *expected[:-1]])),
                                                        abs=1e-5)
    assert "scaled by" in " ".join(cues[2].metadata["repairs"])
    assert any("stretched by" in r for r in cues[3].metadata["repairs"])
    assert cues[0].metadata["repairs"] == []


def test_each_scene_gets_its_own_instruction(planned):
    _, cues, events = planned
    for c in cues:
        text, seconds = TEXTS[c.scene], SCENE_SECONDS[c.scene]
        assert c.metadata["instruction"] == f"{LEAD}{text} The total duration is {seconds} seconds."  # §1.3
        assert c.metadata["lead"] == LEAD
    steps = [(e.scene_index, e.done, e.total) for e in events if e.stage == "step"]
    assert steps == [(0, 0, 1), (1, 0, 1), (2, 0, 1)]  # one report (cancellation point) before each LLM call


def test_the_query_states_are_the_llms_in_each_scenes_context(planner, planned):
    """Tokens = the last hidden states at the N <t5_k> and M <aud_k> positions of the answer fed
    after that scene's prompt (§1.4), computed here without the planner's parser."""
    _, cues, _ = planned
    rt = planner.runtime()
    tok = rt.tokenizer
    n, m = rt.special.num_t5, rt.special.num_aud
    t5_ids = set(tok.convert_tokens_to_ids([C.T5_QUERY.format(k) for k in range(n)]))
    aud_ids = set(tok.convert_tokens_to_ids([C.AUD_QUERY.format(k) for k in range(m)]))
    for scene, events in enumerate(EVENTS):
        instruction = f"{LEAD}{TEXTS[scene]} The total duration is {SCENE_SECONDS[scene]} seconds."
        prompt = (f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{instruction}"
                  "<|im_end|>\n<|im_start|>assistant\n<|think|>")
        answer = f"scene {scene}" + C.THINK_CLOSE + "".join(event_text(c, d, n, m) for c, d in events) + C.IM_END
        p_ids = tok.encode(prompt, add_special_tokens=False)
        a_ids = tok.encode(answer, add_special_tokens=False)
        with torch.no_grad():
            hidden = rt.llm.model(input_ids=torch.tensor([p_ids + a_ids])).last_hidden_state[0, len(p_ids):]
        t5_pos = [j for j, i in enumerate(a_ids) if i in t5_ids]
        aud_pos = [j for j, i in enumerate(a_ids) if i in aud_ids]
        mine = [c for c in cues if c.scene == scene]
        for k, cue in enumerate(mine):
            q = cue.tokens[QUERIES_KIND]
            assert q.kind == QUERIES_KIND and q.made_by == "audiostory"
            assert tuple(q["t5"].shape) == (n, hidden.shape[-1]) and tuple(q["aud"].shape) == (m, hidden.shape[-1])
            torch.testing.assert_close(q["t5"], hidden[t5_pos[k * n : (k + 1) * n]], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(q["aud"], hidden[aud_pos[k * m : (k + 1) * m]], atol=1e-5, rtol=1e-5)
    # the same answer in another scene's context gives other states: the scene's text reaches the LLM
    same = AudioStoryPlanner(preset="tiny", device="cpu", response=RESPONSES[0])
    plan = _plan()
    twice = same.plan_track(plan, _ctx(plan))
    assert [c.caption for c in twice] == ["Gulls cry", "Oars splash"] * 3
    assert not torch.allclose(twice[0].tokens[QUERIES_KIND]["t5"], twice[2].tokens[QUERIES_KIND]["t5"])
    torch.testing.assert_close(twice[0].tokens[QUERIES_KIND]["t5"], cues[0].tokens[QUERIES_KIND]["t5"])
    # one response for every scene: its 1 s + 3 s stretched to 5 s and 4.5 s
    assert [c.duration for c in twice] == pytest.approx([1.0, 3.0, 1.25, 3.75, 1.125, 3.375], abs=1e-6)


def test_a_scene_without_the_tracks_text_gets_no_cues(planner):
    texts = [TEXTS[0], "", TEXTS[2]]
    plan = _plan(texts)
    p = AudioStoryPlanner(preset="tiny", device="cpu", responses=[RESPONSES[0], RESPONSES[2]])
    cues = p.plan_track(plan, _ctx(plan))
    assert [c.scene for c in cues] == [0, 0, 2, 2]
    assert [c.index for c in cues] == [0, 1, 2, 3]
    assert cues[2].start == pytest.approx(SCENE_SECONDS[0] + SCENE_SECONDS[1])
    # the count of responses is checked against the scenes that have a text
    with pytest.raises(ConfigError, match=r"got 3 responses but 2 scene\(s\) have a text on the track \(\[0, 2\]\)"):
        planner.plan_track(plan, _ctx(plan))


def test_bad_response_options_are_refused_with_the_fix():
    plan = _plan()
    both = AudioStoryPlanner(preset="tiny", device="cpu", response=RESPONSES[0], responses=RESPONSES)
    with pytest.raises(ConfigError, match="both 'response' and 'responses'"):
        both.plan_track(plan, _ctx(plan))
    with pytest.raises(ConfigError, match="'responses' .* is for a track's events; .* give one 'response'"):
        AudioStoryPlanner(preset="tiny", device="cpu", responses=RESPONSES).plan(
            StoryRequest(prompt="a harbour", duration=6.0))
    none = AudioStoryPlanner(preset="tiny", device="cpu", responses=["reasoning only" + C.THINK_CLOSE + C.IM_END] * 3)
    with pytest.raises(ConfigError, match=r"track 'ambience', scene 0: the planner LLM wrote no complete <\|gen\|> event"):
        none.plan_track(plan, _ctx(plan))


def test_a_cancel_from_report_stops_the_track_planner(planner):
    plan = _plan()

    class Stop(Exception):
        pass

    def progress(event):
        if event.stage == "step" and event.scene_index == 1:
            raise Stop

    ctx = _ctx(plan)
    ctx.progress = progress
    with pytest.raises(Stop):
        planner.plan_track(plan, ctx)


# -- the whole pipeline: a frames track and an ambience track -------------------------------------

GAIN = -6.0


def _pipeline() -> Pipeline:
    return Pipeline(
        planner="fake-planner",
        tracks={
            "frames": {"generator": "fake-image"},
            "ambience": {"planner": ("audiostory", {"responses": RESPONSES}), "tokenizers": ["audiostory-bridge"],
                         "generator": ("audiostory", {"steps": 1}), "text": "{ambience}", "gain": GAIN},
        },
        defaults={"preset": "tiny", "device": "cpu"},
        registry=_registry(),
    )


@pytest.fixture(scope="module")
def story_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("track") / "out"
    events: list = []
    story = _pipeline().run(StoryRequest(seed=3), plan=_plan(), out_dir=out, progress=events.append)
    return story, out, events


def test_the_pipeline_renders_the_track_planners_cues(story_run):
    story, out, _ = story_run
    amb = story.tracks["ambience"]
    assert [c.index for c in amb.cues] == list(range(5)) and sorted(amb.assets) == list(range(5))
    assert all("tangoflux-cond" in c.tokens for c in amb.cues)  # the track's tokenizer ran on its cues
    # every clip but the track's last is padded with the crossfade (§1.7) ...
    pads = [amb.assets[i].metadata["crossfade"] for i in range(5)]
    assert pads == [CROSSFADE] * 4 + [0.0]
    for c in amb.cues:  # ... and rendered for its cue's duration (+ padding), at 32 kHz
        clip = amb.assets[c.index]
        assert clip.sample_rate == SR
        assert clip.metadata["generated_seconds"] == pytest.approx(c.duration + pads[c.index], abs=1e-9)
        # the tiny VAE runs at 256 Hz: the trim is one of its samples (125 at 32 kHz) at most short
        assert 0 <= (c.duration + pads[c.index]) * SR - clip.samples.shape[1] <= SR / 256 + 1
    saved = json.loads((out / "tracks" / "ambience" / "cues.json").read_text())
    assert saved["planner"] == "audiostory" and [c["scene"] for c in saved["cues"]] == [0, 0, 1, 2, 2]
    assert sorted(p.name for p in (out / "tracks" / "ambience").glob("cue-*.wav")) == [
        f"cue-{i:04d}.wav" for i in range(5)]
    assert sorted(p.name for p in (out / "tracks" / "frames").glob("scene-*.png")) == [
        f"scene-{i:04d}.png" for i in range(3)]
    timeline = json.loads((out / "timeline.json").read_text())
    assert timeline["duration"] == pytest.approx(sum(SCENE_SECONDS))
    assert [c["start"] for c in timeline["tracks"]["ambience"]] == pytest.approx([c.start for c in amb.cues])


def test_the_ambience_in_the_mix_is_audiostorys_crossfade_join(story_run):
    """Within the ambience track the mix is upstream's crossfade_join of the clips in order
    (docs/audiostory.md §1.7, §9): a linear 3 s fade at every join, the run from 0 s."""
    story, _, _ = story_run
    amb = story.tracks["ambience"]
    mix = mixdown(story)
    assert mix.sample_rate == SR
    clips = [amb.assets[c.index].samples for c in sorted(amb.cues, key=lambda c: c.index)]
    fade = int(CROSSFADE * SR)
    ref = np.zeros_like(mix.samples)
    out = clips[0].astype(np.float64)
    for clip in clips[1:]:  # the reference join, written out: ramps include both end points
        ramp = np.linspace(0.0, 1.0, fade)
        head = out[:, :-fade]
        mixed = out[:, -fade:] * ramp[::-1] + clip[:, :fade] * ramp
        out = np.concatenate([head, mixed, clip[:, fade:]], axis=1)
    n = min(out.shape[1], ref.shape[1])
    ref[:, :n] = out[:, :n]
    ref *= 10 ** ((GAIN + mix.master_gain) / 20)
    assert mix.frames == int(round(sum(SCENE_SECONDS) * SR))
    np.testing.assert_allclose(mix.tracks["ambience"], ref, atol=1e-5)
    # and the same as storysdk.audio.crossfade_join, the function the mix uses
    joined = crossfade_join(clips, fade)[:, : mix.frames] * 10 ** ((GAIN + mix.master_gain) / 20)
    np.testing.assert_allclose(mix.tracks["ambience"][:, : joined.shape[1]], joined, atol=1e-5)
    assert float(np.abs(mix.tracks["ambience"]).max()) > 0


def test_a_resumed_run_reuses_the_saved_cues(story_run, tmp_path):
    story, _, _ = story_run
    out = tmp_path / "out"

    class Stop(Exception):
        pass

    def stop_after_first_clip(event):
        if event.stage == "generate" and "ambience" in event.component and event.done >= 1:
            raise Stop

    with pytest.raises(Stop):
        _pipeline().run(StoryRequest(seed=3), plan=_plan(), out_dir=out, progress=stop_after_first_clip)
    assert (out / "tracks" / "ambience" / "cues.json").is_file()
    events: list = []
    again = _pipeline().run(StoryRequest(seed=3), plan=_plan(), out_dir=out, progress=events.append)
    # the track planner was not asked again: no planning and no LLM call for the track
    assert not [e for e in events if e.component == "audiostory" and e.stage in ("plan", "step")
                and "track" in e.message]
    assert not [e for e in events if e.stage == "step" and e.component == "audiostory" and e.scene_index is not None
                and "teacher-forcing" in e.message]
    first, second = story.tracks["ambience"].cues, again.tracks["ambience"].cues
    assert [c.to_dict() for c in second] == [c.to_dict() for c in first]
    for a, b in zip(first, second):
        torch.testing.assert_close(b.tokens[QUERIES_KIND]["t5"], a.tokens[QUERIES_KIND]["t5"], atol=0, rtol=0)
    # dit_batch=1: each clip depends on its own cue only, so the resumed clips are the same bytes
    for i in range(5):
        np.testing.assert_array_equal(again.tracks["ambience"].assets[i].samples,
                                      story.tracks["ambience"].assets[i].samples)


def test_a_scene_longer_than_one_clip_is_clamped_or_refused():
    # a 40 s scene with one event cannot fill its span: the clip is clamped to the window less
    # the padding, and the scene ends in silence (noted on the cue); repair=False refuses it
    plan = StoryPlan(scenes=[Scene(index=0, prompt="p", duration=40.0, texts={"ambience": "wind"}),
                             Scene(index=1, prompt="q", duration=4.0, texts={"ambience": "rain"})], seed=1)
    one = response_text("one", [("Wind howls", 40.0)])
    p = AudioStoryPlanner(preset="tiny", device="cpu", response=one)
    cues = p.plan_track(plan, _ctx(plan))
    window = p.runtime().max_clip_seconds
    assert cues[0].duration == pytest.approx(window - CROSSFADE)  # padded: not the track's last clip
    assert cues[1].duration == pytest.approx(4.0)
    assert any("clamped" in r for r in cues[0].metadata["repairs"])
    strict = AudioStoryPlanner(preset="tiny", device="cpu", response=one, repair=False)
    with pytest.raises(StorySDKError, match="track 'ambience', scene 0: event 0 lasts 40.00 s but the DiT renders at most"):
        strict.plan_track(plan, _ctx(plan))
