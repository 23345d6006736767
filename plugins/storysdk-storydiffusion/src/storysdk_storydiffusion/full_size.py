"""A full-size SDXL with random weights: SDXL's compute and memory without downloading weights.

Used by ``benchmarks/storydiffusion.py --full``. The UNet, VAE and text encoders have the
shapes of ``stabilityai/stable-diffusion-xl-base-1.0`` (UNet: 2.57 B parameters, up-block
self-attention 30 layers at 1/32 and 6 at 1/16 of the image, docs/storydiffusion.md §1.2); the
tokenizers are the offline tiny ones (token ids only index the first rows of the embeddings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["SDXL_UNET_CONFIG", "random_sdxl_pipeline"]

#: stable-diffusion-xl-base-1.0's unet/config.json (the fields that differ from diffusers' defaults).
SDXL_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "norm_num_groups": 32,
}

_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}


def random_sdxl_pipeline(device: torch.device, dtype: torch.dtype, seed: int = 0) -> Any:
    """A ``StableDiffusionXLPipeline`` of SDXL's size with seeded random weights, built on ``device``."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from storysdk.runtime import seeded
    from storysdk.tiny import clip_tokenizer

    tok = clip_tokenizer(vocab_size=1000)
    common = dict(
        vocab_size=1000,
        max_position_embeddings=77,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with seeded(seed, devices=(device,) if torch.device(device).type == "cuda" else ()), torch.device(device):
        unet = UNet2DConditionModel(**SDXL_UNET_CONFIG)
        vae = AutoencoderKL(**_VAE_CONFIG)
        te1 = CLIPTextModel(
            CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                           num_attention_heads=12, hidden_act="quick_gelu", **common)
        )
        te2 = CLIPTextModelWithProjection(
            CLIPTextConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                           num_attention_heads=20, hidden_act="gelu", projection_dim=1280, **common)
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading", clip_sample=False, set_alpha_to_one=False,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok, tokenizer_2=clip_tokenizer(vocab_size=1000),
        unet=unet, scheduler=scheduler,
    )
    pipe = pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe
