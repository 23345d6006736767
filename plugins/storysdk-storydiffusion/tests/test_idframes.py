"""Id frames are the ``storydiffusion`` generator's job: chosen and checked by ``check_plan``, no model loaded.

The choices below are worked out by hand from docs/storydiffusion.md §1.5 and §2 (named mode: the
first ``num_ids`` frames showing only the character; unnamed mode: the first ``num_ids`` frames)
and written out literally, as scene indices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import storysdk
from storysdk import Character, Pipeline, Scene, StoryPlan, StoryRequest
from storysdk.builtins.script import ScriptPlanner
from storysdk.errors import ConfigError, ScriptError
from storysdk_storydiffusion import loading
from storysdk_storydiffusion.generator import StoryDiffusionGenerator
from storysdk_storydiffusion.idframes import choose_id_frames

# docs/storydiffusion-api.md: the hosted API's default request (unnamed mode, [NC] on lines 3, 4, 7)
HOSTED_CHARACTER = "a man, wearing black suit"
HOSTED_SCRIPT = (
    "at home, read new paper #at home, The newspaper says there is a treasure house in the forest.\n"
    "on the road, near the forest\n"
    "[NC] The car on the road, near the forest #He drives to the forest in search of treasure.\n"
    "[NC]A tiger appeared in the forest, at night \n"
    "very frightened, open mouth, in the forest, at night\n"
    "running very fast, in the forest, at night\n"
    "[NC] A house in the forest, at night #Suddenly, he discovers the treasure house!\n"
    "in the house filled with treasure, laughing, at night #He is overjoyed inside the house."
)
C = "character"
# The two-character example of the upstream app (lowvram.py gr.Examples)
TWO_BOX = "[Bob] A man, wearing a black suit\n[Alice]a woman, wearing a white shirt"
TWO_SCRIPT = "\n".join(
    [
        "[Bob] at home, read new paper #at home, The newspaper says there is a treasure house in the forest.",
        "[Bob] on the road, near the forest",
        "[Alice] is make a call at home # [Bob] invited [Alice] to join him on an adventure.",
        "[NC]A tiger appeared in the forest, at night ",
        "[NC] The car on the road, near the forest #They drives to the forest in search of treasure.",
        "[Bob] very frightened, open mouth, in the forest, at night",
        "[Alice] very frightened, open mouth, in the forest, at night",
        "[Bob]  and [Alice] running very fast, in the forest, at night",
        "[NC] A house in the forest, at night #Suddenly, They discovers the treasure house!",
        "[Bob]  and [Alice]  in the house filled with  treasure, laughing, at night #He is overjoyed inside the house.",
    ]
)
MIA_SCRIPT = "[Mia] a girl in a red coat #Mia\n[NC] a quiet street #The street"
MIA_CHARACTERS = "[Mia] a girl"


def plan(script: str, characters: Any = "", **planner: Any) -> StoryPlan:
    return ScriptPlanner(**planner).plan(StoryRequest(script=script, characters=characters, width=64, height=64))


def ids(p: StoryPlan, **options: Any) -> dict[str, list[int]]:
    """The generator's choice as scene indices, checked by check_plan first."""
    gen = StoryDiffusionGenerator(**options)
    gen.check_plan(p)
    return {name: [s.index for s in group] for name, group in gen.id_frames(p).items()}


