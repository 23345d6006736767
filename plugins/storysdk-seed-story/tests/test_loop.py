"""The story loop of §2: one-pass image block, window, attention-sink cache, KV reuse."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from storysdk_seed_story.constants import EOI_TOKEN, IMAGE_BLOCK
from storysdk_seed_story.decode import decode_step
from storysdk_seed_story.preprocess import preprocess
from storysdk_seed_story.sink import reindex_cache, sink_positions
from storysdk_seed_story.story import PrefillStory, SinkStory, cut_window

CAPTION = "Lily and the fox walked to the old bridge."


@pytest.fixture(scope="module")
def feats0(vit, start_image):
    with torch.no_grad():
        return vit(preprocess([start_image]))[0]


def _prefill(lm, prompt, feats):
    ids = [lm.ids.bos] + lm.tokenizer.encode(prompt, add_special_tokens=False)
    cache = DynamicCache()
    _, logits = lm.forward(lm.inject(ids, feats), cache, 0)
    return ids, cache, logits


@torch.no_grad()
def test_one_pass_block_equals_forced_single_steps(lm, feats0):
    outs = []
    for block in ("one-pass", "stepwise"):
        ids, cache, logits = _prefill(lm, CAPTION + IMAGE_BLOCK, feats0[None])
        outs.append(decode_step(lm, cache, logits, len(ids), 500, block, max_text_tokens=5))
    one, step = outs
    assert one.gen_ids == step.gen_ids
    assert one.gen_ids[one.chain_start:] == list(lm.ids.chain)  # <img>, 64 image tokens, </img>
    assert one.image_hidden.shape == (64, 64)
    # Tolerance: float32 with different matmul shapes (one 66-row pass vs 66 single rows).
    torch.testing.assert_close(one.hidden, step.hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one.logits, step.logits, atol=1e-4, rtol=1e-5)
    # The image states are those of the 64 <img_xxxxx> inputs: rows chain_start+1 .. chain_start+64.
    s = one.chain_start
    torch.testing.assert_close(one.image_hidden, one.hidden[s + 1 : s + 65])


@torch.no_grad()
def test_free_mode_processor_sets_image_logits_to_zero(lm):
    logits = torch.full((len(lm.tokenizer),), -1.0)
    logits[5] = -0.5
    # 0.0 beats every negative logit (§2); among the tied zeros argmax takes the lowest id.
    assert lm.pick(logits) == min([*lm.ids.img, lm.ids.eoi])
    logits[lm.ids.boi] = 2.0
    assert lm.pick(logits) == lm.ids.boi
    logits[lm.ids.eoi] = 9.0  # </img> is clamped to 0.0 in free mode
    assert lm.pick(logits) == lm.ids.boi


def test_window_cut_is_upstream_string_rule():
    feats = [torch.full((2, 2), float(i)) for i in range(10)]
    segs = ["cap0"] + [f"[INST] story {i}" for i in range(1, 10)]
    prompt = "".join(s + IMAGE_BLOCK for s in segs)
    cut, kept = cut_window(prompt, feats, window=8)
    # 10 images > 8: two cuts, each after the first </img> plus the 6 characters of "[INST]".
    expected = prompt
    for _ in range(2):
        expected = expected[expected.index(EOI_TOKEN) + len(EOI_TOKEN) + 6 :]
    assert cut == expected and cut.startswith(" story 2<img>")
    assert [int(f[0, 0]) for f in kept] == list(range(2, 10))
    same, same_feats = cut_window(prompt, feats[:8] + [], window=8)
    assert same == prompt and len(same_feats) == 8


@torch.no_grad()
def test_prefill_story_feeds_back_regressed_features_in_a_window(lm, feats0):
    state = PrefillStory.start(CAPTION, feats0, window=2)
    steps = [state.step(lm, 500, "one-pass", max_text_tokens=4) for _ in range(3)]
    assert all(s.features is not None and s.features.shape == (256, 64) for s in steps)
    # History = the regressed features themselves; the oldest (the start image, then step 1) left.
    assert len(state.features) == 2
    torch.testing.assert_close(state.features[0], steps[1].features)
    torch.testing.assert_close(state.features[1], steps[2].features)
    assert state.prompt.count(EOI_TOKEN) == 2 and CAPTION not in state.prompt
    assert steps[2].context_tokens < steps[1].context_tokens + 80  # the prompt did not keep growing


def test_sink_positions_are_exactly_the_listed_ones():
    # one evicted image with <img> at 50 and </img> at 115, 300 tokens in all
    keep = sink_positions(300, [(50, 115)])
    expected = [0, 1, 2, 3] + list(range(46, 58)) + list(range(107, 119)) + list(range(116, 300))
    assert keep == sorted(set(expected))
    assert set(range(46, 58)) == {50 - 4 + i for i in range(12)}  # boi-4 .. boi+7
    # two evicted images accumulate their head and tail tokens
    keep2 = sink_positions(400, [(50, 115), (140, 205)])
    expected2 = set(range(4)) | set(range(46, 58)) | set(range(107, 119)) | set(range(136, 148)) \
        | set(range(197, 209)) | set(range(206, 400))
    assert keep2 == sorted(expected2)
    assert sink_positions(30, []) == list(range(30))


@torch.no_grad()
def test_reindexed_cache_equals_fresh_prefill_of_kept_tokens(lm):
    torch.manual_seed(3)
    emb = torch.randn(1, 20, 64)
    cache = DynamicCache()
    lm.forward(emb, cache, 0)
    rows = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 18, 19]
    moved = reindex_cache(lm.llm, cache, rows)
    fresh = DynamicCache()
    lm.forward(emb[:, rows], fresh, 0)
    # Layer 0 keys/values depend only on the token and its (new) position.
    torch.testing.assert_close(moved.layers[0].keys, fresh.layers[0].keys, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(moved.layers[0].values, fresh.layers[0].values)
    assert moved.get_seq_length() == len(rows)


@torch.no_grad()
def test_sink_story_reuses_kv_and_evicts_per_spec(lm, feats0):
    state = SinkStory.start(lm, CAPTION, feats0, window=1)
    n0 = state.total
    first = state.step(lm, 500, "one-pass", max_text_tokens=3)
    assert first.features is not None
    # window=1 evicts the start image right after step 1: the cache keeps exactly §2's positions.
    assert state.evicted == [state.images[0]]
    assert state.kept == sink_positions(state.total, state.evicted)
    assert state.cache.get_seq_length() == len(state.kept)
    boi0, eoi0 = state.images[0]
    assert boi0 == n0 - 66 and eoi0 == n0 - 1
    second = state.step(lm, 500, "one-pass", max_text_tokens=3)
    assert second.features is not None and len(state.evicted) == 2
    assert state.kept == sink_positions(state.total, state.evicted)


@torch.no_grad()
def test_sink_story_without_eviction_matches_reprefill(lm, feats0):
    state = SinkStory.start(lm, CAPTION, feats0, window=8)
    out = state.step(lm, 500, "one-pass", max_text_tokens=3)
    ids0 = [lm.ids.bos] + lm.tokenizer.encode(CAPTION + IMAGE_BLOCK, add_special_tokens=False)
    text_ids = lm.tokenizer.encode(out.raw, add_special_tokens=False)[:3]
    ids = ids0 + text_ids + list(lm.ids.chain)
    cache = DynamicCache()
    _, logits = lm.forward(lm.inject(ids, torch.stack([feats0, out.features])), cache, 0)
    assert state.total == len(ids) and state.kept == list(range(len(ids)))
    torch.testing.assert_close(state.logits, logits, atol=1e-4, rtol=1e-4)
