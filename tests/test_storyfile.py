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
    assert pipe.planner.duration == 0.5
    assert pipe.generators[0].width == 24  # the caller's defaults override the file's
    assert pipe.generators[1].sample_rate == 4000


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
        ("defaults = 3\n", "must be tables"),
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
