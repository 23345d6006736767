"""The examples and the docs: story files parse and render, scripts run, doc code blocks run, links resolve."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import storysdk
from storysdk.storyfile import TOP_LEVEL, parse_story_file, tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"
STORY_FILES = sorted(EXAMPLES.glob("*.toml"))
#: Documents whose ```python blocks are run, in order, in one namespace per document.
RUNNABLE_DOCS = [
    DOCS / "getting-started.md",
    DOCS / "data-flow.md",
    DOCS / "story-files.md",
    DOCS / "plugin-guide.md",
    DOCS / "plugin-utilities.md",
    DOCS / "video.md",
    DOCS / "batching.md",
    ROOT / "README.md",
]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_there_are_story_files_and_one_mixes_images_and_audio() -> None:
    assert [p.name for p in STORY_FILES] == [
        "frames-with-tangoflux.toml",
        "mixed-story.toml",
        "seed-story-plot-diffusers.toml",
        "seed-story-tiny.toml",
    ]
    mixed = storysdk.load_story_file(EXAMPLES / "mixed-story.toml")
    assert mixed.tracks is not None and mixed.generators == []
    assert {name: t["generator"]["name"] for name, t in mixed.tracks.items()} == {
        "frames": "diffusers-image", "narration": "piper", "ambience": "diffusers-audio", "music": "tangoflux"}
    assert [t["name"] for t in mixed.tracks["frames"]["tokenizers"]] == ["clip-text"]
    assert (mixed.tracks["narration"]["text"], mixed.tracks["narration"]["duck"]) == ("{narration}", 10)
    assert all("duck" not in t for name, t in mixed.tracks.items() if name != "narration")  # ducked under it
    assert {"comic", "soundtrack", "storybook", "frames", "video"} == {c["name"] for c in mixed.composers}
    assert [c.get("captions") for c in mixed.composers if c["name"] == "video"] == ["narration"]
    assert mixed.defaults == {"preset": "auto"}
    assert (mixed.timing, mixed.mix["loudness"], mixed.mix["ceiling"]) == (
        {"mode": "track", "track": "narration", "padding": 0.5}, -16.0, -1.0)


def _generator_names(story_file: storysdk.StoryFile) -> list[str]:
    if story_file.tracks is not None:
        return [t["generator"]["name"] for t in story_file.tracks.values()]
    return [g["name"] for g in story_file.generators]


@pytest.mark.parametrize("path", STORY_FILES, ids=lambda p: p.name)
def test_story_file_parses_builds_and_plans(path: Path) -> None:
    story_file = storysdk.load_story_file(path)
    pipe = story_file.pipeline(defaults={"preset": "tiny"})  # what --preset tiny builds
    assert pipe.planner.name == story_file.planner["name"]
    assert [t.name for t in pipe.tokenizers] == [t["name"] for t in story_file.tokenizers]
    assert [g.name for g in pipe.generators] == _generator_names(story_file)
    if story_file.tracks is not None:
        assert list(pipe.tracks) == list(story_file.tracks)
    assert [c.name for c in pipe.composers] == [c["name"] for c in story_file.composers]
    plan = pipe.plan(story_file.request)
    assert plan.scenes and plan.seed == story_file.request.seed
    json.loads(plan.to_json())
    pipe.check_plan(plan)  # every component (each track's too) accepts the plan before a model loads


def test_mixed_story_plan_follows_the_script() -> None:
    story_file = storysdk.load_story_file(EXAMPLES / "mixed-story.toml")
    plan = story_file.pipeline(defaults={"preset": "tiny"}).plan(story_file.request)
    script_lines = [ln for ln in (story_file.request.script or "").splitlines() if ln.strip()]
    assert len(plan.scenes) == len(script_lines) == 6
    for scene, line in zip(plan.scenes, script_lines):
        assert scene.caption == line.rsplit("#", 1)[1].strip()
        tags = [t for t in re.findall(r"\[([^\]]+)\]", line.split("#")[0]) if t != "NC"]
        assert list(scene.characters) == tags
        assert "[" not in scene.prompt  # tags were replaced by the descriptions
    assert [s.characters for s in plan.scenes][3] == ()  # the [NC] frame
    assert story_file.request.duration is None  # the narration sets the pace, not a planned length
    assert [s.narration for s in plan.scenes] == [s.caption for s in plan.scenes]  # what the voice reads


#: The second scene of the shrunk demo speaks two sentences, so that the subtitles' sentence cues
#: are checked where a sentence does not start with its clip.
STORM = "Then the storm rolls in. Thunder shakes the green hills, and the rain begins."


def _words(text: str) -> int:
    return len(re.findall(r"[A-Za-z0-9']+", text))


def _dbfs_rms(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))


def test_mixed_story_renders_on_the_tiny_preset(tmp_path: Path) -> None:
    """The demo's story file, shrunk (2 scenes, 64 px, 1 step), renders every deliverable on one
    timeline paced by its Piper narration (the real bundled voice): every narration clip speaks
    (RMS above -40 dBFS) at the voice's 22.05 kHz, a scene's clip grows with its words (1 to 6
    words a second), each scene lasts its clip + 0.5 s, the MP4 lasts as long as the soundtrack
    and the timeline (within one video frame), its subtitles start within 0.1 s of the sentences
    the narration speaks, and the soundtrack's peak stays under full scale."""
    story_file = storysdk.load_story_file(EXAMPLES / "mixed-story.toml")
    story_file.request.width = story_file.request.height = 64
    assert story_file.tracks is not None
    for track in story_file.tracks.values():
        if "steps" in track["generator"]:  # the model-backed tracks; Piper has no steps
            track["generator"]["steps"] = 1
    pipe = story_file.pipeline(defaults={"preset": "tiny", "device": "cpu"})
    plan = pipe.plan(story_file.request)
    plan.scenes = [plan.scenes[0], plan.scenes[3]]  # Lily alone, and the [NC] storm
    plan.scenes[1].texts["narration"] = STORM  # the narration reads this instead of the caption
    spoken = {0: plan.scenes[0].caption, 3: STORM}
    story = pipe.run(story_file.request, plan=plan, out_dir=tmp_path)

    # the narration: the clip files, as saved under tracks/narration/ (float32 WAV + sidecar)
    clips: dict[int, np.ndarray] = {}
    sidecars: dict[int, dict] = {}
    for index in (0, 3):
        data, rate = sf.read(str(tmp_path / "tracks" / "narration" / f"scene-{index:04d}.wav"),
                             always_2d=True, dtype="float32")
        assert (rate, data.shape[1]) == (22050, 1), index  # the joe voice's own rate, mono
        clips[index] = data[:, 0]
        sidecars[index] = json.loads((tmp_path / "tracks" / "narration" / f"scene-{index:04d}.json").read_text())
        assert _dbfs_rms(clips[index]) > -40.0, index  # it speaks
        seconds = len(clips[index]) / rate
        assert 1.0 <= _words(spoken[index]) / seconds <= 6.0, (index, seconds)  # a human rate of speech
    narration = story.tracks["narration"]
    assert [a.made_by for a in narration.assets.values()] == ["piper", "piper"]
    assert [c.prompt for c, _ in narration.ordered()] == [spoken[0], spoken[3]]  # text = "{narration}"
    assert narration.duck == 10 and all(t.duck is None for t in story.audio_tracks() if t.name != "narration")
    # a scene's clip grows with the number of its words (7, then 14)
    assert _words(spoken[0]) < _words(spoken[3]) and len(clips[0]) < len(clips[3])
    # each clip's sentences, in order, where the audio says they are: every sentence speaks and the
    # pause the generator put between two sentences is silent
    sentences: dict[int, list[dict]] = {}
    for index, clip in clips.items():
        sentences[index] = sidecars[index]["sentences"]
        assert sentences[index] == narration.assets[index].metadata["sentences"]
        assert [s["text"] for s in sentences[index]] == (
            [spoken[0]] if index == 0 else ["Then the storm rolls in.",
                                            "Thunder shakes the green hills, and the rain begins."])
        bounds = [(round(s["start"] * 22050), round(s["end"] * 22050)) for s in sentences[index]]
        assert bounds[0][0] == 0 and bounds[-1][1] <= len(clip)
        for (a, b), nxt in zip(bounds, bounds[1:] + [(len(clip), len(clip))]):
            assert a < b <= nxt[0] and _dbfs_rms(clip[a:b]) > -40.0, index
            if nxt[0] < len(clip):
                assert nxt[0] - b >= round(0.2 * 22050)  # sentence_silence (0.3 s by default)
                assert float(np.abs(clip[b:nxt[0]]).max()) < 10 ** (-60 / 20), index

    # the timeline: each scene lasts its narration clip + 0.5 s padding; every other track spans the scenes
    timeline = json.loads((tmp_path / "timeline.json").read_text())
    d0, d3 = (len(clips[i]) / 22050 + 0.5 for i in (0, 3))
    assert [(s["index"], s["start"], s["duration"]) for s in timeline["scenes"]] == [
        (0, 0.0, pytest.approx(d0)), (3, pytest.approx(d0), pytest.approx(d3))]
    total = timeline["duration"]
    assert total == pytest.approx(d0 + d3)
    assert timeline["timing"]["mode"] == "track" and timeline["timing"]["track"] == "narration"
    assert list(timeline["tracks"]) == ["frames", "narration", "ambience", "music"]
    for name, cues in timeline["tracks"].items():
        want = [(s["index"], s["start"], s["duration"] - (0.5 if name == "narration" else 0.0))
                for s in timeline["scenes"]]  # the pace track's cues span what their clips sound
        assert [(c["scene"], c["start"], c["duration"]) for c in cues] == [
            (i, pytest.approx(a), pytest.approx(d)) for i, a, d in want], name
    assert sorted(story.tracks["frames"].assets) == sorted(story.images) == [0, 3]  # cues of a scene: its index
    assert {a.image.size for a in story.images.values()} == {(64, 64)}
    music = story.tracks["music"].assets
    assert [a.made_by for a in music.values()] == ["tangoflux", "tangoflux"]

    (page,) = story.files["comic"]
    assert page.is_file() and Image.open(page).size[0] >= 64
    frames = story.files["frames"]
    assert [p.suffix for p in frames] == [".webp", ".webp"]
    assert all(Image.open(p).size == (64, 64) for p in frames)
    (wav,) = [p for p in story.files["soundtrack"] if p.suffix == ".wav"]
    data, rate = sf.read(str(wav), always_2d=True)
    assert (rate, data.shape[1]) == (44100, 2)  # the [mix] settings: the 22.05 kHz narration resampled
    assert data.shape[0] == round(total * rate)  # the timeline's length, to the sample
    peak = float(np.abs(data).max())
    assert 0.0 < peak <= 10 ** (-1.0 / 20) + 1e-6 <= 1.0  # under the -1 dBFS ceiling, so under full scale
    (html,) = [p for p in story.files["storybook"] if p.suffix == ".html"]
    text = html.read_text(encoding="utf-8")
    assert "The Crystal Cave" in text
    for scene in plan.scenes:
        assert scene.caption in text
    manifest = json.loads((tmp_path / "files.json").read_text())
    assert set(manifest) == {"comic", "frames", "soundtrack", "storybook", "video"}

    (mp4,) = [p for p in story.files["video"] if p.suffix == ".mp4"]
    import av

    with av.open(str(mp4)) as container:
        kinds = sorted(s.type for s in container.streams)
        assert kinds == ["audio", "subtitle", "video"]
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (64, 64)
        frame = 1 / float(video.average_rate)
        mp4_seconds = container.duration / av.time_base
        decoded = sum(1 for _ in container.decode(video=0))
    with av.open(str(mp4)) as container:
        subs = container.streams.subtitles[0]
        cues = []  # (start s, text) of each subtitle sample; the muxer writes empty samples in gaps
        for packet in container.demux(subs):
            raw = bytes(packet)
            n = int.from_bytes(raw[:2], "big") if packet.size else 0
            if n:
                cues.append((float(packet.pts * subs.time_base), raw[2:2 + n].decode("utf-8")))
    assert abs(mp4_seconds - data.shape[0] / rate) <= frame  # the soundtrack's length
    assert abs(mp4_seconds - total) <= frame  # the timeline's
    assert abs(decoded * frame - total) <= frame
    # one subtitle per spoken sentence, starting within 0.1 s of where the narration track speaks it
    starts = {c["scene"]: c["start"] for c in timeline["tracks"]["narration"]}
    want_cues = [(starts[i] + s["start"], s["text"]) for i in (0, 3) for s in sentences[i]]
    assert [t for _, t in cues] == [t for _, t in want_cues]
    for (got, text_), (want, _) in zip(cues, want_cues):
        assert abs(got - want) <= 0.1, (text_, got, want)

