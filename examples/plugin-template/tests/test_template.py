"""Tests of the template plugin: the way a plugin author tests a plugin with storysdk.testing.

``storysdk_registry`` is a pytest fixture that storysdk itself provides (installing storysdk
installs its pytest plugin): a fresh registry with the built-ins and the fake components but
*no* installed plugins, so these tests see exactly what they register.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import storysdk
import storysdk_plugin_template
from storysdk.testing import make_registry
from storysdk_plugin_template import ContactSheetComposer, ShapesGenerator
from storysdk_plugin_template.contact_sheet import label_font


@pytest.fixture
def registry(storysdk_registry: storysdk.Registry) -> storysdk.Registry:
    """The fixture's registry plus this plugin, under the name its entry point gives it."""
    storysdk_registry.register_plugin(storysdk_plugin_template, name="template")
    return storysdk_registry


def _plan(n: int = 3, width: int = 48, height: int = 40, seed: int = 7) -> storysdk.StoryPlan:
    scenes = [storysdk.Scene(index=i, prompt=f"scene {i}") for i in range(n)]
    return storysdk.StoryPlan(scenes=scenes, width=width, height=height, seed=seed)


def _render(gen: ShapesGenerator, plan: storysdk.StoryPlan, scenes: list[storysdk.Scene] | None = None) -> dict[int, bytes]:
    ctx = storysdk.RenderContext(plan=plan, seed=plan.seed, component=gen.name)
    out = {}
    for asset in gen.generate(scenes if scenes is not None else plan.scenes, ctx):
        assert isinstance(asset, storysdk.ImageAsset)
        assert asset.made_by == "template-shapes"
        out[asset.scene_index] = asset.image.tobytes()
    return out


# -- the generator ---------------------------------------------------------------------------


def test_registered_with_capabilities(registry: storysdk.Registry) -> None:
    gen = registry.get("generator", "template-shapes")
    comp = registry.get("composer", "template-contact-sheet")
    assert gen.plugin == comp.plugin == "template"
    assert gen.capabilities()["modality"] == "image"
    assert gen.capabilities()["batching"] is True
    assert comp.capabilities()["requires"] == ["image"]
    assert gen.options() == {"shapes": 5, "width": None, "height": None}


def test_one_picture_per_scene_sized_from_the_plan() -> None:
    plan = _plan(n=4, width=48, height=40)
    ctx = storysdk.RenderContext(plan=plan, seed=plan.seed)
    assets = list(ShapesGenerator().generate(plan.scenes, ctx))
    assert sorted(a.scene_index for a in assets) == [0, 1, 2, 3]
    assert {a.image.size for a in assets} == {(48, 40)}
    # options override the plan
    ctx2 = storysdk.RenderContext(plan=_plan(n=1), seed=0)
    (one,) = ShapesGenerator(width=32, height=24).generate(_plan(n=1).scenes, ctx2)
    assert one.image.size == (32, 24)


def test_deterministic_and_independent_of_batching() -> None:
    plan = _plan(n=4)
    first = _render(ShapesGenerator(), plan)
    again = _render(ShapesGenerator(), plan)
    assert first == again  # bit-identical rerun
    # scene 2 drawn alone is the same picture as scene 2 drawn in the batch
    alone = _render(ShapesGenerator(), plan, [plan.scenes[2]])
    assert alone[2] == first[2]
    # different scenes and a different story seed give different pictures
    assert len(set(first.values())) == 4
    other_seed = _render(ShapesGenerator(), _plan(n=4, seed=8))
    assert all(other_seed[i] != first[i] for i in range(4))


