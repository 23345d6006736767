"""The contract suite (storysdk.testing.contract) on every built-in component and every fake."""

from __future__ import annotations

from storysdk import StoryRequest
from storysdk.testing.contract import ComposerContract, GeneratorContract, PlannerContract, TokenizerContract

REQUEST = StoryRequest(script="a lighthouse at dusk #Night falls\na ship in the fog #A ship", width=64, height=64,
                       duration=2.0, seed=7)
SCRIPT = StoryRequest(script="[Mia] at the window #Mia waits\n[NC] a quiet street #The street sleeps",
                      characters="[Mia] a girl in a red coat", width=64, height=64, seed=5)


# -- planners ------------------------------------------------------------------------------------
class TestScriptPlanner(PlannerContract):
    name = "script"
    request = SCRIPT
    bad_options = [({"max_frames": 0}, "max_frames")]


class TestFakePlanner(PlannerContract):
    name = "fake-planner"
    request = REQUEST
    bad_options = [({"duration": 0}, "duration")]


class TestFakeInterleavedPlanner(PlannerContract):
    name = "fake-interleaved"
    request = StoryRequest(prompt="a lighthouse", num_scenes=3, seed=2)
    bad_options = [({"duration": -1}, "duration")]


# -- tokenizers ----------------------------------------------------------------------------------
class TestClipText(TokenizerContract):
    name = "clip-text"
    options = {"preset": "tiny", "device": "cpu"}
    request = REQUEST
    bad_options = [({"clip_skip": -1}, "clip_skip"), ({"preset": "small"}, "preset")]


class TestFakeTokenizer(TokenizerContract):
    name = "fake-tokenizer"
    request = REQUEST


# -- generators ----------------------------------------------------------------------------------
class TestDiffusersImage(GeneratorContract):
    name = "diffusers-image"
    options = {"preset": "tiny", "steps": 2, "device": "cpu"}
    request = REQUEST
    bad_options = [({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"), ({"offload": "layers"}, "offload")]


class TestDiffusersAudio(GeneratorContract):
    name = "diffusers-audio"
    options = {"preset": "tiny", "steps": 2, "device": "cpu"}
    request = REQUEST
    bad_options = [({"steps": 0}, "steps"), ({"duration": -1.0}, "duration")]


class TestFakeImage(GeneratorContract):
    name = "fake-image"
    request = REQUEST
    bad_options = [({"width": 0}, "width")]


class TestFakeAudio(GeneratorContract):
    name = "fake-audio"
    request = REQUEST
    bad_options = [({"sample_rate": 0}, "sample_rate")]


# -- composers -----------------------------------------------------------------------------------
class TestComic(ComposerContract):
    name = "comic"
    request = REQUEST
    bad_options = [({"style": "Manga"}, "style")]


class TestFrames(ComposerContract):
    name = "frames"
    request = REQUEST
    bad_options = [({"format": "gif"}, "format")]


class TestSoundtrack(ComposerContract):
    name = "soundtrack"
    request = REQUEST
    bad_options = [({"format": "mp3"}, "format"), ({"crossfade": -1.0}, "no longer this component")]


class TestStorybook(ComposerContract):
    name = "storybook"
    request = REQUEST
    bad_options = [({"filename": ""}, "filename")]


class TestVideo(ComposerContract):
    name = "video"
    options = {"fps": 8}
    request = REQUEST
    bad_options = [({"fps": 0}, "fps"), ({"crf": 99}, "crf")]


class TestFakeComposer(ComposerContract):
    name = "fake-composer"
    request = REQUEST