def test_python_api_example_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "python_api.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 scenes, 3 pictures, 3 clips" in proc.stdout
    printed = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    for composer in ("comic", "soundtrack", "captions-md"):
        assert Path(printed[composer]).is_file(), composer
    md = (out / "story.md").read_text(encoding="utf-8")
    for caption in ("Ada finishes her robot.", "It wakes up!", "They go out to see the city."):
        assert caption in md
    links = re.findall(r"\]\(([^)]+\.png)\)", md)
    assert len(links) == 3 and all((out / link).is_file() for link in links), links  # its pictures, on their track
    assert {(out / link).parent.parent.name for link in links} == {"tracks"}


@pytest.mark.parametrize("doc", RUNNABLE_DOCS, ids=lambda p: p.name)
def test_doc_python_blocks_run(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(doc)
    assert blocks, f"{doc.name} has no python blocks"
    (tmp_path / "examples").mkdir()
    for path in STORY_FILES:
        shutil.copy(path, tmp_path / "examples" / path.name)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"doc_{doc.stem}"}
    for i, block in enumerate(blocks):
        # dont_inherit: a block runs as written, without this file's "from __future__ import annotations"
        exec(compile(block, f"{doc}:python-block-{i + 1}", "exec", dont_inherit=True), namespace)  # noqa: S102