def test_characters_keep_their_colour_across_scenes() -> None:
    scenes = [
        storysdk.Scene(index=0, prompt="a", characters=("Mia",)),
        storysdk.Scene(index=1, prompt="b", characters=("Tom", "Mia")),
        storysdk.Scene(index=2, prompt="c"),  # no character ([NC])
    ]
    plan = storysdk.StoryPlan(scenes=scenes, width=64, height=64, seed=3)
    ctx = storysdk.RenderContext(plan=plan, seed=plan.seed)
    gen = ShapesGenerator(shapes=3)
    images = {a.scene_index: np.asarray(a.image) for a in gen.generate(scenes, ctx)}
    mia = gen.character_colour(ctx, "Mia")
    tom = gen.character_colour(ctx, "Tom")
    assert mia != tom

    def count(index: int, colour: tuple[int, int, int]) -> int:
        return int(np.all(images[index] == np.array(colour, dtype=np.uint8), axis=-1).sum())

    # a disc is drawn in full on top of everything: at least pi*r^2/2 pixels of its colour
    r1 = max(2, int(min(64 / 1, 64 / 3) * 0.4))
    r2 = max(2, int(min(64 / 2, 64 / 3) * 0.4))
    assert count(0, mia) >= math.pi * r1 * r1 / 2
    assert count(1, mia) >= math.pi * r2 * r2 / 2
    assert count(1, tom) >= math.pi * r2 * r2 / 2
    assert count(2, mia) == 0 and count(0, tom) == 0
    # the character colour follows the story seed, not the scene
    other = storysdk.RenderContext(plan=plan, seed=4)
    assert gen.character_colour(other, "Mia") != mia


def test_bad_options_are_config_errors(registry: storysdk.Registry) -> None:
    # the declared bound and description make the message: option, value, rule, meaning
    with pytest.raises(storysdk.ConfigError, match=r"option shapes=0: input should be greater than or equal to 1 "
                       r"\(how many shapes to draw per picture\)"):
        ShapesGenerator(shapes=0)
    with pytest.raises(storysdk.ConfigError, match="option width=3: input should be greater than or equal to 8"):
        ShapesGenerator(width=3)
    with pytest.raises(storysdk.ConfigError, match="option shapes='5': input should be a valid integer"):
        ShapesGenerator(shapes="5")  # strict: a story file's "5" is not a number
    with pytest.raises(storysdk.ConfigError, match="no option 'colour'"):
        registry.create("generator", "template-shapes", colour="red")
    with pytest.raises(storysdk.ConfigError, match="has no option 'shape'. Did you mean 'shapes'"):
        registry.create("generator", "template-shapes", shape=3)
    with pytest.raises(storysdk.ConfigError, match="filename must be a plain file name ending in .png"):
        ContactSheetComposer(filename="../sheet.png")
    with pytest.raises(storysdk.ConfigError, match="option columns=0"):
        ContactSheetComposer(columns=0)


def test_options_are_declared_with_descriptions(registry: storysdk.Registry) -> None:
    info = registry.get("composer", "template-contact-sheet")
    rows = {o.name: o for o in info.option_info()}
    assert list(rows) == ["columns", "thumb", "padding", "label_size", "filename", "track"]
    assert (rows["track"].default, ContactSheetComposer.track_options) == (None, {"track": "image"})
    assert (rows["thumb"].type, rows["thumb"].default, rows["thumb"].constraints) == ("int", 128, (">= 8",))
    assert all(o.description for o in rows.values())
    assert ContactSheetComposer(columns=2).options.columns == 2


# -- the composer ----------------------------------------------------------------------------


def _story(sizes_colours: list[tuple[tuple[int, int], tuple[int, int, int]]]) -> storysdk.Story:
    scenes = [storysdk.Scene(index=i * 2, prompt=str(i)) for i in range(len(sizes_colours))]
    story = storysdk.Story(plan=storysdk.StoryPlan(scenes=scenes))
    for scene, (size, colour) in zip(scenes, sizes_colours):
        story.add(storysdk.ImageAsset(scene.index, Image.new("RGB", size, colour)))
    return story


