"""Tokenizer ``seed-story-vit``: pictures -> ViT features (§1.1) and the LLM's image inputs (§1.2).

For each scene it encodes the picture the story already holds for it (``ctx.story.images``),
else the image file named by ``scene.metadata["image"]``. The tokens carry ``features``
(256 x D, what the de-tokenizer and the output resampler speak) and ``llm_inputs``
(the input resampler's 64 x hidden vectors that overwrite the LLM's image positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from storysdk.errors import ConfigError
from storysdk.interfaces import RenderContext, Tokenizer
from storysdk.model import Scene, Tokens, load_image

from .options import ModelOptions
from .planner import IMAGE_EMBEDS

__all__ = ["SeedStoryViTTokenizer"]


class SeedStoryViTTokenizer(Tokenizer):
    """The Qwen-VL ViT-G with attention pool plus SEED-Story's input/output resamplers.

    Options: ``preset``, ``pretrained`` (§1.6 folder), ``architecture``, ``vit`` (``qwen_vit_G.pt``
    or a Qwen-VL-Chat folder), ``resamplers`` (the george_sft file holding them), ``device``, ``dtype``.
    """

    name: ClassVar[str] = "seed-story-vit"
    produces: ClassVar[str] = IMAGE_EMBEDS
    needs_gpu: ClassVar[bool] = False
    tiny_preset: ClassVar[bool] = True
    description: ClassVar[str] = "SEED-Story visual tokenizer: Qwen-VL ViT-G (448 px) + resamplers"

    def __init__(self, *, preset: str | None = None, pretrained: str = "pretrained", architecture: str | None = None,
                 vit: str | None = None, resamplers: str | None = None, device: str | None = None,
                 dtype: str | None = None, seed: int = 0) -> None:
        self.options = ModelOptions(preset, pretrained, architecture, device, dtype, seed)
        self.vit_source, self.resampler_source = vit, resamplers
        self._models: tuple[Any, Any, Any] | None = None

    def models(self) -> tuple[Any, Any, Any]:
        """(ViT, input resampler, output resampler) on the device."""
        if self._models is None:
            import torch

            from .checkpoints import load_exact, read_state_dict, split_prefix
            from .loading import _resamplers, layout_path

            opts = self.options
            device, dtype = opts.device(), opts.dtype()
            vit = opts.vit(self.vit_source)
            if opts.tiny:
                torch.manual_seed(opts.seed * 10 + 1)  # the tiny MLLM's resampler stream (loading._SEED_RES)
                inp, out = _resamplers(opts.sizes, opts.sizes.llm.hidden_size)
            else:
                state = read_state_dict(self.resampler_source or layout_path(opts.pretrained, "sft"))
                inp, out = _resamplers(opts.sizes, opts.sizes.vit.output_dim)
                for prefix, mod in (("input_resampler.", inp), ("output_resampler.", out)):
                    load_exact(mod, split_prefix(state, prefix), what=prefix[:-1], prefix=prefix,
                               recomputable=["pos_embed"])
            self._models = tuple(m.to(device, dtype).eval() for m in (vit, inp, out))  # type: ignore[assignment]
        return self._models  # type: ignore[return-value]

    def encode(self, images: Sequence[Any]) -> tuple[Any, Any]:
        """(features (B, 256, D), llm_inputs (B, 64, hidden)) of RGB PIL images, float32 on CPU."""
        import torch

        from .preprocess import preprocess

        vit, inp, _ = self.models()
        p = next(vit.parameters())
        with torch.no_grad():
            feats = vit(preprocess(list(images)).to(p.device, p.dtype))
            return feats.float().cpu(), inp(feats).float().cpu()

    def tokenize(self, scenes: Sequence[Scene], ctx: RenderContext) -> list[Tokens]:
        images = [self._image_of(s, ctx) for s in scenes]
        if not images:
            return []
        feats, llm_inputs = self.encode(images)
        return [Tokens(kind=IMAGE_EMBEDS, made_by=self.name, tensors={"features": f, "llm_inputs": x},
                       metadata={"source": "vit"}) for f, x in zip(feats, llm_inputs)]

    @staticmethod
    def _image_of(scene: Scene, ctx: RenderContext) -> Any:
        story = ctx.story
        if story is not None and scene.index in story.images:
            return story.images[scene.index].image
        if scene.metadata.get("image"):
            return load_image(scene.metadata["image"], what=f"scene {scene.index} image")
        raise ConfigError(
            f"scene {scene.index} has no picture for the seed-story-vit tokenizer: render it first or set "
            "metadata.image to an image file"
        )