def story_toml_blocks(path: Path) -> list[str]:
    """The ```toml blocks of ``path`` that are story files or parts of one (not a pyproject.toml)."""
    blocks = re.findall(r"^```toml\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return [b for b in blocks if set(tomllib.loads(b)) <= set(TOP_LEVEL)]


TOML_DOCS = [
    d for d in sorted(DOCS.glob("*.md")) + [ROOT / "README.md", EXAMPLES / "plugin-template" / "README.md"]
    if story_toml_blocks(d)
]


def test_the_story_file_guide_has_toml_blocks() -> None:
    assert DOCS / "story-files.md" in TOML_DOCS and DOCS / "video.md" in TOML_DOCS


@pytest.mark.parametrize("doc", TOML_DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_doc_toml_blocks_are_story_files_with_valid_options(doc: Path) -> None:
    """Every story-file ```toml block parses, and builds with options its components declare."""
    for block in story_toml_blocks(doc):
        story_file = parse_story_file(block)
        pipe = story_file.pipeline(defaults={"preset": "tiny", "device": "cpu"})  # builds and checks every option
        assert [c.name for c in pipe.composers] == [c["name"] for c in story_file.composers]


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", sorted(DOCS.glob("*.md")) + [ROOT / "README.md", EXAMPLES / "plugin-template" / "README.md"],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc: Path) -> None:
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
