"""Tests of the built-in ``script`` planner (StoryDiffusion frame lines).

Expected prompts and captions are worked out by hand from the rules in
``plugins/storysdk-storydiffusion/docs/storydiffusion.md`` §2 and ``plugins/storysdk-storydiffusion/docs/storydiffusion-api.md`` and written out literally:

- unnamed mode (predict.py): prompt = (description + "," + line cut at its last '#').strip(),
  [NC] lines: the line without [NC], cut at the last '#', stripped;
- named mode (lowvram.py): each [Name] -> description-as-written + " ", then stripped;
- caption: text after the last '#', else the whole line, [NC] removed, stripped.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from storysdk.builtins.script import ScriptPlanner
from storysdk.errors import ConfigError, ScriptError
from storysdk.model import Character, StoryPlan, StoryRequest

# plugins/storysdk-storydiffusion/docs/storydiffusion-api.md, the hosted API's default request
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
HOSTED_PROMPTS = [
    "a man, wearing black suit,at home, read new paper",
    "a man, wearing black suit,on the road, near the forest",
    "The car on the road, near the forest",
    "A tiger appeared in the forest, at night",
    "a man, wearing black suit,very frightened, open mouth, in the forest, at night",
    "a man, wearing black suit,running very fast, in the forest, at night",
    "A house in the forest, at night",
    "a man, wearing black suit,in the house filled with treasure, laughing, at night",
]
HOSTED_CAPTIONS = [
    "at home, The newspaper says there is a treasure house in the forest.",
    "on the road, near the forest",
    "He drives to the forest in search of treasure.",
    "A tiger appeared in the forest, at night",
    "very frightened, open mouth, in the forest, at night",
    "running very fast, in the forest, at night",
    "Suddenly, he discovers the treasure house!",
    "He is overjoyed inside the house.",
]
C = "character"
HOSTED_CHARACTERS = [(C,), (C,), (), (), (C,), (C,), (), (C,)]

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
BOB = "A man, wearing a black suit"
ALICE = "a woman, wearing a white shirt"


def plan(script: str | None, characters: object = "", **options: object) -> StoryPlan:
    request = StoryRequest(script=script, characters=characters)  # type: ignore[arg-type]
    return ScriptPlanner(**options).plan(request)  # type: ignore[arg-type]


def script_error(script: str | None, characters: object = "", **options: object) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        plan(script, characters, **options)
    return info.value


# -- the hosted (unnamed) mode -------------------------------------------------------


def test_hosted_example_eight_scenes() -> None:
    p = plan(HOSTED_SCRIPT, HOSTED_CHARACTER, num_ids=2)
    assert [s.index for s in p.scenes] == list(range(8))
    assert [s.prompt for s in p.scenes] == HOSTED_PROMPTS
    assert [s.caption for s in p.scenes] == HOSTED_CAPTIONS
    assert [s.characters for s in p.scenes] == HOSTED_CHARACTERS
    assert [s.metadata["id_frame"] for s in p.scenes] == [True, True] + [False] * 6
    assert p.scenes[0].metadata["id_character"] == C
    assert "id_character" not in p.scenes[2].metadata
    assert [s.metadata["raw"] for s in p.scenes] == HOSTED_SCRIPT.split("\n")
    assert [s.metadata["line"] for s in p.scenes] == list(range(1, 9))
    assert p.characters == [Character(C, HOSTED_CHARACTER)]
    assert p.metadata == {"mode": "unnamed", "num_ids": 2, "id_frames": {C: [0, 1]}}
    assert all(s.duration is None for s in p.scenes)


def test_hosted_default_num_ids_hits_nc_on_line_3() -> None:
    # num_ids=3 (hosted default) makes line 3, an [NC] frame, an id frame: the gradio apps refuse it
    err = script_error(HOSTED_SCRIPT, HOSTED_CHARACTER)
    assert err.line == 3 and err.field == "script"
    assert "move the [NC] frame later" in str(err) and "lower num_ids" in str(err)


def test_hosted_default_with_predict_py_behaviour() -> None:
    # predict.py has no [NC] check: the [NC] frame is the third id frame, without the description
    p = plan(HOSTED_SCRIPT, HOSTED_CHARACTER, allow_nc_id_frames=True, max_frames=10)
    assert [s.prompt for s in p.scenes] == HOSTED_PROMPTS
    assert [s.metadata["id_frame"] for s in p.scenes] == [True, True, True] + [False] * 5
    assert p.scenes[2].characters == ()
    assert p.scenes[2].metadata["id_character"] == C
    assert p.metadata["id_frames"] == {C: [0, 1, 2]}
    assert "dropped_lines" not in p.metadata


def test_unnamed_num_ids_larger_than_frames() -> None:
    err = script_error("walks\nruns", "a dog", num_ids=3)
    assert err.line is None and err.field == "script"
    assert "only 2 frame line(s)" in str(err) and "lower num_ids to at most 2" in str(err)


def test_unnamed_default_name_and_hash_in_description() -> None:
    p = plan("walks #The dog walks.\n[NC] an empty street", "a brown dog #the hero", num_ids=1,
             default_character_name="Rex")
    assert [s.prompt for s in p.scenes] == ["a brown dog ,walks", "an empty street"]
    assert [s.caption for s in p.scenes] == ["The dog walks.", "an empty street"]
    assert [s.characters for s in p.scenes] == [("Rex",), ()]
    assert p.characters == [Character("Rex", "a brown dog")]


def test_unnamed_unknown_tag_suggests_nc() -> None:
    err = script_error("walks\n[nc] an empty street", "a dog", num_ids=1)
    assert err.line == 2
    assert "unknown tag [nc] (did you mean [NC]?)" in str(err)
    assert "'[Name] description' lines in characters" in str(err)


# -- named mode ----------------------------------------------------------------------


def test_named_two_characters_upstream_example() -> None:
    p = plan(TWO_SCRIPT, TWO_BOX, num_ids=2)
    assert [s.prompt for s in p.scenes] == [
        f"{BOB}  at home, read new paper",
        f"{BOB}  on the road, near the forest",
        f"{ALICE}  is make a call at home",
        "A tiger appeared in the forest, at night",
        "The car on the road, near the forest",
        f"{BOB}  very frightened, open mouth, in the forest, at night",
        f"{ALICE}  very frightened, open mouth, in the forest, at night",
        f"{BOB}   and {ALICE}  running very fast, in the forest, at night",
        "A house in the forest, at night",
        f"{BOB}   and {ALICE}   in the house filled with  treasure, laughing, at night",
    ]
    assert [s.caption for s in p.scenes] == [
        "at home, The newspaper says there is a treasure house in the forest.",
        "[Bob] on the road, near the forest",
        "[Bob] invited [Alice] to join him on an adventure.",
        "A tiger appeared in the forest, at night",
        "They drives to the forest in search of treasure.",
        "[Bob] very frightened, open mouth, in the forest, at night",
        "[Alice] very frightened, open mouth, in the forest, at night",
        "[Bob]  and [Alice] running very fast, in the forest, at night",
        "Suddenly, They discovers the treasure house!",
        "He is overjoyed inside the house.",
    ]
    B, A = ("Bob",), ("Alice",)
    # tags after the caption '#' (line 3) do not count
    assert [s.characters for s in p.scenes] == [B, B, A, (), (), B, A, ("Bob", "Alice"), (), ("Bob", "Alice")]
    assert p.characters == [Character("Bob", BOB), Character("Alice", ALICE)]
    ids = {s.index: s.metadata.get("id_character") for s in p.scenes if s.metadata["id_frame"]}
    assert ids == {0: "Bob", 1: "Bob", 2: "Alice", 6: "Alice"}
    assert p.metadata["id_frames"] == {"Bob": [0, 1], "Alice": [2, 6]}
    assert p.metadata["mode"] == "named"


def test_named_faithful_whitespace() -> None:
    # strip_whitespace=False: lowvram.py's strings, the description as written (leading space kept)
    p = plan(TWO_SCRIPT, TWO_BOX, num_ids=2, strip_whitespace=False)
    assert p.scenes[0].prompt == " A man, wearing a black suit  at home, read new paper "
    assert p.scenes[2].prompt == "a woman, wearing a white shirt  is make a call at home "
    assert p.scenes[2].caption == " [Bob] invited [Alice] to join him on an adventure."
    assert p.scenes[3].prompt == "A tiger appeared in the forest, at night "
    assert p.scenes[4].prompt == " The car on the road, near the forest "
    assert p.characters[0].description == BOB  # the Character itself is stripped


def test_strip_tags_in_captions() -> None:
    p = plan(TWO_SCRIPT, TWO_BOX, num_ids=2, strip_tags_in_captions=True)
    assert p.scenes[1].caption == "Bob on the road, near the forest"
    assert p.scenes[2].caption == "Bob invited Alice to join him on an adventure."
    assert p.scenes[7].caption == "Bob  and Alice running very fast, in the forest, at night"
    assert p.scenes[1].prompt == f"{BOB}  on the road, near the forest"


def test_named_three_characters_and_list_form() -> None:
    box = "[Ann] a girl in red #hero\n\n[Ben] a boy in blue\n[Cat] a black cat"
    script = (
        "[Ann] waves\n[Ben] jumps\n[Cat] sleeps\n[Ben] and [Ann] and [Cat] play\n"
        "[Cat] eats\n[Ann] reads\n[Ben] sings"
    )
    p = plan(script, box, num_ids=2)
    # descriptions are substituted as written: " a girl in red " (cut at '#'), " a boy in blue",
    # " a black cat", each followed by " "; the prompt is then stripped at both ends
    assert [s.prompt for s in p.scenes] == [
        "a girl in red   waves",
        "a boy in blue  jumps",
        "a black cat  sleeps",
        "a boy in blue  and  a girl in red   and  a black cat  play",
        "a black cat  eats",
        "a girl in red   reads",
        "a boy in blue  sings",
    ]
    assert p.scenes[3].characters == ("Ben", "Ann", "Cat")  # order of first appearance
    assert p.metadata["id_frames"] == {"Ann": [0, 5], "Ben": [1, 6], "Cat": [2, 4]}
    assert [c.name for c in p.characters] == ["Ann", "Ben", "Cat"]
    assert p.characters[0].description == "a girl in red"
    # the same characters as objects give the same plan
    objs = [
        Character("Ann", " a girl in red "),
        Character("[Ben]", " a boy in blue"),
        Character("Cat", " a black cat"),
    ]
    q = plan(script, objs, num_ids=2)
    assert [s.prompt for s in q.scenes] == [s.prompt for s in p.scenes]
    assert [c.name for c in q.characters] == ["Ann", "Ben", "Cat"]
    # the upstream app allows 2 characters
    err = script_error(script, box, num_ids=2, max_characters=2)
    assert err.line == 4 and err.field == "characters"
    assert "at most 2" in str(err) and "GPU memory" in str(err)
    assert "remove characters or raise max_characters" in str(err)


def test_id_frames_skip_frames_with_other_characters() -> None:
    box = "[Bob] a man\n[Eve] a woman"
    script = "[Bob] and [Eve] talk\n[Eve] sits\n[Bob] walks\n[NC] a road\n[Bob] runs\n[Eve] runs\n[Bob] eats"
    p = plan(script, box, num_ids=2)
    assert p.metadata["id_frames"] == {"Bob": [2, 4], "Eve": [1, 5]}
    assert [s.metadata["id_frame"] for s in p.scenes] == [False, True, True, False, True, True, False]
    assert p.scenes[0].metadata == {"id_frame": False, "raw": "[Bob] and [Eve] talk", "line": 1}
    p1 = plan(script, box, num_ids=1)
    assert p1.metadata["id_frames"] == {"Bob": [2], "Eve": [1]}


def test_nc_anywhere_and_caption_at_last_hash() -> None:
    script = "[Bob] walks # a # b\nthe road [NC] at dusk #Night falls. [NC]\n[Bob] runs"
    p = plan(script, "[Bob] a man", num_ids=1)
    assert p.scenes[0].prompt == "a man  walks # a"
    assert p.scenes[0].caption == "b"
    assert p.scenes[1].prompt == "the road  at dusk"
    assert p.scenes[1].caption == "Night falls."
    assert p.scenes[1].characters == ()
    # unnamed mode: the description is joined first, then cut at the line's last '#'
    q = plan("walks # a # b", "a man", num_ids=1)
    assert (q.scenes[0].prompt, q.scenes[0].caption) == ("a man,walks # a", "b")


def test_untagged_line_in_named_mode_has_no_character() -> None:
    p = plan("[Bob] walks\na quiet lake", "[Bob] a man", num_ids=1)
    assert p.scenes[1].characters == () and p.scenes[1].prompt == "a quiet lake"
    # and no characters at all is a plain text-to-image script
    q = plan("a lake\na hill", "", num_ids=3)
    assert q.characters == [] and q.metadata["id_frames"] == {}
    assert [s.prompt for s in q.scenes] == ["a lake", "a hill"]


def test_blank_lines_skipped_or_faithful() -> None:
    p = plan("[Bob] walks\n\n   \n[Bob] runs\n", "[Bob] a man", num_ids=1)
    assert [s.metadata["line"] for s in p.scenes] == [1, 4]
    assert [s.index for s in p.scenes] == [0, 1]
    err = script_error("[Bob] walks\n\n[Bob] runs", "[Bob] a man", num_ids=1, skip_blank_lines=False)
    assert err.line == 2 and "write what the frame shows" in str(err)
    # unnamed mode renders a blank line as the description alone (predict.py)
    q = plan("walks\n\nruns", "a man", num_ids=1, skip_blank_lines=False)
    assert [s.prompt for s in q.scenes] == ["a man,walks", "a man,", "a man,runs"]
    assert q.scenes[1].caption == ""


def test_max_frames_keeps_the_first_frames() -> None:
    p = plan(HOSTED_SCRIPT, HOSTED_CHARACTER, num_ids=2, max_frames=5)
    assert [s.prompt for s in p.scenes] == HOSTED_PROMPTS[:5]
    assert p.metadata["dropped_lines"] == 3
    # dropped lines are not parsed
    q = plan("walks\nruns\n[unknown] tag", "a man", num_ids=1, max_frames=2)
    assert len(q.scenes) == 2


def test_nc_rows_check_named() -> None:
    script = "[NC] a road\n[Bob] walks\n[Bob] runs"
    assert len(plan(script, "[Bob] a man", num_ids=2).scenes) == 3
    err = script_error(script, "[Bob] a man", num_ids=2, nc_rows_check=True)
    assert err.line == 1 and "move the [NC] frame later" in str(err)


def test_plan_fields_duration_and_json_round_trip() -> None:
    request = StoryRequest(
        script=TWO_SCRIPT,
        characters=TWO_BOX,
        style="Comic book",
        negative_prompt="bad hands",
        width=512,
        height=768,
        seed=7,
        duration=25.0,
        metadata={"title": "The treasure"},
    )
    p = ScriptPlanner(num_ids=2).plan(request)
    assert (p.style, p.negative_prompt, p.width, p.height, p.seed) == ("Comic book", "bad hands", 512, 768, 7)
    assert p.planner == "script" and p.title == "The treasure"
    assert [s.duration for s in p.scenes] == [2.5] * 10
    again = StoryPlan.from_json(p.to_json())
    assert again == p
    assert again.scenes[7].characters == ("Bob", "Alice")
    assert again.metadata["id_frames"] == {"Bob": [0, 1], "Alice": [2, 6]}


def test_component_attributes() -> None:
    assert ScriptPlanner.name == "script"
    assert ScriptPlanner.description
    assert ScriptPlanner.interleaved is False and ScriptPlanner.needs_gpu is False


def test_modules_do_not_import_torch() -> None:
    code = (
        "import sys, storysdk.styles, storysdk.builtins.script; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- one test per error ----------------------------------------------------------------


def test_error_empty_script() -> None:
    for script in (None, "", "  \n\n"):
        err = script_error(script, "a man")
        assert err.line is None and err.field == "script"
        assert "write one frame per line" in str(err)


def test_error_prompt_without_script() -> None:
    with pytest.raises(ScriptError) as info:
        ScriptPlanner().plan(StoryRequest(prompt="a story about a dog"))
    msg = str(info.value)
    assert info.value.line is None
    assert "does not read the free-text 'prompt'" in msg
    assert "planner that writes scenes from free text" in msg


def test_error_script_not_text() -> None:
    err = script_error(["walks"], "a man")  # type: ignore[arg-type]
    assert err.line is None and "join the frame lines with newlines" in str(err)


def test_error_duplicate_character() -> None:
    err = script_error("[Bob] walks", "[Bob] a man\n[Eve] a woman\n[Bob] a boy")
    assert err.line == 3 and err.field == "characters"
    assert "first defined on line 1" in str(err) and "unique name" in str(err)
    err = script_error("[Bob] walks", [Character("Bob", "a man"), Character("Bob", "a boy")])
    assert err.line == 2 and "unique name" in str(err)


def test_error_character_line_without_tag() -> None:
    err = script_error("[Bob] walks", "[Bob] a man\na woman in red")
    assert err.line == 2 and err.field == "characters"
    assert "write every character as '[Name] description'" in str(err)


def test_error_empty_character_name() -> None:
    err = script_error("walks", "[Bob] a man\n[] a woman")
    assert err.line == 2 and err.field == "characters"
    assert "write the character's name between the brackets" in str(err)
    err = script_error("walks", [Character("", "a man")])
    assert err.line == 1 and "write the character's name" in str(err)


def test_error_empty_description() -> None:
    err = script_error("[Bob] walks", "[Bob]   #just a note")
    assert err.line == 1 and err.field == "characters"
    assert "write what it looks like after the tag" in str(err)
    err = script_error("[Bob] walks", [Character("Bob", "  ")])
    assert err.line == 1 and "set Character.description" in str(err)


def test_error_text_before_tag_and_brackets_in_description() -> None:
    err = script_error("[Bob] walks", "hero [Bob] a man")
    assert err.line == 1 and "start the line with the tag" in str(err)
    err = script_error("[Bob] walks", "[Bob] a man [Eve] a woman")
    assert err.line == 1 and "put each character on its own line" in str(err)


def test_error_nc_as_character_name() -> None:
    err = script_error("walks", "[NC] a man")
    assert err.line == 1 and "choose another name" in str(err)


def test_error_unknown_tag_suggests_close_names() -> None:
    err = script_error("[Bob] walks\n[Alcie] sits", "[Bob] a man\n[Alice] a woman", num_ids=1)
    assert err.line == 2 and err.field == "script"
    assert "unknown tag [Alcie] (did you mean [Alice]?)" in str(err)
    assert "tags must be character names ([Bob], [Alice]) or [NC]" in str(err)
    err = script_error("[bob] walks", "[Bob] a man", num_ids=1)
    assert err.line == 1 and "did you mean [Bob]?" in str(err)
    err = script_error("[Bob] walks", "", num_ids=1)
    assert err.line == 1 and "no characters are defined" in str(err)


def test_error_empty_tag_in_frame() -> None:
    err = script_error("[Bob] walks\n[] sits", "[Bob] a man", num_ids=1)
    assert err.line == 2 and "write a character name between the brackets" in str(err)


def test_error_nc_with_name_tag() -> None:
    err = script_error("[Bob] walks\n[NC] [Bob] sits", "[Bob] a man", num_ids=1)
    assert err.line == 2
    assert "remove [NC] to show the character" in str(err)


def test_error_empty_prompt_after_nc_and_caption() -> None:
    err = script_error("[Bob] walks\n[NC] #The end.", "[Bob] a man", num_ids=1)
    assert err.line == 2 and "write what the frame shows before the '#'" in str(err)
    err = script_error("walks\n[NC]", "a man", num_ids=1)
    assert err.line == 2 and "empty prompt" in str(err)
    err = script_error("[Bob] walks\n#only a caption", "[Bob] a man", num_ids=1)
    assert err.line == 2


def test_error_unbalanced_brackets_in_frame() -> None:
    err = script_error("[Bob] walks\n[Bob at home", "[Bob] a man", num_ids=1)
    assert err.line == 2 and "close it with ']'" in str(err)
    err = script_error("[Bob] walks]", "[Bob] a man", num_ids=1)
    assert err.line == 1 and "remove the stray ']'" in str(err)
    err = script_error("[Bob] [[Bob]] walks", "[Bob] a man", num_ids=1)
    assert err.line == 1 and "remove the extra '['" in str(err)


def test_error_unbalanced_bracket_in_character_line() -> None:
    err = script_error("[Bob] walks", "[Bob] a man\n[Eve a woman")
    assert err.line == 2 and err.field == "characters" and "close it with ']'" in str(err)


def test_error_num_ids_below_one() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ScriptError) as info:
            ScriptPlanner(num_ids=bad)  # type: ignore[arg-type]
        assert info.value.line is None and info.value.field == "num_ids"
        assert "try 1-4" in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_error_bad_limits_and_default_name() -> None:
    with pytest.raises(ScriptError, match="max_frames must be None"):
        ScriptPlanner(max_frames=0)
    with pytest.raises(ScriptError, match="max_characters must be None"):
        ScriptPlanner(max_characters=0)
    with pytest.raises(ScriptError, match="choose another name"):
        ScriptPlanner(default_character_name="NC")
    with pytest.raises(ScriptError, match="without spaces at its ends"):
        ScriptPlanner(default_character_name=" Bob")


def test_error_character_with_too_few_id_frames() -> None:
    err = script_error(TWO_SCRIPT, TWO_BOX)  # num_ids=3; Alice is alone on lines 3 and 7
    assert err.line == 2 and err.field == "characters"
    msg = str(err)
    assert "[Alice] appears alone in 2 frame line(s) (lines 3, 7)" in msg
    assert "Add 1 more frame line(s) with [Alice] and no other tag" in msg
    assert "lower num_ids to 2" in msg


def test_error_character_never_alone() -> None:
    err = script_error("[Bob] walks\n[Bob] and [Eve] talk", "[Bob] a man\n[Eve] a woman", num_ids=1)
    assert err.line == 2 and err.field == "characters"
    assert "[Eve] appears alone in 0 frame line(s)" in str(err)
    assert "remove [Eve] from the characters" in str(err)


def test_error_nc_in_unnamed_id_frames() -> None:
    err = script_error("walks\n[NC] a road\nruns", "a man", num_ids=2)
    assert err.line == 2 and "move the [NC] frame later, or lower num_ids" in str(err)