def refused(p: StoryPlan, **options: Any) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        StoryDiffusionGenerator(**options).check_plan(p)
    return info.value


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to load or build SDXL weights fails the test."""

    def boom(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_pipeline", boom)
    monkeypatch.setattr(loading, "prepare_pipeline", boom)
    monkeypatch.setattr("storysdk.tiny.tiny_sdxl_pipeline", boom)


# -- the issue: one [Mia] frame ----------------------------------------------------------------


def test_one_mia_frame_renders_with_diffusers_image(tmp_path: Path) -> None:
    request = StoryRequest(script=MIA_SCRIPT, characters=MIA_CHARACTERS, width=64, height=64, seed=3)
    pipe = Pipeline(planner="script", generators=[("diffusers-image", {"preset": "tiny", "steps": 2})])
    story = pipe.run(request, out_dir=tmp_path / "out")
    assert sorted(story.images) == [0, 1]
    assert all(a.image.size == (64, 64) for a in story.images.values())
    assert [s.characters for s in story.plan.scenes] == [("Mia",), ()]


def test_one_mia_frame_is_refused_by_storydiffusion_before_any_model_loads(no_model: None, tmp_path: Path) -> None:
    request = StoryRequest(script=MIA_SCRIPT, characters=MIA_CHARACTERS, width=64, height=64, seed=3)
    pipe = Pipeline(planner="script", generators=[("storydiffusion", {"preset": "tiny", "steps": 2})])
    with pytest.raises(ScriptError) as info:
        pipe.run(request, out_dir=tmp_path / "out")
    err = info.value
    assert err.line == 1 and err.field == "characters"  # the [Mia] line of the character text
    assert str(err) == (
        "characters line 1: character [Mia] appears alone in 1 frame line(s) (line 1), but num_ids=3 id "
        "frames are needed: the first 3 frames that show only [Mia] are rendered together as its "
        "reference. Add 2 more frame line(s) with [Mia] and no other tag, or lower num_ids to 1 "
        "(upstream issue #168)"
    )
    out = tmp_path / "out"
    assert not (out / "tracks").exists() and not (out / "plan.json").exists()  # refused before rendering anything
    # num_ids=1 is accepted, still without loading anything
    gen = StoryDiffusionGenerator(preset="tiny", num_ids=1)
    gen.check_plan(pipe.plan(request))
    assert gen.last_state is None


# -- unnamed mode (predict.py, the hosted API) -------------------------------------------------


def test_unnamed_first_num_ids_frames() -> None:
    p = plan(HOSTED_SCRIPT, HOSTED_CHARACTER)
    assert ids(p, num_ids=2) == {C: [0, 1]}
    assert ids(p, num_ids=1) == {C: [0]}


def test_hosted_default_num_ids_hits_nc_on_line_3() -> None:
    # num_ids=3 (the default, the hosted API's) makes line 3, an [NC] frame, an id frame: the gradio apps refuse it
    err = refused(plan(HOSTED_SCRIPT, HOSTED_CHARACTER))
    assert err.line == 3 and err.field == "script"
    assert str(err) == (
        "script line 3: [NC] on one of the first num_ids=3 frames; these are the character's id (reference) "
        "frames and must show the character: move the [NC] frame later, or lower num_ids"
    )


def test_hosted_default_with_predict_py_behaviour() -> None:
    # predict.py has no [NC] check: the [NC] frame is the third id frame, without the description
    p = plan(HOSTED_SCRIPT, HOSTED_CHARACTER, max_frames=10)
    assert ids(p, allow_nc_id_frames=True) == {C: [0, 1, 2]}
    assert ids(p, num_ids=4, allow_nc_id_frames=True) == {C: [0, 1, 2, 3]}
    assert p.scenes[2].characters == ()
    assert "dropped_lines" not in p.metadata


def test_unnamed_num_ids_larger_than_frames() -> None:
    err = refused(plan("walks\nruns", "a dog"), num_ids=3)
    assert err.line is None and err.field == "script"
    assert str(err) == (
        "script: num_ids=3 but the script has only 2 frame line(s); the first num_ids frames are the "
        "character's id (reference) frames: add frame lines or lower num_ids to at most 2"
    )
    # allow_nc_id_frames does not lift it
    assert "only 2 frame line(s)" in str(refused(plan("walks\nruns", "a dog"), num_ids=3, allow_nc_id_frames=True))


def test_nc_in_unnamed_id_frames() -> None:
    err = refused(plan("walks\n[NC] a road\nruns", "a man"), num_ids=2)
    assert err.line == 2 and "move the [NC] frame later, or lower num_ids" in str(err)
    assert ids(plan("walks\n[NC] a road\nruns", "a man"), num_ids=2, allow_nc_id_frames=True) == {C: [0, 1]}


def test_unnamed_blank_lines_count_as_frames_when_kept() -> None:
    # skip_blank_lines=False (the hosted API): a blank line is a frame, and so can be an id frame
    p = plan("walks\n\nruns", "a man", skip_blank_lines=False)
    assert ids(p, num_ids=2) == {C: [0, 1]}


# -- named mode (lowvram.py) ---------------------------------------------------------------------


def test_named_two_characters_upstream_example() -> None:
    p = plan(TWO_SCRIPT, TWO_BOX)
    assert ids(p, num_ids=2) == {"Bob": [0, 1], "Alice": [2, 6]}
    assert ids(p, num_ids=1) == {"Bob": [0], "Alice": [2]}


def test_named_three_characters_and_list_form() -> None:
    box = "[Ann] a girl in red #hero\n\n[Ben] a boy in blue\n[Cat] a black cat"
    script = "[Ann] waves\n[Ben] jumps\n[Cat] sleeps\n[Ben] and [Ann] and [Cat] play\n[Cat] eats\n[Ann] reads\n[Ben] sings"
    assert ids(plan(script, box), num_ids=2) == {"Ann": [0, 5], "Ben": [1, 6], "Cat": [2, 4]}
    objs = [Character("Ann", "a girl in red"), Character("Ben", "a boy in blue"), Character("Cat", "a black cat")]
    assert ids(plan(script, objs), num_ids=2) == {"Ann": [0, 5], "Ben": [1, 6], "Cat": [2, 4]}


def test_id_frames_skip_frames_with_other_characters() -> None:
    box = "[Bob] a man\n[Eve] a woman"
    script = "[Bob] and [Eve] talk\n[Eve] sits\n[Bob] walks\n[NC] a road\n[Bob] runs\n[Eve] runs\n[Bob] eats"
    p = plan(script, box)
    two = ids(p, num_ids=2)
    assert two == {"Eve": [1, 5], "Bob": [2, 4]}
    assert list(two) == ["Eve", "Bob"]  # rendered in plan order of the first id frame
    assert ids(p, num_ids=1) == {"Eve": [1], "Bob": [2]}


def test_nc_rows_check_named() -> None:
    p = plan("[NC] a road\n[Bob] walks\n[Bob] runs", "[Bob] a man")
    assert ids(p, num_ids=2) == {"Bob": [1, 2]}
    err = refused(p, num_ids=2, nc_rows_check=True)
    assert err.line == 1 and err.field == "script" and "move the [NC] frame later" in str(err)
    # an untagged frame is not [NC]: nc_rows_check lets it be
    q = plan("a road\n[Bob] walks\n[Bob] runs", "[Bob] a man")
    assert ids(q, num_ids=2, nc_rows_check=True) == {"Bob": [1, 2]}


def test_character_with_too_few_id_frames() -> None:
    err = refused(plan(TWO_SCRIPT, TWO_BOX))  # num_ids=3; Alice is alone on lines 3 and 7
    assert err.line == 2 and err.field == "characters"
    msg = str(err)
    assert "[Alice] appears alone in 2 frame line(s) (lines 3, 7)" in msg
    assert "Add 1 more frame line(s) with [Alice] and no other tag" in msg
    assert "lower num_ids to 2" in msg


def test_character_never_alone() -> None:
    err = refused(plan("[Bob] walks\n[Bob] and [Eve] talk", "[Bob] a man\n[Eve] a woman"), num_ids=1)
    assert err.line == 2 and err.field == "characters"
    assert "[Eve] appears alone in 0 frame line(s)" in str(err)
    assert "remove [Eve] from the characters" in str(err)


def test_named_plan_without_line_numbers_names_scenes() -> None:
    p = plan("[Bob] walks\n[NC] a road\n[Bob] runs", "[Bob] a man")
    for s in p.scenes:
        del s.metadata["line"]
    assert "[Bob] appears alone in 2 frame line(s) (scenes 0, 2), but num_ids=3" in str(refused(p))


def test_script_without_characters_has_no_id_frames() -> None:
    assert ids(plan("a lake\na hill", "")) == {}


# -- plans from other planners -----------------------------------------------------------------


def test_plain_plan_is_derived_as_upstream() -> None:
    scenes = [
        Scene(0, "a man", characters=("Bob",)),
        Scene(1, "a girl", characters=("Ann",)),
        Scene(2, "both", characters=("Bob", "Ann")),
        Scene(3, "a man again", characters=("Bob",)),
    ]
    p = StoryPlan(scenes=scenes, characters=[Character("Ann", "a girl"), Character("Bob", "a man")])
    assert ids(p, num_ids=1) == {"Ann": [1], "Bob": [0]}
    with pytest.raises(ScriptError, match=r"\[Ann\] appears alone in 1 scene\(s\) but num_ids=2"):
        StoryDiffusionGenerator(num_ids=2).check_plan(p)
    # a declared character that no scene shows needs no id frames in a plain plan
    q = StoryPlan(scenes=scenes[:1], characters=[Character("Ann", "a girl"), Character("Bob", "a man")])
    assert ids(q, num_ids=1) == {"Bob": [0]}


def test_plan_num_ids_and_marks() -> None:
    scenes = [Scene(i, f"frame {i}", characters=("Bob",)) for i in range(4)]
    p = StoryPlan(scenes=scenes, metadata={"num_ids": 2})
    assert ids(p) == {"Bob": [0, 1]}  # the plan's num_ids when the option is None
    assert ids(p, num_ids=3) == {"Bob": [0, 1, 2]}  # the option wins
    marked = StoryPlan(
        scenes=[
            Scene(0, "a", characters=("Bob",)),
            Scene(1, "b", characters=("Bob",), metadata={"id_frame": True, "id_character": "Bob"}),
            Scene(2, "c", characters=(), metadata={"id_frame": True, "id_character": "Bob"}),
        ]
    )
    assert ids(marked, num_ids=1) == {"Bob": [1, 2]}  # marks are kept as they are
    assert choose_id_frames(marked) == StoryDiffusionGenerator().id_frames(marked)


# -- the generator renders what check_plan chose -----------------------------------------------


def test_generate_renders_the_chosen_id_frames(tiny_pipe: Any) -> None:
    p = plan("walks\n[NC] a road\nruns\nsleeps", "a man")
    p.seed = 1
    gen = StoryDiffusionGenerator(pipeline=tiny_pipe, num_ids=2, allow_nc_id_frames=True, steps=2)
    assets = list(gen.generate(p.scenes, storysdk.RenderContext(plan=p, seed=1)))
    assert sorted(a.scene_index for a in assets) == [0, 1, 2, 3]
    meta = {a.scene_index: a.metadata for a in assets}
    assert [meta[i]["id_frame"] for i in range(4)] == [True, True, False, False]
    assert meta[1]["characters"] == [C]  # the [NC] id frame writes the character's bank
    with pytest.raises(ScriptError, match="line 2"):
        list(StoryDiffusionGenerator(pipeline=tiny_pipe, num_ids=2).generate(p.scenes, storysdk.RenderContext(plan=p)))


# -- story files ------------------------------------------------------------------------------


def test_story_file_with_the_old_seed_option_names_noise_seed(tmp_path: Path) -> None:
    path = tmp_path / "story.toml"
    path.write_text(
        '[story]\nscript = "[NC] a lake"\n\n[planner]\nname = "script"\n\n'
        '[[generators]]\nname = "storydiffusion"\nseed = 5\n',
        encoding="utf-8",
    )
    story_file = storysdk.load_story_file(path)
    with pytest.raises(ConfigError) as info:
        story_file.pipeline()
    assert "generator 'storydiffusion': option 'seed' was renamed to 'noise_seed'" in str(info.value)
    assert "write noise_seed = ... instead" in str(info.value)


def test_story_file_id_frame_options_on_the_generator(tmp_path: Path, no_model: None) -> None:
    path = tmp_path / "story.toml"
    path.write_text(
        '[story]\nwidth = 64\nheight = 64\ncharacters = "a man"\nscript = """\nwalks\n[NC] a road\nruns\n"""\n\n'
        '[planner]\nname = "script"\n\n'
        '[[generators]]\nname = "storydiffusion"\npreset = "tiny"\nnum_ids = 2\nallow_nc_id_frames = true\n',
        encoding="utf-8",
    )
    story_file = storysdk.load_story_file(path)
    pipe = story_file.pipeline()
    p = pipe.plan(story_file.request)
    pipe.check_plan(p)
    assert {n: [s.index for s in g] for n, g in pipe.generators[0].id_frames(p).items()} == {C: [0, 1]}
    moved = tmp_path / "moved.toml"
    moved.write_text(path.read_text(encoding="utf-8").replace('name = "script"', 'name = "script"\nnum_ids = 2'))
    with pytest.raises(ConfigError, match="planner 'script': option 'num_ids' is no longer this component's"):
        storysdk.load_story_file(moved).pipeline()
