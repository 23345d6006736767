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
from storysdk.options import option_names
from storysdk.registry import Registry

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
    p = plan(HOSTED_SCRIPT, HOSTED_CHARACTER)
    assert [s.index for s in p.scenes] == list(range(8))
    assert [s.prompt for s in p.scenes] == HOSTED_PROMPTS
    assert [s.caption for s in p.scenes] == HOSTED_CAPTIONS
    assert [s.characters for s in p.scenes] == HOSTED_CHARACTERS
    assert [s.metadata["raw"] for s in p.scenes] == HOSTED_SCRIPT.split("\n")
    assert [s.metadata["line"] for s in p.scenes] == list(range(1, 9))
    assert [s.metadata["nc"] for s in p.scenes] == [False, False, True, True, False, False, True, False]
    assert all(set(s.metadata) == {"raw", "line", "nc"} for s in p.scenes)  # no id-frame marks
    assert p.characters == [Character(C, HOSTED_CHARACTER)]
    assert p.metadata == {"character_mode": "unnamed", "character_lines": {C: 1}}
    assert all(s.duration is None for s in p.scenes)


def test_unnamed_default_name_and_hash_in_description() -> None:
    p = plan("walks #The dog walks.\n[NC] an empty street", "a brown dog #the hero", default_character_name="Rex")
    assert [s.prompt for s in p.scenes] == ["a brown dog ,walks", "an empty street"]
    assert [s.caption for s in p.scenes] == ["The dog walks.", "an empty street"]
    assert [s.characters for s in p.scenes] == [("Rex",), ()]
    assert p.characters == [Character("Rex", "a brown dog")]


def test_unnamed_unknown_tag_suggests_nc() -> None:
    err = script_error("walks\n[nc] an empty street", "a dog")
    assert err.line == 2
    assert "unknown tag [nc] (did you mean [NC]?)" in str(err)
    assert "'[Name] description' lines in characters" in str(err)


# -- named mode ----------------------------------------------------------------------


def test_named_two_characters_upstream_example() -> None:
    p = plan(TWO_SCRIPT, TWO_BOX)
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
    assert p.metadata == {"character_mode": "named", "character_lines": {"Bob": 1, "Alice": 2}}
    assert [s.metadata["nc"] for s in p.scenes] == [False] * 3 + [True, True] + [False] * 3 + [True, False]


def test_named_faithful_whitespace() -> None:
    # strip_whitespace=False: lowvram.py's strings, the description as written (leading space kept)
    p = plan(TWO_SCRIPT, TWO_BOX, strip_whitespace=False)
    assert p.scenes[0].prompt == " A man, wearing a black suit  at home, read new paper "
    assert p.scenes[2].prompt == "a woman, wearing a white shirt  is make a call at home "
    assert p.scenes[2].caption == " [Bob] invited [Alice] to join him on an adventure."
    assert p.scenes[3].prompt == "A tiger appeared in the forest, at night "
    assert p.scenes[4].prompt == " The car on the road, near the forest "
    assert p.characters[0].description == BOB  # the Character itself is stripped


def test_strip_tags_in_captions() -> None:
    p = plan(TWO_SCRIPT, TWO_BOX, strip_tags_in_captions=True)
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
    p = plan(script, box)
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
    assert p.metadata["character_lines"] == {"Ann": 1, "Ben": 3, "Cat": 4}  # the blank line 2 counts
    assert [c.name for c in p.characters] == ["Ann", "Ben", "Cat"]
    assert p.characters[0].description == "a girl in red"
    # the same characters as objects give the same plan
    objs = [
        Character("Ann", " a girl in red "),
        Character("[Ben]", " a boy in blue"),
        Character("Cat", " a black cat"),
    ]
    q = plan(script, objs)
    assert [s.prompt for s in q.scenes] == [s.prompt for s in p.scenes]
    assert [c.name for c in q.characters] == ["Ann", "Ben", "Cat"]
    assert q.metadata["character_lines"] == {"Ann": 1, "Ben": 2, "Cat": 3}  # list positions
    # the upstream app allows 2 characters
    err = script_error(script, box, max_characters=2)
    assert err.line == 4 and err.field == "characters"
    assert "at most 2" in str(err) and "GPU memory" in str(err)
    assert "remove characters or raise max_characters" in str(err)


