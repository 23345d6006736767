"""``clip-text``: SDXL's two CLIP text encoders as a storysdk tokenizer (``"sdxl-text"`` tokens).

Text encoding then runs apart from denoising (and can be cached in the output folder);
``diffusers-image`` and SDXL-based plugins consume the tokens. The tensors are exactly
what diffusers' ``StableDiffusionXLPipeline.encode_prompt`` returns, because that method
does the encoding: an image made from the tokens equals one made from the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from ..errors import ConfigError
from ..interfaces import RenderContext, Tokenizer
from ..model import Scene, Tokens
from .diffusers_image import (
    DEFAULT_SDXL,
    SDXL_TOKEN_KIND,
    SINGLE_FILE_SUFFIXES,
    TINY_MODEL_NAME,
    check_model_path,
    load_error,
    scene_prompts,
)

__all__ = ["ClipTextTokenizer"]


class ClipTextTokenizer(Tokenizer):
    """Encodes each scene's prompt with SDXL's ``text_encoder`` and ``text_encoder_2``.

    Each scene gets ``Tokens(kind="sdxl-text")`` with ``prompt_embeds`` (1, 77, hidden1+hidden2),
    ``pooled_prompt_embeds`` (1, pooled), and the same two for the negative prompt, on the
    CPU. ``metadata`` records the prompt and negative prompt that were encoded.

    Options: ``model`` (SDXL folder or hub id; only the text encoders and tokenizers are
    loaded), ``preset`` (``"tiny"``: the text side of the tiny SDXL, same weights as
    ``diffusers-image``'s tiny preset), ``device``, ``dtype``, ``negative_prompt`` and
    ``style`` (``None``: the plan's; the style is applied with :func:`storysdk.styles.apply_style`
    so the tokens match what ``diffusers-image`` would encode with the same options; the
    tokenizer defines no styles of its own), and ``clip_skip`` (layers skipped from the end
    of the first encoder, as diffusers' ``clip_skip``).
    An empty negative prompt gives zero negative embeddings (SDXL's
    ``force_zeros_for_empty_prompt``).
    """

    name: ClassVar[str] = "clip-text"
    description: ClassVar[str] = "SDXL's two CLIP text encoders: prompt and pooled embeddings per scene"
    produces: ClassVar[str] = SDXL_TOKEN_KIND
    needs_gpu: ClassVar[bool] = True
    tiny_preset: ClassVar[bool] = True

    def __init__(
        self,
        *,
        model: str | None = None,
        preset: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        negative_prompt: str | None = None,
        style: str | None = None,
        clip_skip: int | None = None,
    ) -> None:
        from ..runtime import resolve_preset

        if clip_skip is not None and (not isinstance(clip_skip, int) or clip_skip < 0):
            raise ConfigError(f"clip_skip must be a whole number >= 0 (or None), got {clip_skip!r}")
        self.model = str(model) if model is not None else DEFAULT_SDXL
        self.preset = resolve_preset(preset, self.model)
        if self.preset == "full":
            self.model = check_model_path(self.model)
            if self.model.endswith(SINGLE_FILE_SUFFIXES):
                raise ConfigError(
                    f"clip-text cannot load the single file {self.model!r}; give the diffusers folder "
                    "or hub id of the model (its text_encoder and text_encoder_2 subfolders)"
                )
        self.device = device
        self.dtype = dtype
        self.negative_prompt = negative_prompt
        self.style = style
        self.clip_skip = clip_skip
        self._encoder: Any = None
        self._device: Any = None

    @property
    def model_name(self) -> str:
        return TINY_MODEL_NAME if self.preset == "tiny" else self.model

    def load(self) -> Any:
        """Load the text encoders now (otherwise at the first :meth:`tokenize`); returns the encoder pipeline."""
        if self._encoder is None:
            from ..runtime import require_torch, resolve_device, resolve_dtype

            require_torch(f"tokenizer {self.name!r}")
            device = resolve_device(self.device)
            dtype = resolve_dtype(self.dtype, device)
            from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

            if self.preset == "tiny":
                from ..tiny import tiny_sdxl_text_components

                text = tiny_sdxl_text_components(0)
                # unet/vae None: only encode_prompt is used; the scheduler is never stepped.
                pipe = StableDiffusionXLPipeline(
                    vae=None, unet=None, scheduler=EulerDiscreteScheduler(), **text
                )
            else:
                from ..runtime import dtype_kwargs

                try:
                    pipe = StableDiffusionXLPipeline.from_pretrained(
                        self.model, unet=None, vae=None, **dtype_kwargs(dtype)
                    )
                except (OSError, ValueError) as exc:
                    raise load_error(self.model, exc) from exc
            for enc in (pipe.text_encoder, pipe.text_encoder_2):
                if enc is not None:
                    enc.to(device=device, dtype=dtype)
            self._encoder = pipe
            self._device = device
        return self._encoder

    def tokenize(self, scenes: Sequence[Scene], ctx: RenderContext) -> list[Tokens]:
        """One ``sdxl-text`` :class:`Tokens` per scene; all scenes are encoded in one batch."""
        import torch

        if not scenes:
            return []
        pipe = self.load()
        prompts = [scene_prompts(s, ctx.plan, self.style, self.negative_prompt) for s in scenes]
        negatives = [n for _, n in prompts]
        # diffusers zeroes the negative embeddings only when negative_prompt is None.
        negative_arg = None if all(n is None for n in negatives) else [n or "" for n in negatives]
        with torch.no_grad():
            embeds, neg_embeds, pooled, neg_pooled = pipe.encode_prompt(
                [p for p, _ in prompts],
                device=self._device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=True,
                negative_prompt=negative_arg,
                clip_skip=self.clip_skip,
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
                        "clip_skip": self.clip_skip,
                    },
                )
            )
        return out
