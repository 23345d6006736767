"""Tiny presets and offline tokenizers: SDXL geometry, seeded reproducibility, tokenizer determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from storysdk.tiny import clip_tokenizer, corpus_words, learn_bpe_merges, t5_tokenizer
from storysdk.tiny import (
    TINY_STABLE_AUDIO,
    tiny_sdxl_components,
    tiny_stable_audio_components,
    tiny_sdxl_pipeline,
    tiny_sdxl_text_components,
    tiny_stable_audio_pipeline,
)


class _Recorder(AttnProcessor2_0):
    """Records (query tokens, key tokens) seen by one attention layer."""

    def __init__(self, name: str, seen: dict):
        super().__init__()
        self.name, self.seen = name, seen

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        keys = hidden_states.shape[1] if encoder_hidden_states is None else encoder_hidden_states.shape[1]
        self.seen.setdefault(self.name, set()).add((hidden_states.shape[1], keys))
        return super().__call__(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


@pytest.fixture(scope="module")
def sdxl():
    return tiny_sdxl_pipeline(seed=0)


def _self_attn_tokens(pipe, height, width):
    seen: dict = {}
    pipe.unet.set_attn_processor({n: _Recorder(n, seen) for n in pipe.unet.attn_processors})
    try:
        out = pipe(
            "a girl in the forest",
            height=height,
            width=width,
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(0),
            output_type="pil",
        ).images[0]
    finally:
        pipe.unet.set_attn_processor(AttnProcessor2_0())
    return seen, out


@pytest.mark.parametrize("height, width", [(64, 64), (96, 96), (64, 128)])
def test_sdxl_geometry_token_counts(sdxl, height, width):
    seen, image = _self_attn_tokens(sdxl, height, width)
    assert image.size == (width, height)
    lat_h, lat_w = height // 8, width // 8  # the VAE down-samples 8x
    by_block: dict[str, set] = {}
    for name, shapes in seen.items():
        block = ".".join(name.split(".")[:2]) if not name.startswith("mid_block") else "mid_block"
        kind = name.split(".")[-2]  # attn1 (self) or attn2 (cross)
        by_block.setdefault(f"{block}.{kind}", set()).update(shapes)
    # SDXL geometry: up_blocks.0 at 1/32 of the pixels (latent / 4), up_blocks.1 at 1/16 (latent / 2).
    n32 = (height // 32) * (width // 32)
    n16 = (height // 16) * (width // 16)
    assert by_block["up_blocks.0.attn1"] == {(n32, n32)}
    assert by_block["up_blocks.1.attn1"] == {(n16, n16)}
    assert by_block["down_blocks.1.attn1"] == {(n16, n16)}
    assert by_block["down_blocks.2.attn1"] == {(n32, n32)}
    assert by_block["mid_block.attn1"] == {(n32, n32)}
    assert n16 == (lat_h // 2) * (lat_w // 2) and n32 == (lat_h // 4) * (lat_w // 4)
    # Cross-attention reads the 77 text tokens; the full-size level has no attention at all.
    assert by_block["up_blocks.0.attn2"] == {(n32, 77)}
    assert not any(k.startswith(("down_blocks.0", "up_blocks.2")) for k in by_block)


def test_sdxl_layer_counts_and_config(sdxl):
    names = list(sdxl.unet.attn_processors)
    count = Counter(n.split(".")[0] + "." + n.split(".")[1] if not n.startswith("mid") else "mid" for n in names)
    # self + cross per transformer block: up_blocks.0 has 3 attentions x 2 layers, up_blocks.1 3 x 1.
    assert count["up_blocks.0"] == 3 * 2 * 2
    assert count["up_blocks.1"] == 3 * 1 * 2
    assert count["down_blocks.1"] == 2 * 1 * 2
    assert count["down_blocks.2"] == 2 * 2 * 2
    cfg = sdxl.unet.config
    assert cfg.addition_embed_type == "text_time"
    te1, te2 = sdxl.text_encoder.config, sdxl.text_encoder_2.config
    assert cfg.cross_attention_dim == te1.hidden_size + te2.hidden_size
    assert cfg.projection_class_embeddings_input_dim == te2.projection_dim + 6 * cfg.addition_time_embed_dim
    assert sdxl.vae_scale_factor == 8 and len(sdxl.vae.config.block_out_channels) == 4
    assert sdxl.vae.config.latent_channels == 4
    assert type(sdxl.scheduler).__name__ == "EulerDiscreteScheduler"
    assert len(sdxl.tokenizer) <= te1.vocab_size and len(sdxl.tokenizer_2) <= te2.vocab_size
    assert te1.eos_token_id == sdxl.tokenizer.eos_token_id


def test_sdxl_default_size_is_64(sdxl):
    image = sdxl("a cat", num_inference_steps=2, generator=torch.Generator().manual_seed(1)).images[0]
    assert image.size == (64, 64)


def _state(components):
    return {
        f"{name}.{k}": v.clone()
        for name, module in components.items()
        if isinstance(module, torch.nn.Module)
        for k, v in module.state_dict().items()
    }


def test_sdxl_seeded_rebuild_identical():
    a, b, c = _state(tiny_sdxl_components(3)), _state(tiny_sdxl_components(3)), _state(tiny_sdxl_components(4))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point() and a[k].numel() > 1)
    text = _state(tiny_sdxl_text_components(3))
    assert all(torch.equal(text[k], a[k]) for k in text)


def test_sdxl_scheduler_option():
    comps = tiny_sdxl_components(0, scheduler="DDIMScheduler")
    assert type(comps["scheduler"]).__name__ == "DDIMScheduler"
    assert comps["scheduler"].config.beta_schedule == "scaled_linear"
    from storysdk.errors import ConfigError

    with pytest.raises(ConfigError, match="not a diffusers scheduler"):
        tiny_sdxl_components(0, scheduler="NoSuchScheduler")


def test_sdxl_seeded_runs_bit_identical(sdxl):
    def run():
        return sdxl(
            "a dragon", num_inference_steps=2, generator=torch.Generator().manual_seed(7), output_type="pt"
        ).images

    first = run()
    assert torch.equal(first, run())
    other = tiny_sdxl_pipeline(seed=0)("a dragon", num_inference_steps=2, generator=torch.Generator().manual_seed(7), output_type="pt").images
    assert torch.equal(first, other)


def test_stable_audio_durations_and_reproducibility():
    pipe = tiny_stable_audio_pipeline(0)
    rate = pipe.vae.config.sampling_rate
    assert rate == TINY_STABLE_AUDIO["sampling_rate"]
    assert pipe.transformer.config.sample_size * pipe.vae.hop_length / rate == pytest.approx(
        TINY_STABLE_AUDIO["max_seconds"]
    )
    for seconds in (0.5, 2.0):
        out = pipe("rain", audio_end_in_s=seconds, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
        assert out.audios.shape == (1, 2, int(seconds * rate))
    a = pipe("rain", audio_end_in_s=2.0, num_inference_steps=2, generator=torch.Generator().manual_seed(5)).audios
    b = tiny_stable_audio_pipeline(0)(
        "rain", audio_end_in_s=2.0, num_inference_steps=2, generator=torch.Generator().manual_seed(5)
    ).audios
    assert torch.equal(a, b)


# -- tokenizers ------------------------------------------------------------------------


def test_clip_tokenizer_layout_and_roundtrip():
    tok = clip_tokenizer()
    vocab = tok.get_vocab()
    assert len(vocab) <= 1000
    assert tok.bos_token == "<|startoftext|>" and tok.eos_token == "<|endoftext|>"
    assert tok.eos_token_id == len(vocab) - 1 and tok.bos_token_id == len(vocab) - 2
    assert tok.pad_token_id == tok.eos_token_id and tok.model_max_length == 77
    ids = tok("The brave girl walks through the dark forest").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert 8 <= len(ids) - 2 < 30  # several tokens, merged below one per character
    assert tok.unk_token_id not in ids[1:-1]
    assert tok.decode(ids, skip_special_tokens=True) == "the brave girl walks through the dark forest"
    # the most frequent corpus words are single tokens
    for word, _ in Counter(w for w in corpus_words() if w.isalpha()).most_common(5):
        assert tok.tokenize(word) == [word + "</w>"]
    # any byte encodes (no unknown tokens), as CLIP's byte-level vocab guarantees
    weird = tok("Zürich 42 ¿qué?").input_ids[1:-1]
    assert weird and tok.eos_token_id not in weird
    padded = tok("hi", padding="max_length", max_length=77).input_ids
    assert len(padded) == 77 and padded[-1] == tok.eos_token_id


def test_clip_tokenizer_smaller_vocab():
    tok = clip_tokenizer(vocab_size=600)
    assert len(tok.get_vocab()) == 600
    with pytest.raises(ValueError, match="at least 514"):
        clip_tokenizer(vocab_size=100)


def test_learn_bpe_merges_reference():
    # Hand-computed: "low</w>" x5, "lower</w>" x2, "newest</w>" x6, "widest</w>" x3.
    words = Counter({"low": 5, "lower": 2, "newest": 6, "widest": 3})
    merges = learn_bpe_merges(words, 3)
    # counts: (e,s)=9, (s,t</w>)=9, (l,o)=7, (o,w)=7 ... ties broken by string order: ('e','s') < ('s','t</w>')
    assert merges[0] == ("e", "s")
    # after merging es: (es, t</w>) = 9 is the unique maximum
    assert merges[1] == ("es", "t</w>")
    # then (l,o)=7 and (o,w)=5 (+2 "o","w" in lower = 7): tie -> ('l','o') first
    assert merges[2] == ("l", "o")


def test_tokenizers_deterministic_across_processes():
    code = (
        "import json; from storysdk.tiny import clip_tokenizer, t5_tokenizer; "
        "c = clip_tokenizer(); t = t5_tokenizer(); "
        "print(json.dumps([sorted(c.get_vocab().items()), c('a dragon flies over the quiet village').input_ids, "
        "t('a dragon flies over the quiet village').input_ids]))"
    )
    outs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert outs[0] == outs[1]
    here = clip_tokenizer()
    assert json.loads(outs[0])[1] == here("a dragon flies over the quiet village").input_ids


def test_tokenizers_are_cache_free():
    # speed is measured in benchmarks/, not asserted here
    a = clip_tokenizer()
    b = clip_tokenizer()
    t5 = t5_tokenizer()
    assert a is not b and a.get_vocab() == b.get_vocab()
    assert t5 is not t5_tokenizer()


def test_t5_tokenizer_layout():
    tok = t5_tokenizer()
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1 and tok.unk_token_id == 2
    assert len(tok) <= 1000
    ids = tok("the dragon sleeps").input_ids
    assert ids[-1] == tok.eos_token_id
    pieces = tok.convert_ids_to_tokens(ids[:-1])
    assert pieces[:2] == ["\u2581the", "\u2581dragon"]  # corpus words are whole pieces
    assert tok.unk_token_id not in ids
    assert "".join(pieces).replace("\u2581", " ").strip() == "the dragon sleeps"
    # the most frequent corpus word gets the first word piece
    most = Counter(w for w in corpus_words() if w.isalpha()).most_common(1)[0][0]
    assert tok.convert_ids_to_tokens(tok("x " + most).input_ids)[-2] == "\u2581" + most


@pytest.mark.parametrize(
    "build", [tiny_sdxl_text_components, tiny_sdxl_components, tiny_stable_audio_components], ids=lambda f: f.__name__
)
def test_builders_leave_the_global_rng_untouched(build) -> None:
    import torch

    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    build(seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
