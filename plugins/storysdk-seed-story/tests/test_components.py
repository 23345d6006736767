"""The registered components end to end on the tiny preset, and their errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from storysdk import ConfigError, Pipeline, StoryRequest, get_registry
from storysdk.interfaces import RenderContext
from storysdk.model import Scene, Story, StoryPlan
from storysdk_seed_story.detokenizer import SeedStoryDetokenizer
from storysdk_seed_story.planner import IMAGE_EMBEDS, SeedStoryPlanner
from storysdk_seed_story.preprocess import preprocess
from storysdk_seed_story.vit_tokenizer import SeedStoryViTTokenizer

CAPTION = "Lily and the fox walked to the old bridge."


def test_components_are_registered_through_the_entry_point():
    reg = get_registry()
    assert reg.get("planner", "seed-story").factory is SeedStoryPlanner
    assert reg.get("tokenizer", "seed-story-vit").factory is SeedStoryViTTokenizer
    assert reg.get("generator", "seed-story-detokenizer").factory is SeedStoryDetokenizer


def test_full_tiny_story_of_four_scenes(tmp_path, start_image):
    pipe = Pipeline(planner="seed-story", generators=[("seed-story-detokenizer", {"steps": 2})],
                    composers=["frames"], defaults={"preset": "tiny", "device": "cpu"})
    req = StoryRequest(start_image=start_image, start_caption=CAPTION, num_scenes=4, seed=5)
    story = pipe.run(req, out_dir=tmp_path / "out")
    scenes = story.plan.scenes
    assert [s.index for s in scenes] == [0, 1, 2, 3]
    assert scenes[0].prompt == CAPTION
    # scene 0 shows the user's picture; 1..3 are de-tokenized regressed features
    assert np.array_equal(np.asarray(story.images[0].image), np.asarray(start_image))
    for s in scenes[1:]:
        assert s.prompt.strip() and "<" not in s.metadata["raw_text"]
        assert s.tokens[IMAGE_EMBEDS]["features"].shape == (256, 64)
        assert story.images[s.index].image.size == (64, 64)
    feats = [s.tokens[IMAGE_EMBEDS]["features"] for s in scenes[1:]]
    assert not torch.equal(feats[0], feats[1])
    assert len(story.files["frames"]) == 4
    # the planner keeps no run state on itself: a second run gives the same story
    again = Pipeline(planner=pipe.planner, generators=[pipe.generators[0]]).run(req)
    assert [s.prompt for s in again.plan.scenes] == [s.prompt for s in scenes]
    assert np.array_equal(np.asarray(again.images[3].image), np.asarray(story.images[3].image))


def test_planner_alone_feeds_another_image_generator(start_image):
    pipe = Pipeline(planner=("seed-story", {"num_scenes": 3}),
                    generators=[("diffusers-image", {"steps": 2})], defaults={"preset": "tiny", "device": "cpu"})
    story = pipe.run(StoryRequest(start_image=start_image, start_caption=CAPTION))
    assert len(story.plan.scenes) == 3 and sorted(story.images) == [0, 1, 2]
    assert all(a.made_by == "diffusers-image" for a in story.images.values())


def test_detokenizer_negative_is_vit_of_zeros_cached(vit):
    det = SeedStoryDetokenizer(preset="tiny", device="cpu", steps=2)
    loaded = det.load()
    assert det.load() is loaded  # computed once
    with torch.no_grad():
        ref = loaded.perceiver(vit(torch.zeros(1, 3, 448, 448)))
    torch.testing.assert_close(loaded.negative[0], ref[0])
    torch.testing.assert_close(loaded.negative[1], ref[1])
    assert loaded.negative[0].shape == (1, 64, 64) and loaded.negative[1].shape == (1, 32)
    # an all-zeros *normalised* input is the mean-grey picture (§1.5)
    grey = Image.new("RGB", (448, 448), tuple(round(255 * m) for m in (0.48145466, 0.4578275, 0.40821073)))
    assert preprocess([grey]).abs().max() < 0.02
    # same scene seed -> bit-identical picture; fixed_seed=42 gives every frame the same noise
    scene = Scene(index=2, prompt="x", tokens={})
    from storysdk.model import Tokens

    scene.tokens[IMAGE_EMBEDS] = Tokens(IMAGE_EMBEDS, "t", {"features": torch.randn(256, 64)})
    ctx = RenderContext(plan=StoryPlan(scenes=[scene]), seed=1)
    a = next(iter(det.generate([scene], ctx))).image
    b = next(iter(det.generate([scene], ctx))).image
    assert np.array_equal(np.asarray(a), np.asarray(b)) and a.size == (64, 64)


def test_vit_tokenizer_encodes_story_images(start_image):
    tok = SeedStoryViTTokenizer(preset="tiny", device="cpu")
    scene = Scene(index=0, prompt="p")
    from storysdk.model import ImageAsset

    story = Story(plan=StoryPlan(scenes=[scene]))
    story.add(ImageAsset(0, start_image))
    [t] = tok.tokenize([scene], RenderContext(plan=story.plan, story=story))
    assert t.kind == IMAGE_EMBEDS and t["features"].shape == (256, 64) and t["llm_inputs"].shape == (64, 64)
    planner = SeedStoryPlanner(preset="tiny", device="cpu")  # same tiny seed: same ViT
    torch.testing.assert_close(planner.encode_image(start_image), t["features"])
    with pytest.raises(ConfigError, match="no picture"):
        tok.tokenize([Scene(index=1, prompt="p")], RenderContext(plan=story.plan, story=story))
    with pytest.raises(ConfigError, match="mode 'L'"):
        tok.encode([start_image.convert("L")])


def test_bad_inputs_get_clear_errors(start_image):
    planner = SeedStoryPlanner(preset="tiny", device="cpu")
    with pytest.raises(ConfigError, match="start_image"):
        planner.plan(StoryRequest(prompt="a story"))
    with pytest.raises(ConfigError, match="caption"):
        planner.plan(StoryRequest(start_image=start_image))
    with pytest.raises(ConfigError, match="at least 14x14"):
        planner.plan(StoryRequest(start_image=Image.new("RGB", (8, 8)), start_caption="x"))
    with pytest.raises(ConfigError, match="image_block"):
        SeedStoryPlanner(preset="tiny", image_block="fast")
    with pytest.raises(ConfigError, match="multiple of 8"):
        SeedStoryDetokenizer(preset="tiny", width=100)
    det = SeedStoryDetokenizer(preset="tiny", device="cpu", steps=2)
    with pytest.raises(ConfigError, match="no seed-story-image-embeds"):
        list(det.generate([Scene(index=0, prompt="p")], RenderContext(plan=StoryPlan())))


def test_example_story_file_renders_on_the_tiny_preset(tmp_path):
    from pathlib import Path

    from storysdk import load_story_file

    sf = load_story_file(Path(__file__).parents[3] / "examples" / "seed-story-tiny.toml")
    story = sf.pipeline(defaults={"device": "cpu"}).run(sf.request, out_dir=tmp_path / "out")
    assert len(story.plan.scenes) == 4 and sorted(story.images) == [0, 1, 2, 3]
    assert [p.name for p in story.files["frames"]] == [f"scene-00{i}.png" for i in range(4)]
