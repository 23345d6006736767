"""Story files (TOML): parsing, validation, building pipelines."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from storysdk import ConfigError, load_story_file
from storysdk.storyfile import parse_story_file
from storysdk.testing import make_registry

GOOD = """
[story]
seed = 4
width = 32
height = 32
script = '''
one
two
'''

[defaults]
width = 16

[planner]
name = "fake-planner"
duration = 0.5

[[tokenizers]]
name = "fake-tokenizer"

[[generators]]
name = "fake-image"

[[generators]]
name = "fake-audio"
sample_rate = 4000

[[composers]]
name = "fake-composer"
"""


def test_a_story_file_builds_its_pipeline() -> None:
    sf = parse_story_file(GOOD)
    assert sf.request.seed == 4 and sf.request.script is not None
    assert sf.planner == {"name": "fake-planner", "duration": 0.5}
    assert [g["name"] for g in sf.generators] == ["fake-image", "fake-audio"]
    pipe = sf.pipeline(registry=make_registry(), defaults={"width": 24})
    assert pipe.planner.options.duration == 0.5  # type: ignore[attr-defined]
    assert pipe.generators[0].options.width == 24  # type: ignore[attr-defined]  # the caller's runtime options override the file's
    assert pipe.generators[1].options.sample_rate == 4000  # type: ignore[attr-defined]
    assert sf.pipeline(registry=make_registry()).generators[0].options.width == 16  # type: ignore[attr-defined]
    # runtime options (the CLI's --preset, --device) that no component takes are left out
    pipe = sf.pipeline(registry=make_registry(), defaults={"preset": "tiny", "device": "cpu"})
    assert pipe.describe()["generator"][0] == {"name": "fake-image", "options": {"width": 16}}


def test_a_defaults_key_no_component_takes_is_an_error_with_a_suggestion() -> None:
    sf = parse_story_file(GOOD.replace("[defaults]\nwidth = 16", "[defaults]\nwidht = 16"))
    with pytest.raises(ConfigError, match=r"defaults: no component of this pipeline takes the option 'widht'\. "
                       r"Did you mean 'width'\? Options they take: .*sample_rate, width"):
        sf.pipeline(registry=make_registry())
    # the former 'seed' option: names the options that replaced it and the story's own seed
    sf = parse_story_file(GOOD.replace("[defaults]\nwidth = 16", "[defaults]\nseed = 3") + '\n[[composers]]\nname = "comic"\n')
    with pytest.raises(ConfigError, match=r"takes 'seed' any more: composer 'comic' calls it 'layout_seed'.*\[story\] seed"):
        sf.pipeline(registry=make_registry())


def test_component_options_are_checked_with_their_declarations() -> None:
    reg = make_registry()
    typo = parse_story_file(GOOD.replace("sample_rate = 4000", "sample_rte = 4000"))
    with pytest.raises(ConfigError, match=r"generator 'fake-audio' has no option 'sample_rte'\. Did you mean 'sample_rate'\?"):
        typo.pipeline(registry=reg)
    wrong = parse_story_file(GOOD.replace("sample_rate = 4000", 'sample_rate = "4000"'))
    with pytest.raises(ConfigError, match=r"generator 'fake-audio': option sample_rate='4000': input should be a valid integer"):
        wrong.pipeline(registry=reg)
    renamed = parse_story_file(GOOD + '\n[[composers]]\nname = "comic"\nseed = 2\n')
    with pytest.raises(ConfigError, match=r"composer 'comic': option 'seed' was renamed to 'layout_seed'.*write layout_seed = \.\.\. instead"):
        renamed.pipeline(registry=reg)


def test_planner_defaults_to_script_and_names_may_be_strings() -> None:
    sf = parse_story_file('composers = ["comic"]\n[story]\nscript = "x"\n')
    assert sf.planner == {"name": "script"}
    assert sf.composers == [{"name": "comic"}]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[story\n", "not valid TOML"),
        ("[stroy]\nseed = 1\n", "unknown section\\(s\\) stroy"),
        ("[story]\nsed = 1\n", "unknown story field\\(s\\) sed"),
        ("[story]\nseed = 'x'\n", "seed must be a whole number"),
        ("[planner]\nsteps = 3\n", "needs name ="),
        ("generators = 3\n", "must be an array of tables"),
        ("[[composers]]\nstyle = 'x'\n", "\\[\\[composers\\]\\] #1 needs name"),
        ("defaults = 3\n", r"\[defaults\] must be a table .*got defaults = 3"),
    ],
)
def test_malformed_story_files(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_story_file(text)


def test_relative_image_paths_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "img" / "start.png")
    story = tmp_path / "s.toml"
    story.write_text(
        '[story]\nprompt = "p"\nstart_image = "img/start.png"\n'
        '[[story.characters]]\nname = "Bob"\ndescription = "a man"\nreference_image = "img/start.png"\n'
    )
    sf = load_story_file(story)
    assert sf.path == story
    assert Path(str(sf.request.start_image)) == (tmp_path / "img" / "start.png").resolve()
    assert Path(str(sf.request.characters[0].reference_image)) == (tmp_path / "img" / "start.png").resolve()


def test_missing_story_file() -> None:
    with pytest.raises(ConfigError, match="does not exist; see examples/"):
        load_story_file("/nonexistent/story.toml")
