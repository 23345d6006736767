"""The hosted request format (docs/storydiffusion-api.md) on the tiny preset, rendered through storysdk.Pipeline."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from storysdk import ComponentCache, ProgressEvent, RenderContext, Story, StoryRequest, get_registry
from storysdk.errors import ConfigError, JobCancelled
from storysdk_storydiffusion import loading
from storysdk_storydiffusion.hosted import (
    DEFAULT_FIELDS,
    check_request,
    compose_page,
    parse_fields,
    render,
    render_story,
    request_key,
    run_request,
)

BORDER = 10  # docs/storydiffusion.md §4
#: Where the hosted pipeline saves the frames (a one-generator pipeline: its track is named after it).
FRAMES = Path("tracks") / "storydiffusion"
#: the default request at the smallest size and step count the fields allow (tiny preset on CPU)
SMALL = {"image_width": "256", "image_height": "256", "num_steps": "20"}
#: a two-frame request: one id frame, one read frame
TWO = {**SMALL, "num_ids": "1", "seed": "5", "comic_description": "reading at home #Home\nwalking to the forest"}


def independent_page(fields: dict[str, str], tmp: Path) -> bytes:
    """The hosted answer built by hand from the components (as the hosted demo does it), not by the pipeline."""
    reg = get_registry()
    negative = DEFAULT_FIELDS["negative_prompt"]
    request = StoryRequest(script=DEFAULT_FIELDS["comic_description"], characters=DEFAULT_FIELDS["character_description"],
                           style="Disney Charactor", negative_prompt=negative, seed=42, width=256, height=256)
    plan = reg.create("planner", "script", skip_blank_lines=False).plan(request)  # type: ignore[attr-defined]
    gen: Any = reg.create("generator", "storydiffusion", preset="tiny", model="Unstable", sa32=0.5, sa64=0.5,
                          steps=20, guidance=5.0, num_ids=3, allow_nc_id_frames=True)
    gen.check_plan(plan)
    story = Story(plan=plan)
    for asset in gen.generate(plan.scenes, RenderContext(plan=plan, seed=42, component=gen.name)):
        story.add(asset)
    comic: Any = reg.create("composer", "comic", style="Classic Comic Style", layout_seed=42, format="png")
    pages = comic.compose(story, tmp)
    with Image.open(pages[0]) as im:
        page = im.convert("RGB")
    buf = io.BytesIO()
    page.save(buf, format="WEBP", quality=80, optimize=True)  # predict.py: quality and optimize
    return buf.getvalue()


@pytest.fixture(scope="module")
def default_page() -> bytes:
    """``render`` of the default request (tiny preset), once for the module."""
    data, mime = render(SMALL, preset="tiny")
    assert mime == "image/webp"
    return data


def test_the_answer_is_the_page_an_independent_construction_gives(default_page: bytes, tmp_path: Path) -> None:
    assert default_page == independent_page(SMALL, tmp_path)
    page = Image.open(io.BytesIO(default_page))
    assert page.format == "WEBP"
    # Classic layout of 8 panels: 2 rows of [1, 1, 2] (a "2" is two panels stacked and halved), §4
    panel = 256 + 2 * BORDER
    assert page.size == (2 * panel + panel // 2, 2 * panel)


def test_a_stopped_run_resumes_with_only_the_missing_frames(default_page: bytes, tmp_path: Path) -> None:
    req = parse_fields(SMALL)
    saved: list[int] = []

    def stop_after_the_id_frames(event: ProgressEvent) -> None:
        if event.stage == "generate" and event.scene_index is not None:
            saved.append(event.scene_index)
        if len(saved) == 3 and event.stage == "step":
            raise JobCancelled("stopped by the test")  # as a cancelled job stops

    with pytest.raises(JobCancelled):
        run_request(req, tmp_path, runtime={"preset": "tiny"}, progress=stop_after_the_id_frames)
    assert saved == [0, 1, 2]  # the id frames (num_ids = 3), saved as they were made
    assert sorted(p.name for p in (tmp_path / FRAMES).glob("*.png")) == [f"scene-000{i}.png" for i in range(3)]
    before = {i: (tmp_path / FRAMES / f"scene-000{i}.png").stat().st_mtime_ns for i in range(3)}

    events: list[ProgressEvent] = []
    result = run_request(req, tmp_path, runtime={"preset": "tiny"}, progress=events.append)
    generated = [e for e in events if e.stage == "generate" and e.scene_index is not None]
    assert [e.scene_index for e in generated] == [3, 4, 5, 6, 7] and generated[-1].total == 5
    assert {i: (tmp_path / FRAMES / f"scene-000{i}.png").stat().st_mtime_ns for i in range(3)} == before
    assert result.data == default_page and result.mime == "image/webp"
    assert result.path == tmp_path / "response.webp" and result.path.read_bytes() == default_page


def test_with_a_cache_the_base_model_loads_once_for_requests_with_other_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    loads: list[Any] = []
    real = loading.load_pipeline

    def counting(*args: Any, **kwargs: Any) -> Any:
        loads.append(args[0] if args else kwargs.get("model"))
        return real(*args, **kwargs)

    monkeypatch.setattr(loading, "load_pipeline", counting)
    cache = ComponentCache()
    first = run_request(parse_fields(TWO), tmp_path / "a", runtime={"preset": "tiny"}, cache=cache)
    other = {**TWO, "sa32_setting": "0.3", "guidance_scale": "6", "sd_model": "unstable"}
    second = run_request(parse_fields(other), tmp_path / "b", runtime={"preset": "tiny"}, cache=cache)
    assert loads == ["Unstable"]  # one pipeline for both (the name matched without case)
    assert first.data != second.data
    with tempfile.TemporaryDirectory() as tmp:  # the shared pipeline renders what a fresh one renders
        assert run_request(parse_fields(other), tmp, runtime={"preset": "tiny"}).data == second.data
    assert len(loads) == 2


def test_render_story_gives_the_frames_and_compose_page_the_page(tiny_pipe: Any) -> None:
    story = render_story(TWO, preset="tiny", pipeline=tiny_pipe)
    plan = story.plan
    assert len(plan.scenes) == 2 and sorted(story.images) == [0, 1]
    assert [i for i, a in story.images.items() if a.metadata["id_frame"]] == [0]  # num_ids = 1
    assert all(a.image.size == (256, 256) for a in story.images.values())
    assert all(a.metadata["steps"] == 20 and a.metadata["seed"] == 5 for a in story.images.values())
    assert all(a.metadata["style"] == "Disney Charactor" for a in story.images.values())
    assert plan.scenes[0].caption == "Home" and plan.scenes[1].caption == "walking to the forest"
    assert plan.scenes[0].prompt.startswith("a man, wearing black suit,")  # unnamed mode (predict.py)

    png = parse_fields({**TWO, "output_format": "png"})
    with_captions, mime = compose_page(story, png)
    assert mime == "image/png" and Image.open(io.BytesIO(with_captions)).format == "PNG"
    for scene in plan.scenes:
        scene.caption = ""
    bare, _ = compose_page(story, png)
    assert bare != with_captions  # the captions are drawn on the page


def test_a_request_the_planner_refuses_is_refused_before_any_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_loading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_pipeline", no_loading)
    bad = parse_fields({**TWO, "comic_description": "at home\n[NC]"})  # an [NC] frame with no prompt
    with pytest.raises(ConfigError, match=r"^field 'comic_description': script line 2: the frame has an empty prompt"):
        check_request(bad, runtime={"preset": "tiny"})
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(ConfigError, match="script line 2"):
        run_request(bad, tmp, runtime={"preset": "tiny"}, cache=ComponentCache())
    check_request(parse_fields(TWO), runtime={"preset": "tiny"})  # a good one passes, still without a model


def test_request_keys_name_every_field() -> None:
    a = parse_fields(TWO)
    assert request_key(a) == request_key(parse_fields(dict(TWO)))
    assert request_key(a) != request_key(parse_fields({**TWO, "sa64_setting": "0.4"}))
    assert request_key(a) != request_key(parse_fields({**TWO, "output_quality": "81"}))
    assert request_key(a) != request_key(a, {"preset": "tiny"})
    assert len(request_key(a)) == 24


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
