"""The cookbook (docs/cookbook.md, examples/cookbook/) runs as written, on the tiny preset.

Every ``storysdk run`` command of the page is run through the CLI entry point, in the order the
page gives them, in a copy of ``examples/`` (so the page's relative paths hold), and what each
recipe writes is checked from the files: the track folders and timeline.json, the ambience
against an independent AudioStory crossfade join (plugins/storysdk-audiostory/docs/audiostory.md
§1.7, §9), the MP4 decoded with PyAV, the storybook's pictures against the tracks' PNGs.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shlex
import shutil
from html.parser import HTMLParser
from pathlib import Path

import av
import numpy as np
import pyloudnorm
import pytest
import soundfile
from PIL import Image

import storysdk
from storysdk.cli import main as storysdk_main

ROOT = Path(__file__).resolve().parents[1]
COOKBOOK = ROOT / "examples" / "cookbook"
DOC = ROOT / "docs" / "cookbook.md"
SR = 32000  # AudioStory's and TangoFlux's output rate, plugins/storysdk-audiostory/docs/audiostory.md §1.7
CROSSFADE = 3.0  # AudioStory's crossfade padding and join, plugins/storysdk-audiostory/docs/audiostory.md §1.7
TINY_VAE_RATE = 256  # the tiny Oobleck VAE's rate: a clip is trimmed to whole samples of it
LOUDNESS, CEILING = -16.0, -1.0  # storysdk.mixing.Mix defaults (LUFS, dBFS)


# -- the page --------------------------------------------------------------------------------------

def _sections() -> dict[str, str]:
    """The page's recipe sections by letter."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^## ([A-Z])\. .*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def _commands(section: str) -> list[list[str]]:
    """The commands of a section's ```bash blocks, continuation lines joined."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", section, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                out.append(shlex.split(line))
    return out


def _toml_blocks(section: str) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", section, flags=re.S | re.M)


def test_the_page_shows_every_story_file_in_full_and_no_python():
    sections = _sections()
    assert sorted(sections) == ["A", "B", "C"]
    shown = {"A": "frames-ambience-video.toml", "B": "seed-story-two-pictures.toml", "C": "plan-to-video.toml"}
    for letter, name in shown.items():
        assert _toml_blocks(sections[letter]) == [(COOKBOOK / name).read_text(encoding="utf-8")]
    assert sorted(p.name for p in COOKBOOK.iterdir()) == sorted(shown.values())  # no glue scripts
    for letter, section in sections.items():
        commands = _commands(section)
        assert commands and all(c[:2] == ["storysdk", "run"] and "--preset" in c for c in commands), letter
        assert all(c[c.index("--preset") + 1] == "tiny" for c in commands)


# -- running the page --------------------------------------------------------------------------------

def _run(command: list[str], cwd: Path) -> str:
    """``command`` (a ``storysdk ...`` line) through the CLI entry point in ``cwd``; its stderr
    (the progress lines) and stdout (the run's summary), in that order."""
    assert command[0] == "storysdk"
    err, out = io.StringIO(), io.StringIO()
    before = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = storysdk_main(command[1:])
    finally:
        os.chdir(before)
    assert code == 0, f"{shlex.join(command)} failed: {err.getvalue()[-3000:]}"
    return err.getvalue() + out.getvalue()


@pytest.fixture(scope="module")
def cookbook(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """Every command of the page, run in order in a copy of examples/; (folder, stderr per recipe)."""
    work = tmp_path_factory.mktemp("cookbook")
    shutil.copytree(COOKBOOK, work / "examples" / "cookbook")
    shutil.copy(ROOT / "examples" / "start.png", work / "examples" / "start.png")
    logs: dict[str, list[str]] = {}
    snapshots: dict[str, bytes] = {}
    for letter, section in _sections().items():
        for command in _commands(section):
            out = work / command[command.index("--out") + 1]
            if (out / "story.mp4").is_file():
                snapshots[str(out)] = (out / "story.mp4").read_bytes()
            logs.setdefault(letter, []).append(_run(command, work))
    logs["_snapshots"] = snapshots  # type: ignore[assignment]
    return work, logs


def _close(got, want) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float), atol=1e-6)


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def _video(path: Path) -> tuple[float, float, list[np.ndarray], np.ndarray]:
    """(duration s, fps, decoded frames, decoded audio (channels, samples))."""
    with av.open(str(path)) as container:
        duration = container.duration / av.time_base
        fps = float(container.streams.video[0].average_rate)
        frames = [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return duration, fps, frames, audio


def _shows(frames: list[np.ndarray], fps: float, spans: list[tuple[float, float]], pictures: list[np.ndarray]):
    """At the middle of each span the video shows that span's picture (the nearest of all of them)."""
    for k, (start, end) in enumerate(spans):
        frame = frames[int((start + end) / 2 * fps)]
        errors = [float(np.abs(frame - p).mean()) for p in pictures]
        assert int(np.argmin(errors)) == k and errors[k] < 20, (k, errors)


class _Book(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.audio = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag == "audio" or (tag == "source" and "audio" in (a.get("type") or "")):
            self.audio += 1

    def handle_data(self, data):
        self.text.append(data)


def _book(path: Path) -> tuple[list[np.ndarray], int, str]:
    parser = _Book()
    parser.feed(path.read_text(encoding="utf-8"))
    pictures = []
    for src in parser.images:
        if src.startswith("data:"):
            data = base64.b64decode(src.split(",", 1)[1])
            pictures.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32))
        else:
            pictures.append(_png(path.parent / src))
    return pictures, parser.audio, " ".join(" ".join(parser.text).split())


