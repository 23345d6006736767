"""``clip-text``: SDXL's two CLIP text encoders as a storysdk tokenizer (``"sdxl-text"`` tokens).

Text encoding then runs apart from denoising (and can be cached in the output folder);
``diffusers-image`` and SDXL-based plugins consume the tokens. The tensors are exactly
what diffusers' ``StableDiffusionXLPipeline.encode_prompt`` returns, because that method
does the encoding: an image made from the tokens equals one made from the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError
from ..interfaces import RenderContext, Tokenizer
from ..model import Scene, Tokens
from ..options import DeviceOptions, Field
from .diffusers_image import (
    DEFAULT_SDXL,
    SDXL_TOKEN_KIND,
    SINGLE_FILE_SUFFIXES,
    TINY_MODEL_NAME,
    check_model_path,
    check_offload,
    scene_prompts,
)

__all__ = ["ClipTextTokenizer"]


class ClipTextTokenizer(Tokenizer):
    """Encodes each scene's prompt with SDXL's ``text_encoder`` and ``text_encoder_2``.

    Each scene gets ``Tokens(kind="sdxl-text")`` with ``prompt_embeds`` (1, 77, hidden1+hidden2),
    ``pooled_prompt_embeds`` (1, pooled), and the same two for the negative prompt, on the
    CPU. ``metadata`` records the prompt and negative prompt that were encoded.

    The options are declared in :class:`Options`: ``model`` (SDXL folder or hub id; only the
    text encoders and tokenizers are loaded), the shared ``preset``/``device``/``dtype``/
    ``offload``/``weights_seed`` (:class:`~storysdk.options.DeviceOptions`; ``preset="tiny"``
    is the text side of the tiny SDXL, the same weights as ``diffusers-image``'s tiny preset
    with the same ``weights_seed``; ``offload`` keeps the encoders on the CPU between calls,
    on CUDA), ``negative_prompt`` and ``style`` (``None``: the plan's; the style is applied
    with :func:`storysdk.styles.apply_style` so the tokens match what ``diffusers-image``
    would encode with the same options; the tokenizer defines no styles of its own), and
    ``clip_skip`` (layers skipped from the end of the first encoder, as diffusers'
    ``clip_skip``). An empty negative prompt gives zero negative embeddings (SDXL's
    ``force_zeros_for_empty_prompt``). Building it loads nothing; the encoders load at the
    first :meth:`tokenize`.
    """

    name: ClassVar[str] = "clip-text"
    description: ClassVar[str] = "SDXL's two CLIP text encoders: prompt and pooled embeddings per scene"
    produces: ClassVar[str] = SDXL_TOKEN_KIND
    needs_gpu: ClassVar[bool] = True
    tiny_preset: ClassVar[bool] = True

    class Options(DeviceOptions):
        model: str | Path | None = Field(
            None,
            description=f"SDXL diffusers folder or hub id (its text encoders and tokenizers are loaded); "
            f"None: {DEFAULT_SDXL}",
        )
        negative_prompt: str | None = Field(None, description="negative prompt; None: the plan's")
        style: str | None = Field(
            None, description="style template applied to each prompt (storysdk.styles); None: the plan's"
        )
        clip_skip: int | None = Field(
            None, ge=0, description="layers skipped from the end of the first text encoder, as diffusers' clip_skip"
        )

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from ..runtime import resolve_weights

        opts = self.options
        self._model = str(opts.model) if opts.model is not None else DEFAULT_SDXL
        # offline; 'auto' decides here (a model path that does not exist is an error)
        self._weights = resolve_weights(opts.preset, self._model, who=f"{self.kind} {self.name!r}")
        self._preset = self._weights.preset
        if self._preset == "full":
            self._model = check_model_path(self._model)
            if self._model.endswith(SINGLE_FILE_SUFFIXES):
                raise ConfigError(
                    f"clip-text cannot load the single file {self._model!r}; give the diffusers folder "
                    "or hub id of the model (its text_encoder and text_encoder_2 subfolders)"
                )
        self._encoder: Any = None
        self._device: Any = None

    @property
    def weights(self) -> str:
        """The weights this tokenizer uses, as recorded in ``run.json`` (``"tiny"``, ``"tiny (fallback: ...)"`` or the model)."""
        return str(self._weights) if self._preset == "tiny" else self._model

    @property
    def model_name(self) -> str:
        """The model as recorded in token metadata (``"tiny-sdxl"`` for the tiny preset)."""
        return TINY_MODEL_NAME if self._preset == "tiny" else self._model

    def load(self) -> Any:
        """Load the text encoders now (otherwise at the first :meth:`tokenize`); returns the encoder pipeline."""
        if self._encoder is None:
            from ..runtime import apply_offload, resolve

            opts = self.options
            who = f"tokenizer {self.name!r}"
            r = resolve(who, preset=self._preset, model=self._model, device=opts.device, dtype=opts.dtype)
            check_offload(who, opts.offload, r.device)
            from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

            if r.preset == "tiny":
                from ..tiny import tiny_sdxl_text_components

                text = tiny_sdxl_text_components(opts.weights_seed)
                # unet/vae None: only encode_prompt is used; the scheduler is never stepped.
                pipe = StableDiffusionXLPipeline(
                    vae=None, unet=None, scheduler=EulerDiscreteScheduler(), **text
                )
            else:
                from ..runtime import dtype_kwargs, load_pretrained_pipeline

                # every text-encoder key accounted for; a broken file is named (CheckpointError)
                pipe = load_pretrained_pipeline(
                    StableDiffusionXLPipeline, self._model, what="model", unet=None, vae=None, **dtype_kwargs(r.dtype)
                )
            for enc in (pipe.text_encoder, pipe.text_encoder_2):
                if enc is not None:
                    # with offload the encoders stay on the CPU; accelerate's hooks move them per call
                    enc.to(dtype=r.dtype, device=r.device if opts.offload is None else None)
            if opts.offload is not None:
                apply_offload(pipe, opts.offload, r.device)
            self._encoder = pipe
            self._device = r.device
        return self._encoder

    def tokenize(self, scenes: Sequence[Scene], ctx: RenderContext) -> list[Tokens]:
        """One ``sdxl-text`` :class:`Tokens` per scene; all scenes are encoded in one batch."""
        import torch

        if not scenes:
            return []
        pipe = self.load()
        opts = self.options
        prompts = [scene_prompts(s, ctx.plan, opts.style, opts.negative_prompt) for s in scenes]
        negatives = [n for _, n in prompts]
        # diffusers zeroes the negative embeddings only when negative_prompt is None.
        negative_arg = None if all(n is None for n in negatives) else [n or "" for n in negatives]
        # the cancellation point after loading, before the encoders run (the pipeline's callback may raise)
        ctx.report(0, len(scenes), None, f"encoding {len(scenes)} prompt(s)")
        with torch.no_grad():
            embeds, neg_embeds, pooled, neg_pooled = pipe.encode_prompt(
                [p for p, _ in prompts],
                device=self._device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=True,
                negative_prompt=negative_arg,
                clip_skip=opts.clip_skip,
            )
        out = []
        for i, (prompt, negative) in enumerate(prompts):
            out.append(
                Tokens(
                    kind=SDXL_TOKEN_KIND,
                    made_by=self.name,
                    tensors={
                        "prompt_embeds": embeds[i : i + 1].cpu(),
                        "pooled_prompt_embeds": pooled[i : i + 1].cpu(),
                        "negative_prompt_embeds": neg_embeds[i : i + 1].cpu(),
                        "negative_pooled_prompt_embeds": neg_pooled[i : i + 1].cpu(),
                    },
                    metadata={
                        "prompt": prompt,
                        "negative_prompt": negative,
                        "model": self.model_name,
                        "clip_skip": opts.clip_skip,
                    },
                )
            )
        return out
