"""Generator ``seed-story-detokenizer``: regressed ViT features -> SDXL image (§1.5).

The perceiver resampler turns (256, D) features into SDXL's prompt embeddings (64 x 2048) and
pooled vector (1280); they replace the text conditioning of an SDXL pipeline built without
text encoders. The negative conditioning is the same resampler applied to the ViT features
of an all-zeros 448x448 input, computed once per loaded model and reused. Euler, 50 steps,
guidance 7.5, 1024x1024 by default (the tiny preset: 64x64).

Deviation: upstream draws every frame from ``seed=42`` (the same noise for every frame);
here each scene is seeded from ``ctx.scene_seed(scene)`` unless ``fixed_seed=42`` is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import attrs
from storysdk.errors import ConfigError
from storysdk.interfaces import Generator, RenderContext
from storysdk.model import ImageAsset, Scene

from .constants import GUIDANCE_SCALE, IMAGE_SIZE, NUM_INFERENCE_STEPS
from .options import ModelOptions
from .planner import IMAGE_EMBEDS

__all__ = ["SeedStoryDetokenizer"]

START_MODES = ("keep", "render")


class SeedStoryDetokenizer(Generator):
    """SEED-Story's SDXL de-tokenizer (the adapted "Detokenizer-George", §1.5).

    Options: ``preset``, ``pretrained`` (§1.6 folder), ``architecture``, ``sdxl`` (SDXL base
    folder), ``checkpoint`` (adapted de-tokenizer file), ``vit`` (for the negative), ``steps``
    (50), ``guidance_scale`` (7.5), ``width``/``height`` (default 1024; the plan's size wins),
    ``fixed_seed`` (``42`` reproduces upstream's same-noise frames), ``start_scene``
    (``"keep"``: the start scene shows the user's picture, as upstream's ``000start_image``;
    ``"render"``: reconstruct it through the de-tokenizer), ``device``, ``dtype``, ``offload``.
    """

    name: ClassVar[str] = "seed-story-detokenizer"
    modality: ClassVar[str] = "image"  # type: ignore[assignment]
    consumes: ClassVar[tuple[str, ...]] = (IMAGE_EMBEDS,)
    needs_gpu: ClassVar[bool] = True
    tiny_preset: ClassVar[bool] = True
    description: ClassVar[str] = "SEED-Story de-tokenizer: regressed ViT features -> SDXL image"

    def __init__(
        self,
        *,
        preset: str | None = None,
        pretrained: str = "pretrained",
        architecture: str | None = None,
        sdxl: str | None = None,
        checkpoint: str | None = None,
        vit: str | None = None,
        steps: int = NUM_INFERENCE_STEPS,
        guidance_scale: float = GUIDANCE_SCALE,
        width: int | None = None,
        height: int | None = None,
        fixed_seed: int | None = None,
        start_scene: str = "keep",
        device: str | None = None,
        dtype: str | None = None,
        offload: str | None = None,
        seed: int = 0,
    ) -> None:
        self.options = ModelOptions(preset, pretrained, architecture, device, dtype, seed)
        if not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps must be a whole number >= 1, got {steps!r}")
        if start_scene not in START_MODES:
            raise ConfigError(f"start_scene {start_scene!r} is unknown; use 'keep' or 'render'")
        for label, v in (("width", width), ("height", height)):
            if v is not None and (not isinstance(v, int) or v < 8 or v % 8):
                raise ConfigError(f"{label} must be a multiple of 8 pixels (SDXL's VAE), got {v!r}")
        self.sdxl, self.checkpoint, self.vit_source = sdxl, checkpoint, vit
        self.steps, self.guidance_scale = steps, float(guidance_scale)
        self.width, self.height = width, height
        self.fixed_seed, self.start_scene, self.offload = fixed_seed, start_scene, offload
        self._loaded: _Loaded | None = None

    # -- models -------------------------------------------------------------------------------
    def load(self) -> _Loaded:
        """Build the pipeline, the perceiver and the cached negative (once per instance)."""
        if self._loaded is None:
            self._loaded = _load(self)
        return self._loaded

    def condition(self, features: Any) -> tuple[Any, Any]:
        """(prompt_embeds (B, 64, out1+out2), pooled (B, out2)) for (B, 256, D) features."""
        import torch

        loaded = self.load()
        with torch.no_grad():
            return loaded.perceiver(features.to(loaded.device, loaded.dtype))

    # -- generation -----------------------------------------------------------------------------
    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterable[ImageAsset]:
        import numpy as np
        from PIL import Image

        from storysdk.runtime import cpu_generator

        for scene in scenes:
            tok = scene.tokens.get(IMAGE_EMBEDS)
            if tok is None or "features" not in tok.tensors:
                raise ConfigError(
                    f"scene {scene.index} has no {IMAGE_EMBEDS} tokens: use the seed-story planner, or the "
                    "seed-story-vit tokenizer on scenes that have a picture"
                )
            if self.start_scene == "keep" and "start_image" in tok.tensors:
                arr = np.asarray(tok.tensors["start_image"], dtype=np.uint8)
                yield ImageAsset(scene.index, Image.fromarray(arr, "RGB"), made_by=self.name,
                                 metadata={"source": "start-image"})
                continue
            loaded = self.load()
            import torch

            feats = torch.as_tensor(tok.tensors["features"])
            if feats.ndim == 2:
                feats = feats[None]
            prompt, pooled = self.condition(feats)
            neg_prompt, neg_pooled = loaded.negative
            seed = self.fixed_seed if self.fixed_seed is not None else ctx.scene_seed(scene)
            width = self.width or ctx.plan.width or loaded.default_size
            height = self.height or ctx.plan.height or loaded.default_size

            def on_step(pipe: Any, i: int, t: Any, kw: dict[str, Any], _s: Scene = scene) -> dict[str, Any]:
                ctx.report(i + 1, self.steps, _s.index)
                return kw

            with torch.no_grad():
                image = loaded.pipe(
                    prompt_embeds=prompt, pooled_prompt_embeds=pooled,
                    negative_prompt_embeds=neg_prompt, negative_pooled_prompt_embeds=neg_pooled,
                    guidance_scale=self.guidance_scale, num_inference_steps=self.steps,
                    width=width, height=height, generator=cpu_generator(seed),
                    callback_on_step_end=on_step,
                ).images[0]
            yield ImageAsset(scene.index, image, made_by=self.name, metadata={"seed": seed})


@attrs.define
class _Loaded:
    pipe: Any
    perceiver: Any
    negative: tuple[Any, Any]
    device: Any
    dtype: Any
    default_size: int


def _load(gen: SeedStoryDetokenizer) -> _Loaded:
    import torch
    from diffusers import StableDiffusionXLPipeline

    from .loading import layout_path, load_detokenizer_weights, tiny_perceiver
    from .perceiver import PerceiverResampler

    opts = gen.options
    device, dtype = opts.device(), opts.dtype()
    if opts.tiny:
        from storysdk.tiny import tiny_sdxl_components

        parts = tiny_sdxl_components(seed=opts.seed)
        unet, vae, scheduler = parts["unet"], parts["vae"], parts["scheduler"]
    else:
        from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel

        folder = str(gen.sdxl or layout_path(opts.pretrained, "sdxl"))
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
        scheduler = EulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")  # §1.5
    cfg = _perceiver_config(opts.sizes.perceiver, unet)
    if opts.tiny:
        perceiver = tiny_perceiver(cfg, opts.seed)
    else:
        perceiver = PerceiverResampler(cfg)
        load_detokenizer_weights(unet, perceiver, gen.checkpoint or layout_path(opts.pretrained, "detokenizer"))
    vit = opts.vit(gen.vit_source).to(device, dtype).eval()
    perceiver = perceiver.to(device, dtype).eval()
    with torch.no_grad():  # §1.5 negative: ViT(all-zeros 1x3x448x448), computed once
        zeros = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE, device=device, dtype=dtype)
        negative = perceiver(vit(zeros))
    del vit
    pipe = StableDiffusionXLPipeline(vae=vae, unet=unet, scheduler=scheduler, text_encoder=None, text_encoder_2=None,
                                     tokenizer=None, tokenizer_2=None)
    pipe.set_progress_bar_config(disable=True)
    from storysdk.runtime import apply_offload

    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    apply_offload(pipe, gen.offload, device)
    return _Loaded(pipe, perceiver, negative, device, dtype, opts.sizes.image_size)


def _perceiver_config(cfg: Any, unet: Any) -> Any:
    """Perceiver output sizes read from the UNet: out1 + out2 = cross-attention width,
    out2 = pooled width (projection input minus 6 time ids)."""
    c = unet.config
    pooled = c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim
    out = attrs.evolve(cfg, output1_dim=c.cross_attention_dim - pooled, output2_dim=pooled)
    if out != cfg:
        raise ConfigError(
            f"the SDXL UNet expects {c.cross_attention_dim}-wide prompt embeddings and {pooled}-wide pooled ones; "
            f"the de-tokenizer makes {cfg.output1_dim + cfg.output2_dim} and {cfg.output2_dim}: use an SDXL base UNet"
        )
    return out