def _in_book(picture: np.ndarray, pictures: list[np.ndarray]) -> bool:
    return any(p.shape == picture.shape and np.array_equal(p, picture) for p in pictures)


# -- recipe A: StoryDiffusion frames + an AudioStory ambience track + a video -------------------------

EVENTS_A = [[1.5, 2.5], [4.0], [1.0, 3.0]]  # the timestamps of the story file's responses (4 s scenes)


def test_recipe_a_tracks_and_timeline(cookbook):
    work, logs = cookbook
    out = work / "out" / "cookbook" / "video"
    story_file = storysdk.load_story_file(COOKBOOK / "frames-ambience-video.toml")
    responses = story_file.tracks["ambience"]["planner"]["responses"]
    assert [[float(t) for t in re.findall(r"<timestamp>([\d.]+)</timestamp>", r)] for r in responses] == EVENTS_A
    timeline = _json(out / "timeline.json")
    assert timeline["duration"] == pytest.approx(12.0)
    spans = [(s["start"], s["end"]) for s in timeline["scenes"]]
    _close(spans, [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0)])  # duration 12 over 3 frames
    _close([(c["start"], c["end"]) for c in timeline["tracks"]["frames"]], spans)
    assert sorted(p.name for p in (out / "tracks" / "frames").glob("*.png")) == [f"scene-{k:04d}.png" for k in range(3)]
    summary = logs["A"][0]
    assert f"track frames (image, storydiffusion): 3 pictures in out/cookbook/video/tracks/frames" in summary
    assert "track ambience (audio, audiostory, gain -6 dB): 5 clips for 5 cues planned by audiostory" in summary
    assert all(_json(p)["sa32"] == 0.5 for p in (out / "tracks" / "frames").glob("scene-*.json"))  # StoryDiffusion's
    cues = _json(out / "tracks" / "ambience" / "cues.json")["cues"]
    assert [c["scene"] for c in cues] == [0, 0, 1, 2, 2] and [c["index"] for c in cues] == list(range(5))
    for scene, durations in enumerate(EVENTS_A):  # each scene's events fill its span, end to end
        mine = [c for c in cues if c["scene"] == scene]
        assert [c["duration"] for c in mine] == pytest.approx(durations)
        assert [c["start"] for c in mine] == pytest.approx(list(spans[scene][0] + np.cumsum([0.0, *durations[:-1]])))
        assert all(f"The total duration is 4.0 seconds." in c["metadata"]["instruction"] for c in mine)
    _close([(c["start"], c["end"]) for c in timeline["tracks"]["ambience"]],
           [(c["start"], c["start"] + c["duration"]) for c in cues])
    assert sorted(p.name for p in (out / "tracks" / "ambience").glob("*.wav")) == [f"cue-{k:04d}.wav" for k in range(5)]