def test_nc_anywhere_and_caption_at_last_hash() -> None:
    script = "[Bob] walks # a # b\nthe road [NC] at dusk #Night falls. [NC]\n[Bob] runs"
    p = plan(script, "[Bob] a man")
    assert p.scenes[0].prompt == "a man  walks # a"
    assert p.scenes[0].caption == "b"
    assert p.scenes[1].prompt == "the road  at dusk"
    assert p.scenes[1].caption == "Night falls."
    assert p.scenes[1].characters == ()
    # unnamed mode: the description is joined first, then cut at the line's last '#'
    q = plan("walks # a # b", "a man")
    assert (q.scenes[0].prompt, q.scenes[0].caption) == ("a man,walks # a", "b")


def test_untagged_line_in_named_mode_has_no_character() -> None:
    p = plan("[Bob] walks\na quiet lake", "[Bob] a man")
    assert p.scenes[1].characters == () and p.scenes[1].prompt == "a quiet lake"
    # and no characters at all is a plain text-to-image script
    q = plan("a lake\na hill", "")
    assert q.characters == [] and q.metadata == {"character_mode": "named", "character_lines": {}}
    assert [s.prompt for s in q.scenes] == ["a lake", "a hill"]


def test_blank_lines_skipped_or_faithful() -> None:
    p = plan("[Bob] walks\n\n   \n[Bob] runs\n", "[Bob] a man")
    assert [s.metadata["line"] for s in p.scenes] == [1, 4]
    assert [s.index for s in p.scenes] == [0, 1]
    err = script_error("[Bob] walks\n\n[Bob] runs", "[Bob] a man", skip_blank_lines=False)
    assert err.line == 2 and "write what the frame shows" in str(err)
    # unnamed mode renders a blank line as the description alone (predict.py)
    q = plan("walks\n\nruns", "a man", skip_blank_lines=False)
    assert [s.prompt for s in q.scenes] == ["a man,walks", "a man,", "a man,runs"]
    assert q.scenes[1].caption == ""


def test_max_frames_keeps_the_first_frames() -> None:
    p = plan(HOSTED_SCRIPT, HOSTED_CHARACTER, max_frames=5)
    assert [s.prompt for s in p.scenes] == HOSTED_PROMPTS[:5]
    assert p.metadata["dropped_lines"] == 3
    # dropped lines are not parsed
    q = plan("walks\nruns\n[unknown] tag", "a man", max_frames=2)
    assert len(q.scenes) == 2


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
    p = ScriptPlanner().plan(request)
    assert (p.style, p.negative_prompt, p.width, p.height, p.seed) == ("Comic book", "bad hands", 512, 768, 7)
    assert p.planner == "script" and p.title == "The treasure"
    assert [s.duration for s in p.scenes] == [2.5] * 10
    again = StoryPlan.from_json(p.to_json())
    assert again == p
    assert again.scenes[7].characters == ("Bob", "Alice")
    assert again.metadata["character_lines"] == {"Bob": 1, "Alice": 2}


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
    err = script_error("[Bob] walks\n[Alcie] sits", "[Bob] a man\n[Alice] a woman")
    assert err.line == 2 and err.field == "script"
    assert "unknown tag [Alcie] (did you mean [Alice]?)" in str(err)
    assert "tags must be character names ([Bob], [Alice]) or [NC]" in str(err)
    err = script_error("[bob] walks", "[Bob] a man")
    assert err.line == 1 and "did you mean [Bob]?" in str(err)
    err = script_error("[Bob] walks", "")
    assert err.line == 1 and "no characters are defined" in str(err)


def test_error_empty_tag_in_frame() -> None:
    err = script_error("[Bob] walks\n[] sits", "[Bob] a man")
    assert err.line == 2 and "write a character name between the brackets" in str(err)


def test_error_nc_with_name_tag() -> None:
    err = script_error("[Bob] walks\n[NC] [Bob] sits", "[Bob] a man")
    assert err.line == 2
    assert "remove [NC] to show the character" in str(err)


