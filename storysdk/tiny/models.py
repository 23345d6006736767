"""Tiny presets: the real diffusers architectures at toy size, with seeded random weights.

Built offline in code (no hub, no files), in well under a second, and bit-reproducible:
``torch.manual_seed`` is set before each module, as diffusers' own fast tests do, inside a
fork of the global RNG so the caller's random numbers are untouched
(docs/reference/plugin-conventions.md §5). Tokenizers come from :mod:`storysdk.tiny.tokenizers`.

The tiny SDXL keeps SDXL's *shape*, which the StoryDiffusion plugin relies on: a VAE that
down-samples 8x, a UNet with three resolution levels (no attention at full latent size,
cross-attention at 1/2 and 1/4 of the latent, i.e. 1/16 and 1/32 of the image), the
"text_time" added conditioning, and two CLIP text encoders whose hidden sizes add up to
the cross-attention width. Importing this module does not import torch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, TypeVar

from ..errors import ConfigError

_T = TypeVar("_T")

if TYPE_CHECKING:
    from diffusers import StableAudioPipeline, StableDiffusionXLPipeline

__all__ = [
    "TINY_SDXL",
    "TINY_STABLE_AUDIO",
    "tiny_sdxl_components",
    "tiny_sdxl_pipeline",
    "tiny_sdxl_text_components",
    "tiny_stable_audio_components",
    "tiny_stable_audio_pipeline",
]

#: Sizes of the tiny SDXL (read-only; build with :func:`tiny_sdxl_components`).
TINY_SDXL: Mapping[str, Any] = MappingProxyType({
    "text_hidden": 32,  # each CLIP text encoder; cross_attention_dim = 32 + 32
    "text_layers": 4,
    "text_vocab": 1000,
    "pooled_dim": 32,  # projection_dim of text_encoder_2
    "time_embed_dim": 8,  # addition_time_embed_dim; 6 size/crop numbers each
    "unet_channels": (16, 32, 64),
    "vae_channels": (8, 8, 16, 16),
    "sample_size": 8,  # latent size -> default 64x64 images
})

#: SDXL's default scheduler settings (stable-diffusion-xl-base-1.0 scheduler_config.json).
_SDXL_SCHEDULER: Mapping[str, Any] = MappingProxyType({
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
})



def _keeps_global_rng(fn: Callable[..., _T]) -> Callable[..., _T]:
    """Run ``fn`` in a fork of the global torch RNG: its ``manual_seed`` calls never leak out."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        import torch

        with torch.random.fork_rng(devices=[]):
            return fn(*args, **kwargs)

    return wrapper


def _scheduler(name: str | None, defaults: Mapping[str, Any], default_cls: str) -> Any:
    import diffusers

    cls_name = name or default_cls
    cls = getattr(diffusers, cls_name, None)
    if cls is None or not cls_name.endswith("Scheduler") or not hasattr(cls, "from_config"):
        raise ConfigError(
            f"scheduler {cls_name!r} is not a diffusers scheduler class; use for example "
            "'EulerDiscreteScheduler', 'DDIMScheduler' or 'DPMSolverMultistepScheduler'"
        )
    return cls.from_config(dict(defaults))


@_keeps_global_rng
def tiny_sdxl_text_components(seed: int = 0) -> dict[str, Any]:
    """The text side of the tiny SDXL: ``text_encoder``, ``text_encoder_2``, ``tokenizer``, ``tokenizer_2``.

    The weights equal those of :func:`tiny_sdxl_components` with the same ``seed``.
    """
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .tokenizers import clip_tokenizer

    t = TINY_SDXL
    tokenizer = clip_tokenizer(vocab_size=t["text_vocab"])
    tokenizer_2 = clip_tokenizer(vocab_size=t["text_vocab"])
    text_cfg: dict[str, Any] = dict(
        vocab_size=t["text_vocab"],
        hidden_size=t["text_hidden"],
        intermediate_size=37,
        num_hidden_layers=t["text_layers"],
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg, hidden_act="quick_gelu"))
    torch.manual_seed(seed)
    text_encoder_2 = CLIPTextModelWithProjection(
        CLIPTextConfig(**text_cfg, hidden_act="gelu", projection_dim=t["pooled_dim"])
    )
    text_encoder.eval()
    text_encoder_2.eval()
    return {
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
    }


