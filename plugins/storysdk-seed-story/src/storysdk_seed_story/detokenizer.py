"""Generator ``seed-story-detokenizer``: regressed ViT features -> SDXL image (§1.5).

The perceiver resampler turns (256, D) features into SDXL's prompt embeddings (64 x 2048) and
pooled vector (1280); they replace the text conditioning of an SDXL pipeline built without
text encoders. The negative conditioning is the same resampler applied to the ViT features
of an all-zeros 448x448 input, computed once per loaded model and reused. Euler, 50 steps,
guidance 7.5, 1024x1024 by default (the tiny preset: 64x64).

Deviation: upstream draws every frame from ``seed=42`` (the same noise for every frame);
here each scene is seeded from ``ctx.scene_seed(scene)`` unless ``noise_seed=42`` is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs
from storysdk.errors import ConfigError
from storysdk.interfaces import Generator, RenderContext
from storysdk.model import ImageAsset, Scene, StoryPlan
from storysdk.options import Field

from .constants import GUIDANCE_SCALE, IMAGE_SIZE, NUM_INFERENCE_STEPS
from .options import SeedStoryOptions, Setup, build_vit, setup
from .planner import IMAGE_EMBEDS

__all__ = ["SeedStoryDetokenizer"]


class SeedStoryDetokenizer(Generator):
    """SEED-Story's SDXL de-tokenizer (the adapted "Detokenizer-George", §1.5).

    Options: ``storysdk plugins --options seed-story-detokenizer`` (declared in :class:`Options`).
    Faithful defaults: Euler, 50 steps, guidance 7.5, 1024x1024 (the plan's size wins; the tiny
    preset: 64x64), the negative from the ViT of an all-zeros input. ``start_scene="keep"`` shows
    the user's picture for the start scene, as upstream's ``000start_image``; ``"render"``
    reconstructs it through the de-tokenizer.
    """

    name: ClassVar[str] = "seed-story-detokenizer"
    modality: ClassVar[str] = "image"  # type: ignore[assignment]
    consumes: ClassVar[tuple[str, ...]] = (IMAGE_EMBEDS,)
    needs_gpu: ClassVar[bool] = True
    tiny_preset: ClassVar[bool] = True
    description: ClassVar[str] = "SEED-Story de-tokenizer: regressed ViT features -> SDXL image"

    class Options(SeedStoryOptions):
        sdxl: str | Path | None = Field(
            None, description="SDXL base folder (scheduler/, unet/, vae/); unset: stable-diffusion-xl-base-1.0 under pretrained"
        )
        checkpoint: str | Path | None = Field(
            None,
            description="the adapted de-tokenizer file (unet.*, resampler.*, §1.5); unset: "
            "detokenizer/detokenizer_george_adapted/checkpoint-4000/pytorch_model.bin under pretrained",
        )
        steps: int = Field(NUM_INFERENCE_STEPS, ge=1, le=1000, description="Euler denoising steps (docs/seed-story.md §1.5: 50)")
        guidance_scale: float = Field(GUIDANCE_SCALE, ge=0, description="classifier-free guidance scale (§1.5: 7.5)")
        width: int | None = Field(
            None, ge=8, multiple_of=8, description="picture width, pixels (multiple of 8, SDXL's VAE); unset: the plan's, else 1024"
        )
        height: int | None = Field(
            None, ge=8, multiple_of=8, description="picture height, pixels (multiple of 8); unset: the plan's, else 1024"
        )
        noise_seed: int | None = Field(
            None,
            description="the same initial noise for every frame from this seed (42 reproduces upstream, §1.5); "
            "unset: each scene its own (ctx.scene_seed)",
        )
        start_scene: Literal["keep", "render"] = Field(
            "keep", description="'keep': the start scene shows the user's picture (upstream); 'render': de-tokenize it too"
        )

        renamed: ClassVar[Mapping[str, str]] = {"seed": "weights_seed", "fixed_seed": "noise_seed"}

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._setup: Setup = setup(f"generator {self.name!r}", self.options)
        if self.options.offload is not None and self._setup.device.type != "cuda":
            raise ConfigError(
                f"generator {self.name!r}: offload={self.options.offload!r} needs a CUDA device (got "
                f"{str(self._setup.device)!r}); drop the offload option on CPU"
            )
        self._loaded: _Loaded | None = None

    def check_plan(self, plan: StoryPlan) -> None:
        """The plan's picture size must suit SDXL's VAE (when no width/height option overrides it),
        and features already in the plan must have the perceiver's width. Loads nothing."""
        for label, own, value in (("width", self.options.width, plan.width), ("height", self.options.height, plan.height)):
            if own is None and value is not None and (value < 8 or value % 8):
                raise ConfigError(
                    f"the plan's {label} {value} is not a multiple of 8 pixels (SDXL's VAE, §1.5): set the story's "
                    f"{label} to a multiple of 8 or the seed-story-detokenizer's {label} option"
                )
        width = self._setup.sizes.perceiver.embedding_dim
        for scene in plan.scenes:
            tok = scene.tokens.get(IMAGE_EMBEDS)
            feats = None if tok is None else tok.tensors.get("features")
            shape = tuple(getattr(feats, "shape", ()))
            if feats is not None and (len(shape) not in (2, 3) or shape[-1] != width):
                raise ConfigError(
                    f"scene {scene.index}: {IMAGE_EMBEDS} features of shape {shape}; this de-tokenizer takes "
                    f"(256, {width}): plan and de-tokenizer must use the same architecture (tiny or released)"
                )

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
            if self.options.start_scene == "keep" and "start_image" in tok.tensors:
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
            opts = self.options
            seed = opts.noise_seed if opts.noise_seed is not None else ctx.scene_seed(scene)
            width = opts.width or ctx.plan.width or loaded.default_size
            height = opts.height or ctx.plan.height or loaded.default_size

            def on_step(pipe: Any, i: int, t: Any, kw: dict[str, Any], _s: Scene = scene) -> dict[str, Any]:
                ctx.report(i + 1, opts.steps, _s.index)
                return kw

            with torch.no_grad():
                image = loaded.pipe(
                    prompt_embeds=prompt, pooled_prompt_embeds=pooled,
                    negative_prompt_embeds=neg_prompt, negative_pooled_prompt_embeds=neg_pooled,
                    guidance_scale=opts.guidance_scale, num_inference_steps=opts.steps,
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

    s, opts = gen._setup, gen.options
    device, dtype = s.device, s.dtype
    if s.tiny:
        from storysdk.tiny import tiny_sdxl_components

        parts = tiny_sdxl_components(seed=s.weights_seed)
        unet, vae, scheduler = parts["unet"], parts["vae"], parts["scheduler"]
    else:
        from .loading import load_sdxl_parts

        folder = str(Path(opts.sdxl).expanduser() if opts.sdxl else layout_path(s.pretrained, "sdxl"))
        unet, vae, scheduler = load_sdxl_parts(folder)  # strict: every key, named files (§1.5)
    cfg = _perceiver_config(s.sizes.perceiver, unet)
    if s.tiny:
        perceiver = tiny_perceiver(cfg, s.weights_seed)
    else:
        perceiver = PerceiverResampler(cfg)
        checkpoint = Path(opts.checkpoint).expanduser() if opts.checkpoint else layout_path(s.pretrained, "detokenizer")
        load_detokenizer_weights(unet, perceiver, checkpoint)
    vit = build_vit(s, opts.vit).to(device, dtype).eval()
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
    apply_offload(pipe, opts.offload, device)
    return _Loaded(pipe, perceiver, negative, device, dtype, s.sizes.image_size)


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