def test_error_empty_prompt_after_nc_and_caption() -> None:
    err = script_error("[Bob] walks\n[NC] #The end.", "[Bob] a man")
    assert err.line == 2 and "write what the frame shows before the '#'" in str(err)
    err = script_error("walks\n[NC]", "a man")
    assert err.line == 2 and "empty prompt" in str(err)
    err = script_error("[Bob] walks\n#only a caption", "[Bob] a man")
    assert err.line == 2


def test_error_unbalanced_brackets_in_frame() -> None:
    err = script_error("[Bob] walks\n[Bob at home", "[Bob] a man")
    assert err.line == 2 and "close it with ']'" in str(err)
    err = script_error("[Bob] walks]", "[Bob] a man")
    assert err.line == 1 and "remove the stray ']'" in str(err)
    err = script_error("[Bob] [[Bob]] walks", "[Bob] a man")
    assert err.line == 1 and "remove the extra '['" in str(err)


def test_error_unbalanced_bracket_in_character_line() -> None:
    err = script_error("[Bob] walks", "[Bob] a man\n[Eve a woman")
    assert err.line == 2 and err.field == "characters" and "close it with ']'" in str(err)


@pytest.mark.parametrize("option", ["num_ids", "allow_nc_id_frames", "nc_rows_check"])
def test_id_frame_options_moved_to_the_generator_that_renders_id_frames(option: str) -> None:
    # directly, through the registry and through a Pipeline the error says where the option went
    for make in (
        lambda: ScriptPlanner(**{option: 2}),
        lambda: Registry().create("planner", "script", **{option: 2}),
    ):
        with pytest.raises(ConfigError) as info:
            make()
        msg = str(info.value)
        assert f"planner 'script': option {option!r} is no longer this component's" in msg
        assert f"give {option} to that generator instead" in msg


def test_options_are_declared() -> None:
    assert option_names(ScriptPlanner.Options) == [
        "max_frames", "max_characters", "default_character_name",
        "strip_tags_in_captions", "skip_blank_lines", "strip_whitespace",
    ]
    o = ScriptPlanner().options
    assert (o.max_frames, o.max_characters, o.default_character_name) == (None, None, "character")
    assert (o.strip_tags_in_captions, o.skip_blank_lines, o.strip_whitespace) == (False, True, True)


def test_error_bad_limits_and_default_name() -> None:
    for opt in ("max_frames", "max_characters"):
        for bad, why in ((0, "greater than or equal to 1"), (True, "valid integer"), (2.0, "valid integer")):
            with pytest.raises(ConfigError) as info:
                ScriptPlanner(**{opt: bad})
            assert f"planner 'script': option {opt}={bad!r}: input should be" in str(info.value)
            assert why in str(info.value)
    with pytest.raises(ConfigError, match="default_character_name='NC'.*choose another name"):
        ScriptPlanner(default_character_name="NC")
    with pytest.raises(ConfigError, match=r"default_character_name=' Bob'.*has spaces at its ends; write \[Bob\]"):
        ScriptPlanner(default_character_name=" Bob")
    with pytest.raises(ConfigError, match="default_character_name=''.*empty character name"):
        ScriptPlanner(default_character_name="")


def test_one_character_frame_and_characters_without_id_frames_are_parsed() -> None:
    # the planner parses the syntax only: how many frames show a character is for the generator
    p = plan("[Mia] a girl in a red coat #Mia\n[NC] a quiet street #The street", "[Mia] a girl")
    assert [s.prompt for s in p.scenes] == ["a girl  a girl in a red coat", "a quiet street"]
    assert [s.characters for s in p.scenes] == [("Mia",), ()]
    assert [s.caption for s in p.scenes] == ["Mia", "The street"]
    q = plan("[Bob] walks\n[Bob] and [Eve] talk", "[Bob] a man\n[Eve] a woman")  # Eve never alone
    assert [s.characters for s in q.scenes] == [("Bob",), ("Bob", "Eve")]
    r = plan("[NC] a road\nwalks", "a man")  # unnamed mode, [NC] first
    assert [s.characters for s in r.scenes] == [(), (C,)]