@_keeps_global_rng
def tiny_sdxl_components(seed: int = 0, scheduler: str | None = None) -> dict[str, Any]:
    """The components of a tiny SDXL pipeline (``StableDiffusionXLPipeline(**components)``).

    Same ``seed``: bit-identical weights. ``scheduler`` is a diffusers scheduler class name
    (default ``EulerDiscreteScheduler``, as SDXL base).
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    t = TINY_SDXL
    text = tiny_sdxl_text_components(seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=t["sample_size"],
        in_channels=4,
        out_channels=4,
        block_out_channels=t["unet_channels"],
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        transformer_layers_per_block=(1, 1, 2),
        attention_head_dim=(2, 4, 8),  # SDXL's field name; it is the number of heads (8-dim heads)
        norm_num_groups=8,
        cross_attention_dim=2 * t["text_hidden"],
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=t["time_embed_dim"],
        projection_class_embeddings_input_dim=t["pooled_dim"] + 6 * t["time_embed_dim"],
        flip_sin_to_cos=True,
        freq_shift=0,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=t["vae_channels"],
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=8 * t["sample_size"],
        scaling_factor=0.13025,  # SDXL's VAE scaling factor
    )
    unet.eval()
    vae.eval()
    return {
        "unet": unet,
        "vae": vae,
        **text,
        "scheduler": _scheduler(scheduler, _SDXL_SCHEDULER, "EulerDiscreteScheduler"),
        "image_encoder": None,
        "feature_extractor": None,
    }


def tiny_sdxl_pipeline(seed: int = 0, scheduler: str | None = None) -> StableDiffusionXLPipeline:
    """A tiny :class:`~diffusers.StableDiffusionXLPipeline` (default 64x64 images), see the module doc."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(**tiny_sdxl_components(seed, scheduler))
    pipe.set_progress_bar_config(disable=True)
    return pipe


#: Sizes of the tiny Stable Audio: 8 kHz stereo, hop 160, at most 1024 latent frames (20.48 s).
TINY_STABLE_AUDIO: Mapping[str, Any] = MappingProxyType({
    "sampling_rate": 8000,
    "downsampling_ratios": (2, 8, 10),
    "latent_frames": 1024,
    "max_seconds": 20.48,
    "t5_vocab": 1000,
})


@_keeps_global_rng
def tiny_stable_audio_components(seed: int = 0) -> dict[str, Any]:
    """The components of a tiny ``StableAudioPipeline``: T5 encoder, Oobleck VAE, projection, DiT."""
    import torch
    from diffusers import (
        AutoencoderOobleck,
        EDMDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioProjectionModel,
    )
    from transformers import T5Config, T5EncoderModel

    from .tokenizers import t5_tokenizer

    a = TINY_STABLE_AUDIO
    tokenizer = t5_tokenizer(vocab_size=a["t5_vocab"], model_max_length=32)
    torch.manual_seed(seed)
    transformer = StableAudioDiTModel(
        sample_size=a["latent_frames"],
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        num_key_value_attention_heads=1,
        out_channels=4,
        cross_attention_dim=16,
        time_proj_dim=16,
        global_states_input_dim=32,  # seconds_start and seconds_end, 16 each
        cross_attention_input_dim=16,
    )
    torch.manual_seed(seed)
    vae = AutoencoderOobleck(
        encoder_hidden_size=4,
        downsampling_ratios=list(a["downsampling_ratios"]),
        channel_multiples=[1, 2, 2],
        decoder_channels=4,
        decoder_input_channels=4,
        audio_channels=2,
        sampling_rate=a["sampling_rate"],
    )
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=a["t5_vocab"],
            d_model=16,
            d_kv=4,
            d_ff=32,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
    )
    torch.manual_seed(seed)
    projection_model = StableAudioProjectionModel(
        text_encoder_dim=16, conditioning_dim=16, min_value=0, max_value=a["max_seconds"]
    )
    # Stable Audio Open uses CosineDPMSolverMultistepScheduler, which needs the optional
    # torchsde package; the tiny preset uses its torchsde-free EDM sibling with the same
    # v-prediction, sigma_data and exponential sigma schedule.
    scheduler = EDMDPMSolverMultistepScheduler(
        sigma_min=0.3,
        sigma_max=500.0,
        sigma_data=1.0,
        sigma_schedule="exponential",
        prediction_type="v_prediction",
        solver_order=2,
    )
    for module in (transformer, vae, text_encoder, projection_model):
        module.eval()
    return {
        "transformer": transformer,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "projection_model": projection_model,
        "scheduler": scheduler,
    }


def tiny_stable_audio_pipeline(seed: int = 0) -> StableAudioPipeline:
    """A tiny :class:`~diffusers.StableAudioPipeline`: stereo at 8 kHz, clips up to 20.48 s."""
    from diffusers import StableAudioPipeline

    pipe = StableAudioPipeline(**tiny_stable_audio_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe
