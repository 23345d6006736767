"""The hosted request format (docs/storydiffusion-api.md) on the tiny preset."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from storysdk.errors import ConfigError
from storysdk_storydiffusion.hosted import (
    compose_page,
    parse_fields,
    render,
    render_story,
)

BORDER = 10  # docs/storydiffusion.md §4


def test_default_example_renders_a_classic_page_of_8_captioned_panels(tiny_pipe: Any) -> None:
    # the default request, at the smallest size and step count the fields allow (tiny preset on CPU)
    fields = {"image_width": "256", "image_height": "256", "num_steps": "20"}
    story = render_story(fields, preset="tiny", pipeline=tiny_pipe)
    plan = story.plan
    assert len(plan.scenes) == 8 and sorted(story.images) == list(range(8))
    assert [i for i, a in story.images.items() if a.metadata["id_frame"]] == [0, 1, 2]  # num_ids = 3
    assert all(a.image.size == (256, 256) for a in story.images.values())
    assert all(a.metadata["steps"] == 20 and a.metadata["seed"] == 42 for a in story.images.values())
    assert all(a.metadata["style"] == "Disney Charactor" for a in story.images.values())
    assert plan.scenes[0].caption == "at home, The newspaper says there is a treasure house in the forest."
    assert plan.scenes[1].caption == "on the road, near the forest"
    assert plan.scenes[0].prompt.startswith("a man, wearing black suit,")  # unnamed mode (predict.py)
    assert plan.scenes[2].characters == ()  # [NC]

    req = parse_fields(fields)
    data, mime = compose_page(story, req)
    assert mime == "image/webp"
    page = Image.open(io.BytesIO(data))
    assert page.format == "WEBP"
    # Classic layout of 8 panels: 2 rows of [1, 1, 2] (a "2" is two panels stacked and halved), §4
    panel = 256 + 2 * BORDER
    assert page.size == (2 * panel + panel // 2, 2 * panel)

    png = parse_fields({**fields, "output_format": "png"})
    with_captions, _ = compose_page(story, png)
    for scene in plan.scenes:
        scene.caption = ""
    bare, _ = compose_page(story, png)
    assert bare != with_captions  # the captions are drawn on the page


def test_defaults_and_the_ten_line_cap() -> None:
    req = parse_fields({})
    assert (req.seed, req.num_ids, req.num_steps, req.image_width, req.guidance_scale) == (42, 3, 25, 768, 5.0)
    assert (req.output_format, req.output_quality, req.style_name, req.comic_style) == (
        "webp", 80, "Disney Charactor", "Classic Comic Style")
    lines = "\n".join(f"frame {i}" for i in range(12))
    assert parse_fields({"comic_description": lines}).comic_description.splitlines() == [
        f"frame {i}" for i in range(10)]
    blank = parse_fields({"seed": ""}).seed
    assert isinstance(blank, int) and 0 <= blank < 2**16  # blank = random (predict.py: 2 random bytes)
    assert parse_fields({"output_format": "jpg"}).output_format == "jpg"


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("num_steps", "10", r"'num_steps' must be in the range 20 - 50, got 10"),
        ("num_steps", "many", r"'num_steps' must be a whole number"),
        ("sa32_setting", "1.5", r"'sa32_setting' must be in the range 0 - 1, got 1.5"),
        ("sa64_setting", "-0.1", r"'sa64_setting' must be in the range 0 - 1"),
        ("guidance_scale", "11", r"'guidance_scale' must be in the range 0.1 - 10"),
        ("guidance_scale", "0.5", r"'guidance_scale' is 0.5"),
        ("output_quality", "101", r"'output_quality' must be in the range 0 - 100, got 101"),
        ("style_strength_ratio", "60", r"'style_strength_ratio' must be in the range 15 - 50"),
        ("image_width", "300", r"'image_width' must be one of 256"),
        ("image_height", "2048", r"'image_height' must be one of 256"),
        ("output_format", "gif", r"'output_format' must be webp, jpeg or png"),
        ("seed", "abc", r"'seed' must be a whole number"),
        ("num_ids", "9", r"'num_ids' is 9 but 'comic_description' has 8"),
        ("num_ids", "0", r"'num_ids' must be in the range 1"),
        ("sd_model", "Dreamshaper", r"'sd_model'"),
        ("style_name", "Vaporwave", r"'style_name'"),
        ("comic_style", "Manga", r"'comic_style'"),
        ("character_description", "  ", r"'character_description' is empty"),
        ("ref_image", "photo.png", r"not supported yet"),
        ("colour", "red", r"unknown field"),
    ],
)
def test_bad_fields_are_refused(field: str, value: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        render({field: value}, preset="tiny")


def test_ref_image_argument_is_not_supported_yet() -> None:
    with pytest.raises(ConfigError, match="not supported yet"):
        render({}, ref_image=b"\x89PNG", preset="tiny")


def test_hosted_renderer_keys_and_options() -> None:
    from storysdk_storydiffusion.hosted import HostedRenderer

    tiny = HostedRenderer(preset="tiny")
    assert tiny._key("Unstable") == tiny._key("Juggernaut") == "tiny"  # one tiny pipeline for every name
    full = HostedRenderer()
    assert full._key("Unstable") == "stablediffusionapi/sdxl-unstable-diffusers-y"
    assert full._key("Juggernaut") == "RunDiffusion/Juggernaut-XL-v9/Juggernaut-XL_v9_RunDiffusionPhoto_v2.safetensors"
    assert full.loaded == [] and full.loads == 0
    with pytest.raises(ConfigError, match="max_models"):
        HostedRenderer(max_models=0)
    with pytest.raises(ConfigError, match="pipeline"):
        HostedRenderer(pipeline=object())
