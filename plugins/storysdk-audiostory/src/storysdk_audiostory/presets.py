"""Model sizes and builders: the ``tiny`` preset (toy sizes, seeded random weights, offline) and
the released sizes (for random-weight benchmarks and for building modules that a checkpoint fills).

Every builder seeds inside :func:`storysdk.runtime.seeded` (a forked torch RNG), so it never
disturbs the caller's RNG.
Importing this module does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import constants as C

if TYPE_CHECKING:
    from diffusers import AutoencoderOobleck
    from transformers import Qwen2ForCausalLM, T5EncoderModel

    from .bridge import BridgeHeads
    from .dit import TangoFluxDiT

__all__ = [
    "FULL",
    "TINY",
    "build_bridge",
    "build_dit",
    "build_llm",
    "build_t5",
    "build_vae",
    "vae_clip_seconds",
]

#: The tiny preset. The DiT window is 240 latent frames; the VAE (hop 32 at 256 Hz) turns them
#: into 7,680 samples = exactly 30 s, so durations, the 30 s clamp and the 3 s crossfade keep
#: their real meaning while everything stays small.
TINY: dict[str, Any] = {
    "llm": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
    "t5": dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
               feed_forward_proj="gated-gelu"),
    "t5_vocab": 1000,
    "dit": dict(in_channels=8, num_layers=1, num_single_layers=2, attention_head_dim=16, num_attention_heads=2,
                joint_attention_dim=32, text_dim=32, audio_seq_len=240, max_duration=C.MAX_DURATION,
                axes_dims_rope=(4, 6, 6)),
    "vae": dict(encoder_hidden_size=8, downsampling_ratios=[4, 8], channel_multiples=[1, 2], decoder_channels=8,
                decoder_input_channels=8, audio_channels=2, sampling_rate=256),
    "bridge_dim": 32,
    "fuser_heads": C.FUSER_HEADS,
    "num_t5": C.NUM_T5_TOKENS,
    "num_aud": C.NUM_AUD_TOKENS,
}

#: The released sizes (docs/audiostory.md §1.1, §2, §3): Qwen2.5-3B, flan-t5-large encoder, TangoFlux DiT, Oobleck.
FULL: dict[str, Any] = {
    "llm": dict(
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
    ),
    "llm_vocab": C.RELEASED_VOCAB,
    "t5": dict(d_model=1024, d_kv=64, d_ff=2816, num_layers=24, num_heads=16, relative_attention_num_buckets=32,
               feed_forward_proj="gated-gelu"),
    "t5_vocab": 32128,
    "dit": dict(in_channels=64, num_layers=6, num_single_layers=18, attention_head_dim=128, num_attention_heads=8,
                joint_attention_dim=1024, text_dim=1024, audio_seq_len=C.AUDIO_SEQ_LEN, max_duration=C.MAX_DURATION,
                axes_dims_rope=(16, 56, 56)),
    "vae": dict(encoder_hidden_size=128, downsampling_ratios=[2, 4, 4, 8, 8], channel_multiples=[1, 2, 4, 8, 16],
                decoder_channels=128, decoder_input_channels=64, audio_channels=2, sampling_rate=C.VAE_SAMPLE_RATE),
    "bridge_dim": C.BRIDGE_DIM,
    "fuser_heads": C.FUSER_HEADS,
    "num_t5": C.NUM_T5_TOKENS,
    "num_aud": C.NUM_AUD_TOKENS,
}


def _seeded(seed: int, make: Any) -> Any:
    from storysdk.runtime import seeded

    with seeded(seed):
        module = make()
    return module.eval()


def build_llm(cfg: dict[str, Any], vocab_size: int, seed: int = 0, *, pad_token_id: int | None = None) -> Qwen2ForCausalLM:
    """A Qwen2-architecture causal LM (Qwen2.5 is this architecture) with random weights."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=vocab_size, pad_token_id=pad_token_id, **cfg)
    return _seeded(seed, lambda: Qwen2ForCausalLM(config))


def build_t5(cfg: dict[str, Any], vocab_size: int, seed: int = 0, *, pad_token_id: int = 0, eos_token_id: int = 1) -> T5EncoderModel:
    """A T5 encoder (Flan-T5 layout: gated-GELU feed-forward) with random weights."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=vocab_size, pad_token_id=pad_token_id, eos_token_id=eos_token_id,
                      decoder_start_token_id=pad_token_id, **cfg)
    return _seeded(seed, lambda: T5EncoderModel(config))


def build_dit(cfg: dict[str, Any], seed: int = 0) -> TangoFluxDiT:
    """The TangoFlux DiT of §2 with random weights."""
    from .dit import TangoFluxDiT

    return _seeded(seed, lambda: TangoFluxDiT(**cfg))


def build_vae(cfg: dict[str, Any], seed: int = 0) -> AutoencoderOobleck:
    """An Oobleck VAE (§3) with random weights."""
    import warnings

    from diffusers import AutoencoderOobleck

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        return _seeded(seed, lambda: AutoencoderOobleck(**cfg))


def build_bridge(llm_dim: int, dim: int, heads: int = C.FUSER_HEADS, seed: int = 0) -> BridgeHeads:
    """Projection heads + fuser (§1.5) with random weights."""
    from .bridge import BridgeHeads

    return _seeded(seed, lambda: BridgeHeads(llm_dim, dim, heads))


def vae_clip_seconds(vae_config: Any, audio_seq_len: int) -> float:
    """Seconds of audio that ``audio_seq_len`` latent frames decode to (29.95 s for the release, §3)."""
    ratios = list(vae_config["downsampling_ratios"] if isinstance(vae_config, dict) else vae_config.downsampling_ratios)
    rate = vae_config["sampling_rate"] if isinstance(vae_config, dict) else vae_config.sampling_rate
    hop = 1
    for r in ratios:
        hop *= int(r)
    return audio_seq_len * hop / float(rate)
