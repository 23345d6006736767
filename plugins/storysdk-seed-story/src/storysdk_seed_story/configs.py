"""Model sizes, torch-free: the ``released`` architecture (docs/seed-story.md §1.1-§1.5) and ``tiny`` (the same
modules at toy size, for tests, CI and the offline demo). Component modules import this at
registration time, so it must not import torch."""

from __future__ import annotations

import attrs

__all__ = ["ARCHITECTURES", "LLMConfig", "PerceiverConfig", "Sizes", "ViTConfig", "sizes_for"]


@attrs.frozen
class ViTConfig:
    """Sizes of the ViT (defaults: the released ViT-G, §1.1)."""

    image_size: int = 448
    patch_size: int = 14
    width: int = 1664
    layers: int = 48
    heads: int = 16
    mlp_ratio: float = 4.9231
    output_dim: int = 4096
    n_queries: int = 256
    pool_heads: int = 32  # output_dim // 128 in Qwen-VL

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)


@attrs.frozen
class PerceiverConfig:
    """Sizes of the perceiver (defaults: the released de-tokenizer, §1.5)."""

    dim: int = 1024
    depth: int = 4
    dim_head: int = 64
    heads: int = 16
    num_queries: int = 64
    embedding_dim: int = 4096
    output1_dim: int = 768
    output2_dim: int = 1280
    ff_mult: int = 4
    normalize: bool = True  # §1.5 step 1; SEED-X-17B uses False (§1.0)


@attrs.frozen
class LLMConfig:
    """Llama sizes (the full preset reads Llama-2-7b-hf's config.json instead)."""

    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 128
    vocab_size: int = 322
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0  # §1.3 RoPE base 1e4
    max_position_embeddings: int = 4096




@attrs.frozen
class Sizes:
    """ViT, MLLM resampler heads, LLM (tiny only; the released LLM reads its config.json), perceiver."""

    vit: ViTConfig
    resampler_heads: int
    llm: LLMConfig
    perceiver: PerceiverConfig
    image_size: int  # default picture size of the de-tokenizer


RELEASED = Sizes(
    vit=ViTConfig(),
    resampler_heads=32,  # §1.2 nn.MultiheadAttention(4096, 32)
    llm=LLMConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, intermediate_size=11008,
                  vocab_size=32066),  # Llama-2-7B (§1.3)
    perceiver=PerceiverConfig(),
    image_size=1024,  # §1.5
)

# Tiny: the spec's token geometry is kept (448-px input, 14-px patches, 256 ViT tokens,
# 64 LLM image tokens, 64 perceiver queries); only widths and depths shrink.
TINY = Sizes(
    vit=ViTConfig(width=32, layers=2, heads=4, output_dim=64, pool_heads=4),
    resampler_heads=4,
    llm=LLMConfig(),
    perceiver=PerceiverConfig(dim=32, depth=2, dim_head=8, heads=4, embedding_dim=64, output1_dim=32, output2_dim=32),
    image_size=64,
)

ARCHITECTURES = {"released": RELEASED, "tiny": TINY}


def sizes_for(architecture: str) -> Sizes:
    from storysdk.errors import ConfigError

    try:
        return ARCHITECTURES[architecture]
    except KeyError:
        raise ConfigError(f"architecture {architecture!r} is unknown; use 'released' or 'tiny'") from None