def test_contact_sheet_layout_and_labels(tmp_path: Path) -> None:
    pictures = [((64, 64), (255, 0, 0)), ((128, 64), (0, 255, 0)), ((32, 96), (0, 0, 255)),
                ((50, 50), (255, 255, 0)), ((80, 40), (255, 0, 255))]
    story = _story(pictures)  # scene indices 0, 2, 4, 6, 8
    comp = ContactSheetComposer(columns=3, thumb=40, padding=5, label_size=10)
    (path,) = comp.compose(story, tmp_path)
    assert path == tmp_path / "contact-sheet.png"
    sheet = Image.open(path).convert("RGB")
    label_h = 10 + 4
    cell_h = 40 + label_h
    # 3 columns x 2 rows of 40-pixel cells, 5-pixel gaps around and between
    assert sheet.size == (3 * 40 + 4 * 5, 2 * cell_h + 3 * 5)
    for i, ((w, h), colour) in enumerate(pictures):
        x = 5 + (i % 3) * 45
        y = 5 + (i // 3) * (cell_h + 5)
        scale = min(40 / w, 40 / h)
        tw, th = round(w * scale), round(h * scale)
        # the fitted picture is centred in its square: its centre and corners have its colour
        left, top = x + (40 - tw) // 2, y + (40 - th) // 2
        for px, py in ((x + 20, y + 20), (left, top), (left + tw - 1, top + th - 1)):
            assert sheet.getpixel((px, py)) == colour, (i, px, py)
        if tw < 40:  # white on both sides of a tall picture
            assert sheet.getpixel((x, y + 20)) == (255, 255, 255)
        # the label strip holds exactly "#<index>" drawn in black with the label font
        expected = Image.new("RGB", (40, label_h), "white")
        ImageDraw.Draw(expected).text((20, label_h // 2), f"#{i * 2}", fill="black",
                                      font=label_font(10), anchor="mm")
        strip = sheet.crop((x, y + 40, x + 40, y + cell_h))
        assert strip.tobytes() == expected.tobytes()
        assert np.asarray(strip.convert("L")).min() < 64  # some dark text pixels
    # the unused sixth cell stays white
    empty = sheet.crop((5 + 2 * 45, 5 + cell_h + 5, 5 + 2 * 45 + 40, 5 + 2 * cell_h + 5))
    assert (np.asarray(empty) == 255).all()


def test_contact_sheet_without_pictures_writes_nothing(tmp_path: Path) -> None:
    story = storysdk.Story(plan=storysdk.StoryPlan(scenes=[storysdk.Scene(index=0, prompt="x")]))
    assert ContactSheetComposer().compose(story, tmp_path) == []
    assert list(tmp_path.iterdir()) == []


# -- in a pipeline, mixed with the fake components ------------------------------------------


def test_mixed_pipeline_renders_and_reruns_identically(registry: storysdk.Registry, tmp_path: Path) -> None:
    request = storysdk.StoryRequest(script="dawn\nnoon\ndusk\nnight", width=32, height=32, seed=11)

    def run(out: Path) -> storysdk.Story:
        pipe = storysdk.Pipeline(
            planner=("fake-planner", {"duration": 1.5}),
            tracks={  # a picture and a clip for every scene, each track in its own folder
                "shapes": {"generator": ("template-shapes", {"shapes": 3})},
                "beeps": {"generator": "fake-audio"},
            },
            composers=[("template-contact-sheet", {"columns": 2, "thumb": 32, "track": "shapes"}), "fake-composer"],
            registry=registry,
        )
        return pipe.run(request, out_dir=out)

    story = run(tmp_path / "a")
    shapes, beeps = story.tracks["shapes"], story.tracks["beeps"]
    assert (shapes.modality, shapes.generator, beeps.modality) == ("image", "template-shapes", "audio")
    assert sorted(shapes.assets) == [0, 1, 2, 3] and sorted(beeps.assets) == [0, 1, 2, 3]
    assert story.images == shapes.assets and story.audio == beeps.assets  # by scene: the first track of each
    (sheet,) = story.files["template-contact-sheet"]
    assert Image.open(sheet).size == (2 * 32 + 3 * 8, 2 * (32 + 18) + 3 * 8)
    # every picture the pipeline saved is the one the generator draws for that scene
    plan = storysdk.StoryPlan.load(tmp_path / "a" / "plan.json")
    direct = _render(ShapesGenerator(shapes=3), plan)
    for i in range(4):
        saved = Image.open(tmp_path / "a" / "tracks" / "shapes" / f"scene-{i:04d}.png").convert("RGB")
        assert saved.tobytes() == direct[i]
        assert (tmp_path / "a" / "tracks" / "beeps" / f"scene-{i:04d}.wav").is_file()
    # one clock: the scenes follow each other at their planned 1.5 s, each track's cue spans its scene
    assert [(s.index, s.start, s.duration) for s in story.timeline.scenes] == [(i, 1.5 * i, 1.5) for i in range(4)]
    assert story.timeline.total == 6.0 and all(beeps.assets[i].seconds == 1.5 for i in range(4))
    for name in ("shapes", "beeps"):
        assert [(c.scene, c.start, c.duration) for c in story.timeline.tracks[name]] == [
            (i, 1.5 * i, 1.5) for i in range(4)]
    # same seed, fresh folder: byte-identical files
    run(tmp_path / "b")
    assert sheet.read_bytes() == (tmp_path / "b" / "contact-sheet.png").read_bytes()


def test_the_sheet_shows_the_track_its_option_names(registry: storysdk.Registry, tmp_path: Path) -> None:
    """Two image tracks: one sheet of the first (no ``track``), one of the second in its own ``dir``."""
    request = storysdk.StoryRequest(script="dawn\nnoon\ndusk", width=32, height=32, seed=11)
    options = {"columns": 3, "thumb": 32}
    pipe = storysdk.Pipeline(
        planner="fake-planner",
        tracks={"plain": {"generator": ("template-shapes", {"shapes": 1})},
                "busy": {"generator": ("template-shapes", {"shapes": 9}), "seed": 5}},
        composers=[("template-contact-sheet", options),
                   {"name": "template-contact-sheet", **options, "track": "busy", "dir": "busy"}],
        registry=registry,
    )
    story = pipe.run(request, out_dir=tmp_path)
    assert story.files["template-contact-sheet"] == [tmp_path / "contact-sheet.png"]
    assert story.files["busy/template-contact-sheet"] == [tmp_path / "busy" / "contact-sheet.png"]
    # the busy track is drawn with its own seed: 9 shapes from seed 5, not the story's 11
    plan = story.plan
    busy = _render(ShapesGenerator(shapes=9), storysdk.StoryPlan(scenes=plan.scenes, width=32, height=32, seed=5))
    assert {i: a.image.tobytes() for i, a in story.tracks["busy"].assets.items()} == busy
    assert _render(ShapesGenerator(shapes=1), plan) == {i: a.image.tobytes() for i, a in story.images.items()}
    # each sheet is the one a story holding only that track's pictures gives
    for name, path in (("plain", tmp_path / "contact-sheet.png"), ("busy", tmp_path / "busy" / "contact-sheet.png")):
        alone = storysdk.Story(plan=plan, images=dict(story.tracks[name].assets))  # type: ignore[arg-type]
        (reference,) = ContactSheetComposer(**options).compose(alone, tmp_path / f"ref-{name}")
        assert path.read_bytes() == reference.read_bytes()
    assert (tmp_path / "contact-sheet.png").read_bytes() != (tmp_path / "busy" / "contact-sheet.png").read_bytes()


@pytest.mark.parametrize("track, problem", [("beeps", "is an audio track"), ("shape", "is not one of the pipeline's tracks")])
def test_a_sheet_of_a_track_that_is_not_an_image_track_is_refused_when_built(
    registry: storysdk.Registry, track: str, problem: str
) -> None:
    with pytest.raises(storysdk.ConfigError) as info:
        storysdk.Pipeline(
            planner="fake-planner",
            tracks={"shapes": {"generator": "template-shapes"}, "beeps": {"generator": "fake-audio"}},
            composers=[("template-contact-sheet", {"track": track})],
            registry=registry,
        )
    assert str(info.value).startswith(
        f"composer 'template-contact-sheet': track = {track!r} {problem}; image tracks: shapes")


def test_the_readme_python_block_runs_as_written(registry: storysdk.Registry, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    import storysdk.registry

    readme = Path(__file__).resolve().parents[1] / "README.md"
    (block,) = re.findall(r"^```python\n(.*?)^```", readme.read_text(encoding="utf-8"), flags=re.S | re.M)
    monkeypatch.setattr(storysdk.registry, "_default", registry)  # the built-ins and this plugin
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(block, f"{readme}:python-block", "exec", dont_inherit=True), namespace)  # noqa: S102
    story = namespace["story"]
    assert isinstance(story, storysdk.Story)
    assert story.files["template-contact-sheet"] == [Path("out/shapes/contact-sheet.png")]  # as the comment says
    out = tmp_path / "out" / "shapes"
    assert sorted(p.name for p in (out / "tracks" / "shapes").glob("*.png")) == [f"scene-000{i}.png" for i in range(3)]
    assert Image.open(out / "contact-sheet.png").size == (3 * 128 + 4 * 8, 128 + 18 + 2 * 8)


def test_make_registry_with_the_plugin_module() -> None:
    """make_registry(module) is the fixture-free way; the plugin is named after its module."""
    reg = make_registry(storysdk_plugin_template)
    info = reg.get("generator", "template-shapes")
    assert info.plugin == "storysdk_plugin_template"
    assert isinstance(info.create(shapes=2), ShapesGenerator)