def _ambience(out: Path) -> tuple[list[np.ndarray], list[dict]]:
    cues = _json(out / "tracks" / "ambience" / "cues.json")["cues"]
    clips = []
    for c in cues:
        samples, rate = soundfile.read(out / "tracks" / "ambience" / f"cue-{c['index']:04d}.wav", dtype="float32",
                                       always_2d=True)
        assert rate == SR
        clips.append(samples.T)
    return clips, cues


def test_recipe_a_mix_is_audiostorys_crossfade_join(cookbook):
    """soundtrack.wav = the ambience clips joined as AudioStory joins a story (3 s linear ramps with
    their end points, every clip but the last padded by 3 s), at -6 dB, then the master gain that
    brings it to -16 LUFS without passing -1 dBFS; all computed here from the clip files."""
    work, _ = cookbook
    out = work / "out" / "cookbook" / "video"
    clips, cues = _ambience(out)
    for clip, cue in zip(clips, cues):  # padded: all but the track's last clip
        seconds = cue["duration"] + (CROSSFADE if cue["index"] < len(cues) - 1 else 0.0)
        assert 0 <= seconds * SR - clip.shape[1] <= SR / TINY_VAE_RATE + 1
    fade = int(CROSSFADE * SR)
    ramp = np.linspace(0.0, 1.0, fade)
    joined = clips[0].astype(np.float64)
    for clip in clips[1:]:
        assert joined.shape[1] >= fade and clip.shape[1] >= fade  # else AudioStory cuts hard
        overlap = joined[:, -fade:] * ramp[::-1] + clip[:, :fade] * ramp
        joined = np.concatenate([joined[:, :-fade], overlap, clip[:, fade:]], axis=1)
    frames = 12 * SR
    ref = np.zeros((2, frames))
    ref[:, : min(frames, joined.shape[1])] = joined[:, :frames]
    assert abs(joined.shape[1] - frames) <= len(clips) * (SR / TINY_VAE_RATE + 1)  # the join lasts the timeline
    ref *= 10 ** (-6.0 / 20)  # the track's gain
    loudness = pyloudnorm.Meter(SR).integrated_loudness(ref.T)
    master = min(LOUDNESS - loudness, CEILING - 20 * np.log10(np.abs(ref).max()))
    wav, rate = soundfile.read(out / "soundtrack.wav", dtype="float32", always_2d=True)
    assert rate == SR and wav.shape == (frames, 2)
    np.testing.assert_allclose(wav.T, ref * 10 ** (master / 20), atol=2e-5)


def test_recipe_a_video_shows_the_frames_over_the_mix_for_the_timelines_length(cookbook):
    work, _ = cookbook
    out = work / "out" / "cookbook" / "video"
    duration, fps, frames, audio = _video(out / "story.mp4")
    assert duration == pytest.approx(_json(out / "timeline.json")["duration"], abs=1 / fps)
    assert fps == 8 and len(frames) == 12 * 8
    assert frames[0].shape == (64, 64, 3)
    pictures = [_png(out / "tracks" / "frames" / f"scene-{k:04d}.png") for k in range(3)]
    _shows(frames, fps, [(0, 4), (4, 8), (8, 12)], pictures)
    wav, _ = soundfile.read(out / "soundtrack.wav", dtype="float32", always_2d=True)
    assert abs(audio.shape[1] - wav.shape[0]) <= 2048  # AAC priming / padding
    for ch in range(2):  # the video's AAC track is the mix
        n = min(audio.shape[1], wav.shape[0])
        assert np.corrcoef(audio[ch, :n], wav[:n, ch])[0, 1] > 0.99


# -- recipe B: SEED-Story interleaved, two image tracks, one storybook ----------------------------------

def test_recipe_b_two_image_tracks_of_the_same_scenes_in_one_storybook(cookbook):
    work, logs = cookbook
    out = work / "out" / "cookbook" / "storybook"
    plan = storysdk.StoryPlan.load(out / "plan.json")
    assert plan.planner == "seed-story" and len(plan.scenes) == 3
    timeline = _json(out / "timeline.json")
    spans = [(s["start"], s["end"]) for s in timeline["scenes"]]
    _close(spans, [(0, 3), (3, 6), (6, 9)])  # no durations: 3 s a scene
    pictures, _, text = _book(out / "storybook.html")
    for track, maker in (("seed", "seed-story-detokenizer"), ("storydiffusion", "storydiffusion")):
        _close([(c["start"], c["end"]) for c in timeline["tracks"][track]], spans)
        assert f"track {track} (image, {maker}): 3 pictures in out/cookbook/storybook/tracks/{track}" in logs["B"][0]
        for k in range(3):
            assert _in_book(_png(out / "tracks" / track / f"scene-{k:04d}.png"), pictures), (track, k)
    for scene in plan.scenes:
        assert " ".join(scene.caption.split()) in text


