"""Planner ``seed-story``: the interleaved story writer of §2.

``plan(request)`` returns scene 0 (the start image and its caption, with the ViT features of
the image as tokens); ``step(ctx)`` writes each next scene: greedy text, then the image block,
whose regressed features (output resampler, 256xD) are attached to the scene as
``Tokens(kind="seed-story-image-embeds")`` and fed back as history. The loop's state (prompt,
image features, or the KV cache in sink mode) lives in ``ctx.state``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from storysdk.errors import ConfigError
from storysdk.interfaces import Planner, StepContext
from storysdk.model import Scene, StoryPlan, StoryRequest, Tokens, load_image

from .constants import INST, MAX_NEW_TOKENS, STORY_LEN, WINDOW_SIZE
from .options import ModelOptions

__all__ = ["IMAGE_EMBEDS", "SeedStoryPlanner"]

IMAGE_EMBEDS = "seed-story-image-embeds"
_STATE_KEY = "seed-story"
TINY_TEXT_TOKENS = 24  # tiny preset: random weights rarely choose <img> themselves


class SeedStoryPlanner(Planner):
    """SEED-Story's MLLM (Llama-2-7B + LoRA merged at scale 2.0, §1.3) writing scene after scene.

    Options: ``preset`` (``"tiny"`` for seeded toy weights), ``pretrained`` (the §1.6 folder),
    ``architecture`` (``released``/``tiny`` sizes; defaults from the preset), ``vit`` (ViT file
    or Qwen-VL-Chat folder), ``window`` (images kept in context, 8), ``max_new_tokens`` (500 per
    step), ``num_scenes`` (25 = start frame + 24, unless the request sets ``num_scenes``),
    ``sink_cache`` (the §2 attention-sink KV cache reused across steps; off, as released),
    ``image_block`` (``"one-pass"``, or ``"stepwise"`` = upstream's 64 forced decode steps),
    ``max_text_tokens`` (force ``<img>`` after that many text tokens; ``None`` = faithful, the
    model alone decides; ``"auto"`` = ``None`` for real weights, 24 for the tiny preset, whose
    random weights would otherwise write text until the 500-token budget and end the story).

    Deviation: in sink mode the text stays as generated token ids instead of being decoded,
    stripped and re-tokenized each step as the release does.
    """

    name: ClassVar[str] = "seed-story"
    interleaved: ClassVar[bool] = True
    needs_gpu: ClassVar[bool] = True
    tiny_preset: ClassVar[bool] = True
    description: ClassVar[str] = "SEED-Story: interleaved story text and regressed image features (Llama-2 MLLM)"

    def __init__(
        self,
        *,
        preset: str | None = None,
        pretrained: str = "pretrained",
        architecture: str | None = None,
        vit: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        window: int = WINDOW_SIZE,
        max_new_tokens: int = MAX_NEW_TOKENS,
        num_scenes: int = STORY_LEN,
        sink_cache: bool = False,
        image_block: str = "one-pass",
        max_text_tokens: int | str | None = "auto",
        seed: int = 0,
    ) -> None:
        from .decode import BLOCK_MODES

        self.options = ModelOptions(preset, pretrained, architecture, device, dtype, seed)
        for label, value in (("window", window), ("max_new_tokens", max_new_tokens), ("num_scenes", num_scenes)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{label} must be a whole number >= 1, got {value!r}")
        if image_block not in BLOCK_MODES:
            raise ConfigError(f"image_block {image_block!r} is unknown; use one of {', '.join(BLOCK_MODES)}")
        self.vit_source = vit
        self.window, self.max_new_tokens, self.num_scenes = window, max_new_tokens, num_scenes
        self.sink_cache, self.image_block = bool(sink_cache), image_block
        if max_text_tokens == "auto":
            max_text_tokens = TINY_TEXT_TOKENS if self.options.tiny else None
        if max_text_tokens is not None and (not isinstance(max_text_tokens, int) or max_text_tokens < 0):
            raise ConfigError(f"max_text_tokens must be None, 'auto' or a whole number >= 0, got {max_text_tokens!r}")
        self.max_text_tokens = max_text_tokens
        self._models: tuple[Any, Any] | None = None

    def models(self) -> tuple[Any, Any]:
        """(ViT, MLLM), loaded on first use and moved to the device."""
        if self._models is None:
            from .loading import load_mllm, tiny_mllm

            opts = self.options
            device, dtype = opts.device(), opts.dtype()
            vit = opts.vit(self.vit_source).to(device, dtype)
            lm = tiny_mllm(opts.sizes, opts.seed) if opts.tiny else load_mllm(opts.pretrained, opts.sizes, dtype)
            lm.llm.to(device, dtype)
            lm.input_resampler.to(device, dtype)
            lm.output_resampler.to(device, dtype)
            self._models = (vit, lm)
        return self._models

    def encode_image(self, image: Any) -> Any:
        """ViT features (256, D), float32 on CPU, of one RGB PIL image (§1.1)."""
        import torch

        from .preprocess import preprocess

        vit, _ = self.models()
        with torch.no_grad():
            pixels = preprocess([image]).to(next(vit.parameters()).device, next(vit.parameters()).dtype)
            return vit(pixels)[0].float().cpu()

    def plan(self, request: StoryRequest) -> StoryPlan:
        import numpy as np
        import torch

        if request.start_image is None:
            raise ConfigError(
                "the seed-story planner continues a story from its first picture: set start_image "
                "(a path or PIL image) and start_caption in the request"
            )
        caption = (request.start_caption or request.prompt or "").strip()
        if not caption:
            raise ConfigError("the seed-story planner needs the first picture's caption: set start_caption (or prompt)")
        image = load_image(request.start_image, what="start_image")
        features = self.encode_image(image)
        tokens = Tokens(
            kind=IMAGE_EMBEDS,
            made_by=self.name,
            tensors={"features": features, "start_image": torch.from_numpy(np.array(image, dtype=np.uint8))},
            metadata={"source": "start-image"},
        )
        scene = Scene(index=0, prompt=caption, caption=caption, metadata={"seed_story": "start"},
                      tokens={IMAGE_EMBEDS: tokens})
        return StoryPlan(scenes=[scene], characters=[], title="", style=request.style,
                         negative_prompt=request.negative_prompt, width=request.width, height=request.height,
                         seed=request.seed, planner=self.name)

    def step(self, ctx: StepContext) -> Scene | None:
        limit = ctx.request.num_scenes or self.num_scenes
        index = ctx.next_index
        if index >= limit:
            return None
        _, lm = self.models()
        state = ctx.state.get(_STATE_KEY)
        if state is None:
            state = self._start(ctx, lm)
            ctx.state[_STATE_KEY] = state
        out = state.step(lm, self.max_new_tokens, self.image_block, self.max_text_tokens)
        if out.features is None:  # §2: the story ends when no image is produced
            return None
        caption = out.text[len(INST):].strip() if out.text.startswith(INST) else out.text
        tokens = Tokens(kind=IMAGE_EMBEDS, made_by=self.name, tensors={"features": out.features},
                        metadata={"source": "regressed"})
        return Scene(index=index, prompt=caption, caption=caption,
                     metadata={"seed_story": "generated", "raw_text": out.text, "context_tokens": out.context_tokens},
                     tokens={IMAGE_EMBEDS: tokens})

    def _start(self, ctx: StepContext, lm: Any) -> Any:
        from .story import PrefillStory, SinkStory

        first = min(ctx.plan.scenes, key=lambda s: s.index)
        tok = first.tokens.get(IMAGE_EMBEDS)
        if tok is None or "features" not in tok.tensors:
            raise ConfigError(
                f"scene {first.index} has no {IMAGE_EMBEDS} tokens: plan the story with the seed-story planner "
                "(it encodes the start image)"
            )
        feats = tok.tensors["features"]
        if not hasattr(feats, "detach"):
            import torch

            feats = torch.as_tensor(feats)
        caption = first.prompt
        if self.sink_cache:
            return SinkStory.start(lm, caption, feats, self.window)
        return PrefillStory.start(caption, feats, self.window)
