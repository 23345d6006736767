"""The data model: validation, JSON round trips of plans and requests."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"duration": "12"}, "duration must be a positive number of seconds, got the string '12'; write the number without quotes"),
        ({"duration": float("inf")}, "duration must be a positive number of seconds, got inf"),
        ({"duration": float("nan")}, "duration must be a positive number of seconds, got nan"),
        ({"metadata": "oops"}, "metadata must be a table of free data (key = value pairs), got the string 'oops'"),
        ({"metadata": {1: "x"}}, "metadata keys must be strings, got 1"),
        ({"seed": True}, "seed must be a whole number from 0 to 18446744073709551615, got true"),
        ({"seed": 2**64}, "seed must be a whole number from 0 to 18446744073709551615, got 18446744073709551616"),
        ({"seed": 10**40}, "got a number with more than 30 digits"),
        ({"width": True}, "width must be a positive whole number of pixels, got true"),
        ({"num_scenes": "3"}, "num_scenes must be a whole number >= 1, got the string '3'; write it without quotes"),
        ({"prompt": None}, "prompt must be text (a string), got nothing (null)"),
        ({"style": 3}, "style must be text (a string) or unset, got 3; write it in quotes"),
        ({"characters": 5}, "characters must be the character text of a script"),
        ({"characters": [{"name": "Bob"}]}, "characters[0] must be a storysdk.Character (in a story file: a [[story.characters]] table"),
        ({"start_image": 5}, "start_image must be the path of an image file (a string), a data:image URI or a PIL image, got 5"),
    ],
)
def test_every_request_field_is_checked_with_the_fix(kwargs, message) -> None:
    with pytest.raises(ConfigError) as info:
        StoryRequest(**kwargs)
    assert message in str(info.value)


def test_the_largest_seed_is_accepted_and_fields_set_later_are_checked() -> None:
    req = StoryRequest(script="a cat", seed=2**64 - 1, duration=3)
    assert req.seed == 2**64 - 1 and req.duration == 3
    with pytest.raises(ConfigError, match="seed must be a whole number"):
        req.seed = -1
    with pytest.raises(ConfigError, match="width must be a positive whole number"):
        req.width = "64"
    assert req.seed == 2**64 - 1 and req.width is None  # a refused value is not set
    plan = make_plan()
    with pytest.raises(ConfigError, match="seed must be a whole number"):
        plan.seed = 10**26
    plan.seed = 12
    assert plan.seed == 12


def test_character_fields_are_checked() -> None:
    with pytest.raises(ConfigError, match="character name must be text"):
        Character(5, "a man")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="character 'Bob': description must be text"):
        Character("Bob", None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"characters\[1\] has no name; give it a name"):
        Character.from_dict({"description": "a man"}, where="characters[1]")


def test_plan_errors_name_the_source_and_the_field(tmp_path) -> None:
    data = make_plan().to_dict()
    data["scenes"][1]["caption"] = 7
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        StoryPlan.load(path)
    assert str(info.value) == (f"plan file {str(path)!r}: malformed plan: scenes[1]: caption must be text (a string), "
                               "got 7; write it in quotes")
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 0xff at line 1, byte offset 0\); save it as UTF-8"):
        StoryPlan.load(path)
    path.write_bytes(b"\xef\xbb\xbf" + make_plan().to_json().encode())  # a byte-order mark is fine
    assert StoryPlan.load(path) == make_plan()
    with pytest.raises(ConfigError, match="is a folder"):
        StoryPlan.load(tmp_path)
