"""The cookbook's recipes (docs/cookbook.md, examples/cookbook/) run end to end on the tiny preset.

Each recipe runs once per module (in process, smallest sizes and steps that still take the
real path) and its deliverables are checked from the files: the MP4 decoded with PyAV, the
storybook HTML parsed, pictures compared pixel by pixel with the generators' outputs.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import av
import numpy as np
import pytest
from PIL import Image

import storysdk

ROOT = Path(__file__).resolve().parents[1]
COOKBOOK = ROOT / "examples" / "cookbook"
SR = 32000  # AudioStory's output rate, plugins/storysdk-audiostory/docs/audiostory.md §1.7
TANGOFLUX_DEFAULT_SECONDS = 10.0  # TangoFlux's default clip length, plugins/storysdk-audiostory/docs/audiostory.md §2


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"cookbook_{name}", COOKBOOK / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- recipe A: StoryDiffusion frames + AudioStory soundtrack -> MP4 ---------------------------------

STORY_A = '''
[story]
seed = 5
style = "Comic book"
duration = 9.0
characters = "[Ada] an old sailor with a yellow raincoat"
script = """
[Ada] rows a boat out of the harbour #Ada rows out, gulls crying.
[NC] waves crash against black rocks #Waves crash on the rocks.
[Ada] reads a letter by the fire #By the crackling fire, she reads.
"""
'''
CAPTIONS_A = ["Ada rows out, gulls crying.", "Waves crash on the rocks.", "By the crackling fire, she reads."]
FPS_A = 8


def recipe_a_args(out: Path) -> list[str]:
    return [str(out), "--story", str(out.parent / "story.toml"), "--device", "cpu", "--size", "64",
            "--steps", "1", "--audio-steps", "1", "--fps", str(FPS_A), "--seed-mode", "per_scene"]


@pytest.fixture(scope="module")
def recipe_a(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, storysdk.Story]]:
    tmp = tmp_path_factory.mktemp("recipe_a")
    story_file = tmp / "story.toml"
    story_file.write_text(STORY_A, encoding="utf-8")
    out = tmp / "out"
    stories = _load("frames_audiostory_video").main(recipe_a_args(out))
    return out, stories


def _decode_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray() for f in container.decode(stream)]
        return np.concatenate(frames, axis=1), stream.rate


def _decode_video(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_recipe_a_mp4_streams_and_duration(recipe_a):
    out, _ = recipe_a
    mp4 = out / "story.mp4"
    with av.open(str(mp4)) as container:
        kinds = [s.type for s in container.streams]
        assert kinds.count("video") == 1 and kinds.count("audio") == 1
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
        assert (video.width, video.height) == (64, 64)
        assert video.average_rate == FPS_A
        assert container.duration / 1e6 == pytest.approx(9.0, abs=1 / FPS_A)
    assert len(_decode_video(mp4)) == 9.0 * FPS_A  # 3 frames x 3 s each (the planner's even split)
    samples, rate = _decode_audio(mp4)
    assert rate == SR and samples.shape[0] == 2
    assert abs(samples.shape[1] - 9.0 * SR) <= 1024  # at most one AAC frame of padding


def test_recipe_a_soundtrack_is_audiostory_and_in_the_video(recipe_a):
    import soundfile

    out, stories = recipe_a
    sound = stories["soundtrack"]
    # AudioStory's planner wrote one event per frame (teacher forced), rendered by its own DiT path
    assert sound.plan.planner == "audiostory"
    assert [s.caption for s in sound.plan.scenes] == CAPTIONS_A
    assert [s.duration for s in sound.plan.scenes] == [3.0, 3.0, 3.0]
    assert all("tangoflux-cond" in s.tokens for s in sound.plan.scenes)
    assert {a.made_by for a in sound.audio.values()} == {"audiostory"}
    # every clip but the last is 3 s longer (§1.7), the 3 s crossfade joins give 9 s
    assert [a.samples.shape[1] for _, a in sound.ordered_audio()] == [6 * SR, 6 * SR, 3 * SR]
    wav, rate = soundfile.read(out / "soundtrack" / "soundtrack.wav", dtype="float32", always_2d=True)
    assert rate == SR and wav.shape == (9 * SR, 2)
    samples, _ = _decode_audio(out / "story.mp4")
    n = 9 * SR
    for ch in range(2):  # the video's AAC track is that soundtrack
        assert np.corrcoef(samples[ch, :n], wav[:n, ch])[0, 1] > 0.99


def test_recipe_a_video_shows_each_frame_for_its_span(recipe_a):
    out, stories = recipe_a
    frames = stories["frames"]
    assert {a.made_by for a in frames.images.values()} == {"storydiffusion"}
    pictures = [np.asarray(Image.open(out / "frames" / "images" / f"scene-{k:04d}.png").convert("RGB"), np.float32)
                for k in range(3)]
    decoded = _decode_video(out / "story.mp4")
    for k in range(3):
        for t in (0.375, 1.5, 2.75):  # seconds into scene k's 3 s span, clear of the 0.5 s dissolves
            frame = decoded[int((3 * k + t) * FPS_A)].astype(np.float32)
            errors = [np.abs(frame - p).mean() for p in pictures]
            assert int(np.argmin(errors)) == k and errors[k] < 20, (k, t, errors)


def test_recipe_a_subtitles_are_the_captions(recipe_a):
    out, _ = recipe_a
    cues = []
    with av.open(str(out / "story.mp4")) as container:
        stream = container.streams.subtitles[0]
        for packet in container.demux(stream):
            payload = bytes(packet)
            size = int.from_bytes(payload[:2], "big") if payload else 0  # mov_text: 16-bit length + UTF-8
            if size:
                cues.append((Fraction(packet.pts) * stream.time_base, payload[2 : 2 + size].decode("utf-8")))
    assert cues == [(Fraction(3 * k), c) for k, c in enumerate(CAPTIONS_A)]


def test_recipe_a_rerun_resumes_to_the_same_files(recipe_a):
    out, _ = recipe_a
    files = ["story.mp4", "video.json", "soundtrack/soundtrack.wav", "frames/frames/scene-002.png"]
    before = {f: (out / f).read_bytes() for f in files}
    again = _load("frames_audiostory_video").main(recipe_a_args(out))
    assert all(a.metadata.get("resumed") for a in again["frames"].images.values())  # loaded, not rendered
    assert all(a.metadata.get("resumed") for a in again["soundtrack"].audio.values())
    assert {f: (out / f).read_bytes() for f in files} == before


def test_lay_soundtrack_covers_any_number_of_events():
    """--events free: two AudioStory events (4 s + 3 s padding, then 3 s) under frames of 1, 2 and 1 s."""
    recipe = _load("frames_audiostory_video")
    rate = 100
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal((2, 7 * rate)).astype(np.float32), rng.standard_normal((2, 3 * rate)).astype(np.float32)]
    sound = storysdk.Story(plan=storysdk.StoryPlan(scenes=[storysdk.Scene(0, "a"), storysdk.Scene(1, "b")]))
    for i, c in enumerate(clips):
        sound.add(storysdk.AudioAsset(i, c, sample_rate=rate, made_by="audiostory"))
    frames = storysdk.StoryPlan(scenes=[storysdk.Scene(i, "x", duration=d) for i, d in enumerate([1.0, 2.0, 1.0])])
    pieces = recipe.lay_soundtrack(frames, sound)
    assert [pieces[i].samples.shape[1] for i in range(3)] == [175, 350, 175]  # 700 samples x 1/4, 2/4, 1/4
    # reference: AudioStory's join, a 3 s linear crossfade (linspace ramps, end points included, §1.7)
    fade = 3 * rate
    track = np.concatenate([clips[0], clips[1][:, fade:]], axis=1)
    track[:, 4 * rate :] = clips[0][:, 4 * rate :] * np.linspace(1, 0, fade) + clips[1][:, :fade] * np.linspace(0, 1, fade)
    joined = np.concatenate([pieces[i].samples for i in range(3)], axis=1)
    assert joined.shape == (2, 7 * rate) and np.allclose(joined, track, atol=1e-6)


def test_recipe_a_needs_frame_durations(tmp_path):
    recipe = _load("frames_audiostory_video")
    frames = storysdk.StoryPlan(scenes=[storysdk.Scene(0, "a", caption="A."), storysdk.Scene(1, "b", caption="B.")])
    args = recipe.parse_args([str(tmp_path)])
    with pytest.raises(storysdk.ConfigError, match="no durations: set duration"):
        recipe.make_soundtrack(frames, recipe.STORY, tmp_path / "soundtrack", args)
    assert not (tmp_path / "soundtrack").exists()


# -- recipe B: SEED-Story text -> StoryDiffusion frames -> storybook ----------------------------------

SCENES_B = 3


@pytest.fixture(scope="module")
def recipe_b(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, storysdk.Story]]:
    out = tmp_path_factory.mktemp("recipe_b") / "out"
    stories = _load("seed_story_storybook").main(
        [str(out), "--device", "cpu", "--scenes", str(SCENES_B), "--num-ids", "2", "--size", "64", "--steps", "1"]
    )
    return out, stories


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.captions: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("img", "audio", "source"):
            self.sources += [v for k, v in attrs if k == "src" and v]
        self._in_caption = tag in ("figcaption", "p")

    def handle_endtag(self, tag: str) -> None:
        self._in_caption = False

    def handle_data(self, data: str) -> None:
        if self._in_caption and data.strip():
            self.captions.append(" ".join(data.split()))


def test_recipe_b_text_is_seed_storys_and_kept(recipe_b):
    out, stories = recipe_b
    text = storysdk.StoryPlan.load(out / "text" / "plan.json")
    assert text.planner == "seed-story" and len(text.scenes) == SCENES_B
    assert text.scenes[0].caption == "George the little monkey sat in the garden and watched the sun rise over the hill."
    assert all(s.caption.strip() for s in text.scenes[1:])  # SEED-Story wrote the rest
    cast = storysdk.StoryPlan.load(out / "cast-plan.json")
    assert [s.caption for s in cast.scenes] == [s.caption for s in text.scenes]
    assert [c.name for c in cast.characters] == ["George"] and all(s.characters == ("George",) for s in cast.scenes)
    assert all(s.prompt.startswith("a little brown monkey with a red cap, ") for s in cast.scenes)
    assert (cast.width, cast.height, cast.metadata["num_ids"]) == (64, 64, 2)


def test_recipe_b_frames_are_storydiffusion_with_id_frames(recipe_b):
    _, stories = recipe_b
    book = stories["storybook"]
    assert sorted(book.images) == list(range(SCENES_B))
    meta = [book.images[k].metadata for k in range(SCENES_B)]
    assert {book.images[k].made_by for k in range(SCENES_B)} == {"storydiffusion"}
    assert [m["id_frame"] for m in meta] == [True, True, False]  # num_ids = 2, then a read frame
    assert all(m["characters"] == ["George"] and m["style"] == "Comic book" for m in meta)
    assert all(book.images[k].image.size == (64, 64) for k in range(SCENES_B))


def test_recipe_b_storybook_has_every_caption_and_its_files(recipe_b):
    out, _ = recipe_b
    html_path = out / "storybook" / "storybook.html"
    page = _Page()
    page.feed(html_path.read_text(encoding="utf-8"))
    text = storysdk.StoryPlan.load(out / "text" / "plan.json")
    for scene in text.scenes:
        assert " ".join(scene.caption.split()) in page.captions
    assert len(page.sources) == SCENES_B
    for k, src in enumerate(page.sources):
        assert not src.startswith(("data:", "http")) and (html_path.parent / src).is_file()
        shown = np.asarray(Image.open(html_path.parent / src).convert("RGB"))
        drawn = np.asarray(Image.open(out / "storybook" / "images" / f"scene-{k:04d}.png").convert("RGB"))
        assert np.array_equal(shown, drawn)  # scene k's StoryDiffusion frame, in order


# -- recipe C: a saved plan rendered again from the CLI (StoryDiffusion + TangoFlux -> video) -------


def test_recipe_c_saved_plan_to_video_from_the_cli(recipe_b, tmp_path, capsys):
    from storysdk.cli import main as cli

    out_b, _ = recipe_b
    plan = storysdk.StoryPlan.load(out_b / "cast-plan.json")
    plan.scenes = plan.scenes[:2]  # any plan file works; two scenes keep the test short
    plan_file = plan.save(tmp_path / "plan.json")
    out = tmp_path / "video"
    code = cli(["run", str(COOKBOOK / "plan-to-video.toml"), "--preset", "tiny", "--device", "cpu",
                "--plan", str(plan_file), "--out", str(out), "--quiet"])
    assert code == 0
    assert f"video: {out / 'story.mp4'}" in capsys.readouterr().out
    with av.open(str(out / "story.mp4")) as container:
        kinds = [s.type for s in container.streams]
        assert kinds.count("video") == 1 and kinds.count("audio") == 1
        assert container.duration / 1e6 == pytest.approx(2 * TANGOFLUX_DEFAULT_SECONDS, abs=0.1)
    info = json.loads((out / "video.json").read_text(encoding="utf-8"))
    assert [(s["start"], s["end"], s["caption"]) for s in info["scenes"]] == [
        (0.0, 10.0, plan.scenes[0].caption), (10.0, 20.0, plan.scenes[1].caption)
    ]
    page = _Page()
    page.feed((out / "storybook.html").read_text(encoding="utf-8"))
    assert all(" ".join(s.caption.split()) in page.captions for s in plan.scenes)


# -- recipe D: a story file with one component swapped and one dropped, from Python ----------------

STORY_D = '''
[story]
seed = 3
width = 64
height = 64
duration = 2.0
characters = "[Mia] a girl with a red scarf"
script = """
[Mia] finds a map in the attic #Mia finds a map.
[NC] a storm over the sea #A storm.
"""

[planner]
name = "script"

[[generators]]
name = "storydiffusion"
steps = 1
sa32 = 0.4
num_ids = 1

[[generators]]
name = "tangoflux"

[[composers]]
name = "frames"
'''


def test_recipe_d_swap_and_drop_components(tmp_path, capsys):
    recipe = _load("swap_component")
    story_file = tmp_path / "story.toml"
    story_file.write_text(STORY_D, encoding="utf-8")
    story = recipe.main([str(story_file), str(tmp_path / "out"), "--preset", "tiny", "--device", "cpu",
                         "--swap", "storydiffusion=diffusers-image", "--set", "guidance=3.0", "--drop", "tangoflux"])
    assert story_file.read_text(encoding="utf-8") == STORY_D  # the file is not changed
    assert "diffusers-image does not take num_ids, sa32 (options of storydiffusion): left out" in capsys.readouterr().err
    assert not story.audio and sorted(story.images) == [0, 1]
    assert {a.made_by for a in story.images.values()} == {"diffusers-image"}
    assert all(story.images[k].image.size == (64, 64) for k in range(2))
    # the specs it built from: steps carried over, guidance set, sa32 left out, tangoflux gone
    sf = storysdk.load_story_file(story_file)
    assert recipe.swap(sf, "storydiffusion", "diffusers-image", {"guidance": 3.0}) == ["num_ids", "sa32"]
    recipe.drop(sf, "tangoflux")
    assert sf.generators == [{"name": "diffusers-image", "steps": 1, "guidance": 3.0}]
    for k in range(2):
        assert Image.open(tmp_path / "out" / "frames" / f"scene-{k:03d}.png").size == (64, 64)


def test_recipe_d_names_what_is_wrong(tmp_path):
    recipe = _load("swap_component")
    sf = storysdk.load_story_file(COOKBOOK / "plan-to-video.toml")
    with pytest.raises(storysdk.ConfigError, match="no component named 'nope'"):
        recipe.swap(sf, "nope", "diffusers-image", {})
    with pytest.raises(storysdk.UnknownComponentError):
        recipe.swap(sf, "tangoflux", "no-such-generator", {})
    with pytest.raises(storysdk.ConfigError, match="no tokenizer, generator or composer named 'comic'"):
        recipe.drop(sf, "comic")
    assert recipe.toml_value("[512, 512]") == [512, 512] and recipe.toml_value("ddim") == "ddim"


def test_recipe_d_doc_snippet_runs(tmp_path, monkeypatch):
    """The last python block of docs/cookbook.md (recipe D's core), as written."""
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "docs" / "cookbook.md").read_text(encoding="utf-8"),
                        flags=re.S | re.M)
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "frames-with-tangoflux.toml", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(blocks[-1], "docs/cookbook.md:recipe-D", "exec"), namespace)  # noqa: S102
    story = namespace["story"]
    assert isinstance(story, storysdk.Story)
    assert sorted(story.files) == ["comic", "storybook"] and not story.audio
    assert {a.made_by for a in story.images.values()} == {"diffusers-image"} and len(story.images) == 4
    assert (tmp_path / "out" / "cookbook" / "swapped" / "storybook.html").is_file()
