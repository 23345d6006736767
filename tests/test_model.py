"""The data model: validation, JSON round trips of plans and requests."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from storysdk import AudioAsset, Character, ConfigError, ImageAsset, Scene, Story, StoryPlan, StoryRequest


def make_plan() -> StoryPlan:
    return StoryPlan(
        scenes=[
            Scene(0, "a man reads", caption="He reads.", characters=("Bob",), metadata={"id_frame": True}),
            Scene(1, "a forest", caption="A forest.", characters=(), duration=2.5),
        ],
        characters=[Character("Bob", "a man in a black suit")],
        title="T",
        style="Comic book",
        negative_prompt="blurry",
        width=64,
        height=96,
        seed=11,
        planner="script",
        metadata={"k": [1, 2]},
    )


def test_plan_json_round_trip_keeps_every_field() -> None:
    plan = make_plan()
    again = StoryPlan.from_json(plan.to_json())
    assert again == plan
    assert again.scenes[1].duration == 2.5
    assert again.scenes[0].characters == ("Bob",)
    assert again.character("Bob").description == "a man in a black suit"


def test_plan_edit_and_reload(tmp_path) -> None:
    plan = make_plan()
    path = plan.save(tmp_path / "plan.json")
    text = path.read_text().replace("He reads.", "He reads the news.")
    path.write_text(text)
    assert StoryPlan.load(path).scene(0).caption == "He reads the news."


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be an object"),
        ('{"format": 99, "scenes": []}', "format 99"),
        ('{"scenes": [{"prompt": "x"}]}', "malformed plan"),
        ('{"scenes": [{"index": 0}, {"index": 0}]}', "indices repeat"),
    ],
)
def test_malformed_plans_raise_config_error(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        StoryPlan.from_json(text)


def test_missing_plan_file_names_the_fix(tmp_path) -> None:
    with pytest.raises(ConfigError, match="storysdk plan"):
        StoryPlan.load(tmp_path / "nope.json")


def test_request_round_trip_with_in_memory_image() -> None:
    img = Image.new("RGB", (4, 4), (10, 20, 30))
    req = StoryRequest(prompt="p", characters=[Character("A", "d", reference_image=img)], start_image=img, seed=5)
    data = req.to_dict()
    assert data["start_image"].startswith("data:image/png;base64,")
    again = StoryRequest.from_dict(data)
    assert again.to_dict() == data


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"seed": "7"}, "seed"),
        ({"width": 0}, "width"),
        ({"height": -8}, "height"),
        ({"num_scenes": 0}, "num_scenes"),
        ({"duration": 0}, "duration"),
    ],
)
def test_request_validation(kwargs, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment):
        StoryRequest(**kwargs)


def test_request_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(ConfigError, match="unknown story field"):
        StoryRequest.from_dict({"promt": "typo"})


def test_audio_asset_shapes() -> None:
    mono = AudioAsset(0, np.zeros(100, dtype=np.float64), 16000)
    assert mono.samples.shape == (1, 100) and mono.samples.dtype == np.float32
    assert mono.seconds == pytest.approx(100 / 16000)
    with pytest.raises(ConfigError, match="transposed"):
        AudioAsset(0, np.zeros((1000, 2)), 16000)
    with pytest.raises(ConfigError, match="channels, frames"):
        AudioAsset(0, np.zeros((1, 2, 3)), 16000)
    with pytest.raises(ConfigError, match="sample_rate"):
        AudioAsset(0, np.zeros((1, 3)), 0)


def test_image_asset_needs_pil() -> None:
    with pytest.raises(ConfigError, match="PIL image"):
        ImageAsset(0, np.zeros((4, 4, 3)))  # type: ignore[arg-type]


def test_scene_validation() -> None:
    with pytest.raises(ConfigError, match="index"):
        Scene(-1, "x")
    with pytest.raises(ConfigError, match="duration"):
        Scene(0, "x", duration=-1.0)


def test_story_orders_assets_by_plan() -> None:
    plan = StoryPlan(scenes=[Scene(2, "b"), Scene(0, "a")])
    story = Story(plan)
    story.add(ImageAsset(0, Image.new("RGB", (2, 2))))
    story.add(ImageAsset(2, Image.new("RGB", (2, 2))))
    story.add(AudioAsset(0, np.zeros((1, 4)), 8000))
    assert [s.index for s, _ in story.ordered_images()] == [2, 0]
    assert [s.index for s, _ in story.ordered_audio()] == [0]
