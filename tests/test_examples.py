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
        "frames": "diffusers-image", "ambience": "diffusers-audio", "music": "tangoflux"}
    assert [t["name"] for t in mixed.tracks["frames"]["tokenizers"]] == ["clip-text"]
    assert {"comic", "soundtrack", "storybook", "frames", "video"} == {c["name"] for c in mixed.composers}
    assert mixed.defaults == {"preset": "auto"}
    assert (mixed.timing, mixed.mix["loudness"], mixed.mix["ceiling"]) == ({"mode": "plan"}, -16.0, -1.0)


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
    total = story_file.request.duration
    assert total is not None
    assert sum(s.duration or 0 for s in plan.scenes) == pytest.approx(total)


def test_mixed_story_renders_on_the_tiny_preset(tmp_path: Path) -> None:
    """The demo's story file, shrunk (2 scenes, 64 px, 1 step), renders every deliverable on one
    timeline: the MP4 lasts as long as the soundtrack and the timeline (within one video frame),
    and the soundtrack's peak stays under full scale."""
    story_file = storysdk.load_story_file(EXAMPLES / "mixed-story.toml")
    story_file.request.width = story_file.request.height = 64
    assert story_file.tracks is not None
    for track in story_file.tracks.values():
        track["generator"]["steps"] = 1
    pipe = story_file.pipeline(defaults={"preset": "tiny", "device": "cpu"})
    plan = pipe.plan(story_file.request)
    plan.scenes = [plan.scenes[0], plan.scenes[3]]  # Lily alone, and the [NC] storm
    story = pipe.run(story_file.request, plan=plan, out_dir=tmp_path)

    # the timeline: each scene as long as planned (12 s over 6 scenes), every track cued on it
    seconds = story_file.request.duration / 6  # type: ignore[operator]
    timeline = json.loads((tmp_path / "timeline.json").read_text())
    assert [(s["index"], s["start"], s["duration"]) for s in timeline["scenes"]] == [
        (0, 0.0, pytest.approx(seconds)), (3, pytest.approx(seconds), pytest.approx(seconds))]
    total = timeline["duration"]
    assert total == pytest.approx(2 * seconds)
    assert list(timeline["tracks"]) == ["frames", "ambience", "music"]
    for name, cues in timeline["tracks"].items():
        assert [(c["scene"], c["start"], c["duration"]) for c in cues] == [
            (s["index"], s["start"], s["duration"]) for s in timeline["scenes"]], name
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
    assert (rate, data.shape[1]) == (44100, 2)  # the [mix] settings
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
    assert abs(mp4_seconds - data.shape[0] / rate) <= frame  # the soundtrack's length
    assert abs(mp4_seconds - total) <= frame  # the timeline's
    assert abs(decoded * frame - total) <= frame


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
