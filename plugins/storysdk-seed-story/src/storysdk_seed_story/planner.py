"""Planner ``seed-story``: the interleaved story writer of §2.

``plan(request)`` returns scene 0 (the start image and its caption, with the ViT features of
the image as tokens); ``step(ctx)`` writes each next scene: greedy text, then the image block,
whose regressed features (output resampler, 256xD) are attached to the scene as
``Tokens(kind="seed-story-image-embeds")`` and fed back as history. The loop's state (prompt,
image features, or the KV cache in sink mode) lives in ``ctx.state``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar, Literal

from storysdk.errors import ConfigError
from storysdk.interfaces import Planner, StepContext
from storysdk.model import Scene, StoryPlan, StoryRequest, Tokens, load_image
from storysdk.options import Field

from .constants import INST, MAX_NEW_TOKENS, STORY_LEN, WINDOW_SIZE
from .options import ResidentOptions, Setup, build_vit, setup

__all__ = ["IMAGE_EMBEDS", "SeedStoryPlanner"]

IMAGE_EMBEDS = "seed-story-image-embeds"
_STATE_KEY = "seed-story"
TINY_TEXT_TOKENS = 24  # tiny preset: random weights rarely choose <img> themselves


class SeedStoryPlanner(Planner):
    """SEED-Story's MLLM (Llama-2-7B + LoRA merged at scale 2.0, §1.3) writing scene after scene.

    The options (``storysdk plugins --options seed-story``) are declared in :class:`Options`;
    the defaults are the release's (window 8, 500 new tokens per step, 25 scenes, greedy, the
    prompt re-encoded every step). ``max_text_tokens="auto"`` means ``None`` (faithful: the model
    alone decides when to start its picture) for real weights and 24 for the tiny preset, whose
    random weights would otherwise write text until the 500-token budget and end the story.

    Deviation: in sink mode (``sink_cache=True``, the §2 attention-sink KV cache reused across
    steps) the text stays as generated token ids instead of being decoded, stripped and
    re-tokenized each step as the release does.
    """

    name: ClassVar[str] = "seed-story"
    interleaved: ClassVar[bool] = True
    needs_gpu: ClassVar[bool] = True
    tiny_preset: ClassVar[bool] = True
    description: ClassVar[str] = "SEED-Story: interleaved story text and regressed image features (Llama-2 MLLM)"

    class Options(ResidentOptions):
        window: int = Field(WINDOW_SIZE, ge=1, description="images kept in the MLLM's context (docs/seed-story.md §2: 8)")
        max_new_tokens: int = Field(MAX_NEW_TOKENS, ge=1, description="new tokens per step, the image block included (§2: 500)")
        num_scenes: int = Field(
            STORY_LEN, ge=1,
            description="scenes in all, the start picture included (§2: 25); the request's num_scenes wins",
        )
        sink_cache: bool = Field(
            False, description="reuse the KV cache across steps with §2's attention-sink eviction (off: the release's re-prefill)"
        )
        image_block: Literal["one-pass", "stepwise"] = Field(
            "one-pass",
            description="the forced 66-token image block in one forward pass, or 'stepwise' (one call per token, "
            "as upstream's generate; the same tokens)",
        )
        max_text_tokens: Annotated[int, Field(ge=0)] | Literal["auto"] | None = Field(
            "auto",
            description="force <img> after this many text tokens; None: the model decides (faithful); 'auto': None "
            "for real weights, 24 for the tiny preset",
            json_schema_extra={"constraint": ">= 0 when a number"},
        )

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._setup: Setup = setup(f"planner {self.name!r}", self.options)
        limit = self.options.max_text_tokens
        self.max_text_tokens: int | None = (TINY_TEXT_TOKENS if self._setup.tiny else None) if limit == "auto" else limit
        self._models: tuple[Any, Any] | None = None

    def models(self) -> tuple[Any, Any]:
        """(ViT, MLLM), loaded on first use and moved to the device."""
        if self._models is None:
            from .loading import load_mllm, tiny_mllm

            s = self._setup
            vit = build_vit(s, self.options.vit).to(s.device, s.dtype)
            lm = tiny_mllm(s.sizes, s.weights_seed) if s.tiny else load_mllm(s.pretrained, s.sizes, s.dtype)
            lm.llm.to(s.device, s.dtype)
            lm.input_resampler.to(s.device, s.dtype)
            lm.output_resampler.to(s.device, s.dtype)
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

    def check_plan(self, plan: StoryPlan) -> None:
        """The scenes must be this planner's: the first with its ViT features, each later one with
        its text and regressed features (what a resumed run replays, §2 history). Loads nothing."""
        _history(plan.scenes, self._setup.sizes.vit.output_dim)

    def step(self, ctx: StepContext) -> Scene | None:
        limit = ctx.request.num_scenes or self.options.num_scenes
        index = ctx.next_index
        if index >= limit:
            return None
        _, lm = self.models()

        def report(done: int, total: int) -> None:  # before every LLM forward call: the cancellation point
            ctx.report(done, total, index, f"scene {index}: {done}/{total} tokens")

        state = ctx.state.get(_STATE_KEY)
        if state is None:
            state = self._resume(ctx.plan.scenes, lm, lambda done, total: ctx.report(
                done, total, index, f"replaying the story so far: {done}/{total} forward calls"))
            ctx.state[_STATE_KEY] = state
        try:
            out = state.step(lm, self.options.max_new_tokens, self.options.image_block, self.max_text_tokens, report)
        except BaseException:
            # stopped mid-step (cancelled): a sink cache holds part of the step; the next step replays the scenes
            ctx.state.pop(_STATE_KEY, None)
            raise
        if out.features is None:  # §2: the story ends when no image is produced
            return None
        caption = out.text[len(INST):].strip() if out.text.startswith(INST) else out.text
        tokens = Tokens(kind=IMAGE_EMBEDS, made_by=self.name, tensors={"features": out.features},
                        metadata={"source": "regressed"})
        return Scene(index=index, prompt=caption, caption=caption,
                     metadata={"seed_story": "generated", "raw_text": out.text, "text_ids": list(out.text_ids),
                               "context_tokens": out.context_tokens},
                     tokens={IMAGE_EMBEDS: tokens})

    def _resume(self, scenes: Sequence[Scene], lm: Any, report: Callable[[int, int], None] | None = None) -> Any:
        """The loop's state after the scenes written so far (only the start scene in a fresh run).

        ``report`` comes before each forward call of a sink-mode replay (the cancellation point)."""
        from .story import PrefillStory, SinkStory

        caption, feats, steps = _history(scenes, self._setup.sizes.vit.output_dim)
        window = self.options.window
        if self.options.sink_cache:
            return SinkStory.replay(lm, caption, feats, steps, window, report=report)
        return PrefillStory.replay(caption, feats, steps, window)


def _features(scene: Scene, width: int) -> Any:
    import torch

    tok = scene.tokens.get(IMAGE_EMBEDS)
    if tok is None or "features" not in tok.tensors:
        raise ConfigError(
            f"scene {scene.index} has no {IMAGE_EMBEDS} tokens: plan the story with the seed-story planner "
            "(it encodes the start image and regresses each next picture's features)"
        )
    feats = torch.as_tensor(tok.tensors["features"])
    if feats.ndim != 2 or feats.shape[-1] != width:
        raise ConfigError(
            f"scene {scene.index}: {IMAGE_EMBEDS} features of shape {tuple(feats.shape)}, this planner's ViT makes "
            f"(256, {width}); the plan was written with another architecture or preset"
        )
    return feats


def _history(scenes: Sequence[Scene], width: int) -> tuple[str, Any, list[tuple[str, list[int], Any]]]:
    """(first caption, its ViT features, [(text, text ids, regressed features) of each later scene])."""
    ordered = sorted(scenes, key=lambda s: s.index)
    if not ordered:
        raise ConfigError("the seed-story planner continues a plan from its first scene; the plan has no scenes")
    first, later = ordered[0], ordered[1:]
    steps = []
    for scene in later:
        text, ids = scene.metadata.get("raw_text"), scene.metadata.get("text_ids")
        if not isinstance(text, str) or not isinstance(ids, list):
            raise ConfigError(
                f"scene {scene.index} was not written by the seed-story planner (no raw_text/text_ids in its "
                "metadata): start a new story from the first scene"
            )
        steps.append((text, [int(t) for t in ids], _features(scene, width)))
    return first.prompt, _features(first, width), steps