def test_recipe_b_storydiffusion_renders_once_the_story_is_written(cookbook):
    """The de-tokenizer's track renders scene by scene between SEED-Story's steps; StoryDiffusion
    (needs_whole_plan) after the last step (the CLI's progress lines, in order)."""
    _, logs = cookbook
    lines = logs["B"][0].splitlines()
    steps = [i for i, ln in enumerate(lines) if " plan " in f" {ln} " and "seed-story" in ln]
    seed = [i for i, ln in enumerate(lines) if "generate" in ln and "seed-story-detokenizer" in ln]
    sd = [i for i, ln in enumerate(lines) if "generate" in ln and "storydiffusion" in ln]
    assert len(steps) >= 3 and len(seed) == 3 and len(sd) == 3
    assert steps[0] < seed[0] < steps[1] < seed[1] < steps[2] < seed[2]  # interleaved
    assert max(steps + seed) < min(sd)  # the whole plan first


# -- recipe C: recipe A's plan, other tracks ------------------------------------------------------------

def test_recipe_c_renders_the_saved_plan_with_other_tracks(cookbook):
    work, logs = cookbook
    first, out = work / "out" / "cookbook" / "video", work / "out" / "cookbook" / "replay"
    assert [p.name for p in sorted((out / "tracks").iterdir())] == ["pictures", "sound"]
    a_plan, plan = storysdk.StoryPlan.load(first / "plan.json"), storysdk.StoryPlan.load(out / "plan.json")
    assert [(s.caption, s.prompt, s.duration) for s in plan.scenes] == [
        (s.caption, s.prompt, s.duration) for s in a_plan.scenes]
    timeline = _json(out / "timeline.json")
    assert timeline["scenes"] == _json(first / "timeline.json")["scenes"]
    summary = logs["C"][1]
    assert "track pictures (image, diffusers-image): 3 pictures in out/cookbook/replay/tracks/pictures" in summary
    assert "track sound (audio, tangoflux, gain -3 dB): 3 clips in out/cookbook/replay/tracks/sound" in summary
    for k in range(3):
        samples, rate = soundfile.read(out / "tracks" / "sound" / f"scene-{k:04d}.wav", always_2d=True)
        assert rate == SR and 0 <= 4.0 * SR - samples.shape[0] <= SR / TINY_VAE_RATE + 1  # its scene's 4 s
    duration, fps, frames, _ = _video(out / "story.mp4")
    assert duration == pytest.approx(timeline["duration"], abs=1 / fps) and timeline["duration"] == pytest.approx(12)
    pictures = [_png(out / "tracks" / "pictures" / f"scene-{k:04d}.png") for k in range(3)]
    _shows(frames, fps, [(0, 4), (4, 8), (8, 12)], pictures)  # clear of the 0.5 s dissolves
    book, players, _ = _book(out / "storybook.html")
    assert all(_in_book(p, book) for p in pictures) and players >= 1


def test_recipe_c_first_runs_recipe_a_again_which_resumes(cookbook):
    """The page runs recipe A's command again before C: the folder resumes, nothing is planned
    or rendered again, and the video comes out byte for byte the same."""
    work, logs = cookbook
    first, again = logs["A"][0], logs["C"][0]
    assert re.search(r"plan\s+audiostory", first) and re.search(r"generate\s+storydiffusion", first)
    assert not re.search(r"plan\s+audiostory", again)  # the track planner's cues were loaded, not planned
    assert not re.search(r"generate\s+(storydiffusion|audiostory)", again)  # every asset was loaded
    out = work / "out" / "cookbook" / "video"
    assert logs["_snapshots"][str(out)] == (out / "story.mp4").read_bytes()  # type: ignore[index]
