"""An interleaved story interrupted after some scenes and run again in its folder ends byte for byte
as an uninterrupted run: the loop's state is rebuilt from the saved scenes (both cache modes)."""

from __future__ import annotations

import json

import pytest
import torch

from storysdk import Pipeline, StoryRequest
from storysdk.interfaces import ProgressEvent
from storysdk.testing.contract import folder_bytes
from storysdk_seed_story.story import PrefillStory, SinkStory

CAPTION = "Lily and the fox walked to the old bridge."


class Stop(Exception):
    pass


def _files(root) -> dict[str, object]:
    """Every file's bytes; for the token files, the parsed header and the tensor bytes: safetensors
    writes the ``__metadata__`` entries in hash order, which differs from one save to the next."""
    out: dict[str, object] = {}
    for name, data in folder_bytes(root).items():
        if name.startswith("tokens/") and name.endswith(".safetensors"):
            n = int.from_bytes(data[:8], "little")
            out[name] = (json.loads(data[8 : 8 + n]), data[8 + n :])
        else:
            out[name] = data
    return out


def _pipeline(sink: bool) -> Pipeline:
    return Pipeline(planner=("seed-story", {"sink_cache": sink, "window": 2, "max_text_tokens": 4}),
                    generators=[("seed-story-detokenizer", {"steps": 2})], composers=["frames"],
                    defaults={"preset": "tiny", "device": "cpu"})


@pytest.mark.parametrize("sink", [False, True], ids=["prefill", "sink"])
def test_resumed_story_is_byte_identical(tmp_path, start_image, sink):
    request = StoryRequest(start_image=start_image, start_caption=CAPTION, num_scenes=5, seed=3)
    whole = _pipeline(sink).run(request, out_dir=tmp_path / "whole")

    def stop_after_scene_2(ev: ProgressEvent) -> None:
        if ev.stage == "generate" and ev.scene_index == 2:
            raise Stop

    with pytest.raises(Stop):
        _pipeline(sink).run(request, out_dir=tmp_path / "resumed", progress=stop_after_scene_2)
    assert sorted(p.name for p in (tmp_path / "resumed" / "tracks" / "seed-story-detokenizer").iterdir() if p.suffix == ".png") == [
        "scene-0000.png", "scene-0001.png", "scene-0002.png"]
    resumed = _pipeline(sink).run(request, out_dir=tmp_path / "resumed")  # a fresh planner, as in a new process
    assert [s.prompt for s in resumed.plan.scenes] == [s.prompt for s in whole.plan.scenes]
    assert len(whole.plan.scenes) == 5
    assert _files(tmp_path / "whole") == _files(tmp_path / "resumed")
    # with window 2 the start image left the context before scene 3 was written: the replay evicted too
    assert whole.plan.scenes[4].metadata["context_tokens"] < whole.plan.scenes[3].metadata["context_tokens"] + 80


@torch.no_grad()
@pytest.mark.parametrize("mode", ["prefill", "sink"])
def test_replayed_state_equals_the_stepped_one(lm, vit, start_image, mode):
    from storysdk_seed_story.preprocess import preprocess

    feats0 = vit(preprocess([start_image]))[0]
    start = (lambda: SinkStory.start(lm, CAPTION, feats0, window=2)) if mode == "sink" else (
        lambda: PrefillStory.start(CAPTION, feats0, window=2))
    stepped = start()
    outs = [stepped.step(lm, 500, "one-pass", 3) for _ in range(3)]
    steps = [(o.text, o.text_ids, o.features) for o in outs]
    if mode == "sink":
        replayed = SinkStory.replay(lm, CAPTION, feats0, steps, window=2)
        assert replayed.kept == stepped.kept and replayed.images == stepped.images
        assert replayed.evicted == stepped.evicted and len(replayed.evicted) == 2
        for a, b in zip(replayed.cache.layers, stepped.cache.layers):
            assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
        assert torch.equal(replayed.logits, stepped.logits)
    else:
        replayed = PrefillStory.replay(CAPTION, feats0, steps, window=2)
        assert replayed.prompt == stepped.prompt
        assert all(torch.equal(a, b) for a, b in zip(replayed.features, stepped.features))
    nxt_a, nxt_b = stepped.step(lm, 500, "one-pass", 3), replayed.step(lm, 500, "one-pass", 3)
    assert nxt_a.text_ids == nxt_b.text_ids and torch.equal(nxt_a.features, nxt_b.features)
