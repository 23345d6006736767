"""Story files with tracks: [tracks.<name>] tables, [timing] and [mix], and their mistakes, each a
ConfigError that names the file and the section before any component is built."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from storysdk import ConfigError, load_story_file
from storysdk.mixing import Mix
from storysdk.storyfile import parse_story_file
from storysdk.testing import make_registry
from storysdk.timeline import Timing

STORY = '''
[story]
seed = 3
script = """
a lighthouse at dusk
a ship in the fog
"""

[tokenizers]
name = "fake-tokenizer"

[tracks.frames]
generator = { name = "fake-image", width = 16, height = 8 }

[tracks.narration]
generator = "fake-audio"
text = "{caption}"
duck = 9
tokenizers = ["fake-tokenizer"]

[tracks.ambience]
planner = { name = "fake-events", per_scene = 3 }
generator = { name = "fake-audio", sample_rate = 4000 }
tokenizers = [{ name = "fake-tokenizer" }]
gain = -6
seed = 12

[timing]
mode = "fixed"
seconds = 1.5

[mix]
loudness = -20.0
ceiling = -2.0

[[composers]]
name = "fake-composer"

[[composers]]
name = "fake-composer"
dir = "again"
'''


def test_a_story_file_with_tracks_timing_and_mix(tmp_path: Path) -> None:
    path = tmp_path / "story.toml"
    path.write_text(STORY, encoding="utf-8")
    sf = load_story_file(path)
    assert list(sf.tracks or {}) == ["frames", "narration", "ambience"]
    assert sf.tracks["frames"]["generator"] == {"name": "fake-image", "width": 16, "height": 8}  # type: ignore[index]
    assert sf.tracks["narration"]["generator"] == {"name": "fake-audio"}  # type: ignore[index]
    assert sf.tracks["narration"]["tokenizers"] == [{"name": "fake-tokenizer"}]  # type: ignore[index]
    assert sf.tracks["ambience"]["planner"] == {"name": "fake-events", "per_scene": 3}  # type: ignore[index]
    assert sf.timing == {"mode": "fixed", "seconds": 1.5} and sf.mix == {"loudness": -20.0, "ceiling": -2.0}
    assert sf.generators == []
    pipe = sf.pipeline(registry=make_registry())
    assert pipe.timing == Timing(mode="fixed", seconds=1.5) and pipe.mix == Mix(loudness=-20.0, ceiling=-2.0)
    assert [t.settings.duck for t in pipe.tracks.values()] == [None, 9.0, None]
    assert pipe.tracks["ambience"].settings.seed == 12 and pipe.tracks["ambience"].planner.name == "fake-events"  # type: ignore[union-attr]
    assert [t.name for t in pipe.tracks["narration"].tokenizers] == ["fake-tokenizer"]
    story = pipe.run(sf.request, out_dir=tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "tracks/ambience").glob("*.wav")) == [f"cue-{i:04d}.wav" for i in range(6)]
    assert story.tracks["ambience"].assets[0].sample_rate == 4000  # type: ignore[union-attr]
    assert story.tracks["frames"].assets[1].image.size == (16, 8)  # type: ignore[union-attr]
    assert [s.duration for s in story.timeline.scenes] == [1.5, 1.5]
    assert story.mix.loudness == -20.0
    assert (out / "story.json").is_file() and (out / "again/story.json").is_file()
    # the same file again: the same files
    first = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
    load_story_file(path).pipeline(registry=make_registry()).run(sf.request, out_dir=tmp_path / "b")
    second = {p.relative_to(tmp_path / "b").as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in (tmp_path / "b").rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert first == second


def test_a_pace_track_in_a_story_file() -> None:
    sf = parse_story_file('''
[story]
script = "one\\ntwo words"
[tracks.frames]
generator = "fake-image"
[tracks.voice]
generator = { name = "fake-audio", per_character = 0.1 }
[timing]
mode = "track"
track = "voice"
padding = 0.5
minimum = 1.45
''', source="pace.toml")
    story = sf.pipeline(registry=make_registry()).run(sf.request)
    # "one": 0.3 s + 0.5 s, at least 1.45 s; "two words": 0.9 s + 0.5 s = 1.4 s, at least 1.45 s
    assert [s.duration for s in story.timeline.scenes] == [1.45, 1.45]
    sf = parse_story_file('''
[story]
script = "one\\ntwo words and more"
[tracks.voice]
generator = { name = "fake-audio", per_character = 0.1 }
[timing]
mode = "track"
track = "voice"
padding = 0.5
''', source="pace.toml")
    story = sf.pipeline(registry=make_registry()).run(sf.request)
    assert [s.duration for s in story.timeline.scenes] == [0.8, 2.3]


BASE = '[story]\nscript = "a"\n'


@pytest.mark.parametrize("body, section, match", [
    ('[[tracks]]\ngenerator = "fake-image"\n', "[[tracks]]", r"tracks are named tables: write \[tracks\.frames\]"),
    ('[tracks.frames]\ngenerator = "fake-image"\n[[generators]]\nname = "fake-audio"\n', "[[generators]]",
     r"give \[tracks\.<name>\] tables or \[\[generators\]\], not both"),
    ('[tracks.frames]\ngenerator = "fake-image"\ngian = 3\n', "[tracks.frames]", r"unknown key 'gian'\. Did you mean 'gain'"),
    ('[tracks.frames]\ngenerater = "fake-image"\n', "[tracks.frames]", r"Did you mean 'generator'"),
    ('[tracks.frames]\ngain = 3\n', "[tracks.frames]", r"has no generator"),
    ('[tracks."my frames"]\ngenerator = "fake-image"\n', "[tracks.my frames]", r"not usable as a folder name"),
    ('[tracks.frames]\ngenerator = "fake-image"\ntext = "{caption!r}"\n', "[tracks.frames]", r"not a plain name"),
    ('[tracks.frames]\ngenerator = "fake-image"\nrelease = -1\n', "[tracks.frames]", r"option release=-1"),
    ('[tracks.frames]\ngenerator = 3\n', "[tracks.frames] generator", r"must be a table with a 'name' key"),
    ('[tracks.frames]\ngenerator = "fake-image"\nplanner = {per_scene = 2}\n', "[tracks.frames] planner", r"needs name = "),
    ('[tracks.frames]\ngenerator = "fake-image"\ntokenizers = 4\n', "[tracks.frames] tokenizers", r"must be an array"),
    ('[tracks.frames]\ngenerator = "fake-image"\ntokenizers = [4]\n', "[tracks.frames] tokenizers #1", r"must be a table"),
    ('[tracks.frames]\ngenerator = "fake-image"\n[tracks.amb]\n', "[tracks.amb]", r"has no generator"),
    ('tracks = 3\n', "[tracks]", r"must hold \[tracks\.<name>\] tables"),
    ('[tracks]\n', "[tracks]", r"must hold \[tracks\.<name>\] tables"),
    ('[timing]\nmode = "fast"\n', "[timing]", r"option mode='fast': input should be 'plan', 'fixed' or 'track'"),
    ('[timing]\nmode = "fixed"\nseconds = -2\n', "[timing]", r"option seconds=-2"),
    ('[timing]\nmode = "fixed"\nsecond = 2\n', "[timing]", r"unknown key 'second'\. Did you mean 'seconds'"),
    ('[timing]\nmode = "track"\n', "[timing]", r'needs track = '),
    ('[timing]\ntrack = "voice"\n', "[timing]", r'set mode = "track"'),
    ('[tracks.frames]\ngenerator = "fake-image"\n[timing]\nmode = "track"\ntrack = "framse"\n', "[timing]",
     r"timing track 'framse' is not one of the pipeline's tracks \(frames\)\. Did you mean 'frames'"),
    ('timing = 3\n', "[timing]", r"must be a table"),
    ('[mix]\nloudness = "loud"\n', "[mix]", r"option loudness='loud': input should be a valid number"),
    ('[mix]\nceiling = 3\n', "[mix]", r"option ceiling=3"),
    ('[mix]\nrate = 44100\n', "[mix]", r"unknown key 'rate'"),
    ('mix = "loud"\n', "[mix]", r"must be a table"),
])
def test_story_file_track_mistakes_name_the_file_and_section(tmp_path: Path, body: str, section: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    top_level = body.startswith(("tracks =", "timing =", "mix ="))
    text = body + BASE if top_level else BASE + body  # a top-level key comes before [story]
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match) as err:
        load_story_file(path)
    msg = str(err.value)
    assert msg.startswith(str(path)), msg
    assert section in msg, msg
