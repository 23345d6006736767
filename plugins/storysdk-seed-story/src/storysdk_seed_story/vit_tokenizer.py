"""Tokenizer ``seed-story-vit``: pictures -> ViT features (docs/seed-story.md §1.1) and the LLM's image inputs (§1.2).

For each scene it encodes the picture the story already holds for it (``ctx.story.images``),
else the image file named by ``scene.metadata["image"]``. The tokens carry ``features``
(256 x D, what the de-tokenizer and the output resampler speak) and ``llm_inputs``
(the input resampler's 64 x hidden vectors that overwrite the LLM's image positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from storysdk.errors import ConfigError
from storysdk.interfaces import RenderContext, Tokenizer
from storysdk.model import Scene, StoryPlan, Tokens, load_image
from storysdk.options import Field

from .options import ResidentOptions, Setup, build_vit, setup
from .planner import IMAGE_EMBEDS

__all__ = ["SeedStoryViTTokenizer"]


class SeedStoryViTTokenizer(Tokenizer):
    """The Qwen-VL ViT-G with attention pool plus SEED-Story's input/output resamplers.

    Options: ``storysdk plugins --options seed-story-vit`` (declared in :class:`Options`). The
    tiny preset's weights equal the tiny planner's with the same ``weights_seed``.
    """

    name: ClassVar[str] = "seed-story-vit"
    produces: ClassVar[str] = IMAGE_EMBEDS
    needs_gpu: ClassVar[bool] = False
    tiny_preset: ClassVar[bool] = True
    description: ClassVar[str] = "SEED-Story visual tokenizer: Qwen-VL ViT-G (448 px) + resamplers"

    class Options(ResidentOptions):
        resamplers: str | Path | None = Field(
            None,
            description="the file holding input_resampler.*/output_resampler.* (§1.2); unset: "
            "seed_story/george_sft/pytorch_model.bin under pretrained",
        )

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._setup: Setup = setup(f"tokenizer {self.name!r}", self.options)
        self._models: tuple[Any, Any, Any] | None = None

    def models(self) -> tuple[Any, Any, Any]:
        """(ViT, input resampler, output resampler) on the device."""
        if self._models is None:
            from .checkpoints import read_state_dict
            from .loading import layout_path, load_resamplers, tiny_resamplers

            s = self._setup
            vit = build_vit(s, self.options.vit)
            if s.tiny:
                inp, out = tiny_resamplers(s.sizes, s.weights_seed)  # the tiny MLLM's resamplers
            else:
                source = Path(self.options.resamplers or layout_path(s.pretrained, "sft")).expanduser()
                state = read_state_dict(source, what="resampler checkpoint")
                inp, out = load_resamplers(state, s.sizes, s.sizes.vit.output_dim, source=str(source))
            self._models = tuple(m.to(s.device, s.dtype).eval() for m in (vit, inp, out))  # type: ignore[assignment]
        return self._models  # type: ignore[return-value]

    def check_plan(self, plan: StoryPlan) -> None:
        """Every scene without these tokens needs a picture to encode: ``metadata["image"]`` naming an
        image file (or a data: URI). Pictures the story already holds are used first at tokenize
        time; loads nothing."""
        for scene in plan.scenes:
            if IMAGE_EMBEDS in scene.tokens:
                continue
            image = scene.metadata.get("image")
            if not image:
                raise ConfigError(
                    f"scene {scene.index} has no picture for the seed-story-vit tokenizer: set metadata.image to "
                    "an image file (or plan it with the seed-story planner, whose scenes carry their features)"
                )
            if not isinstance(image, str):
                raise ConfigError(f"scene {scene.index}: metadata.image must be a path or a data: URI, got {image!r}")
            if not image.startswith("data:image/") and not Path(image).is_file():
                raise ConfigError(
                    f"scene {scene.index}: metadata.image {image!r} does not exist; give the path of an image file"
                )

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
