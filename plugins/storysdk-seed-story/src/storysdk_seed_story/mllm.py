"""The MLLM of docs/seed-story.md §1.2-§1.3: a transformers Llama plus the input and output resamplers.

Image features enter the LLM by overwriting the input embeddings at the 64 positions strictly
between each ``<img>``/``</img>`` pair (§2 "Image injection"); the post-final-norm hidden
states at the 64 ``<img_xxxxx>`` positions go through the output resampler (§2 "Regression").
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from .configs import LLMConfig
from .constants import NUM_IMG_TOKENS
from .resampler import Resampler
from .text import SpecialIds

__all__ = ["MLLM", "build_llama"]


def build_llama(cfg: LLMConfig, seed: int) -> Any:
    """A ``LlamaForCausalLM`` of ``cfg`` with seeded random weights (SDPA attention, §1.3)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        vocab_size=cfg.vocab_size,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_theta=cfg.rope_theta,
        max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    from storysdk.runtime import seeded

    with seeded(seed):  # the caller's global RNG is left as it was
        return LlamaForCausalLM(config).eval()


class MLLM:
    """The LLM with its resamplers and special token ids; stateless between calls.

    ``forward`` runs embeddings through the decoder with a KV cache and returns the
    post-final-norm hidden states of every fed position and the logits of the last one.
    """

    def __init__(self, llm: Any, input_resampler: Resampler, output_resampler: Resampler, tokenizer: Any, ids: SpecialIds) -> None:
        self.llm = llm
        self.input_resampler = input_resampler
        self.output_resampler = output_resampler
        self.tokenizer = tokenizer
        self.ids = ids
        self._free_masked = torch.tensor([*ids.img, ids.eoi], dtype=torch.long)
        # transformers 5 renamed the decoder's ``past_key_values`` argument to ``cache``
        params = inspect.signature(llm.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._pass_cache_position = "cache_position" in params

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    def embed_ids(self, ids: list[int]) -> torch.Tensor:
        """(1, len(ids), hidden) token embeddings."""
        t = torch.tensor([ids], dtype=torch.long, device=self.device)
        return self.llm.get_input_embeddings()(t)

    def image_positions(self, ids: list[int]) -> list[int]:
        """Positions strictly between each BOI/EOI pair, in order (§2 ``ids_cmp_mask``)."""
        out: list[int] = []
        boi = None
        for i, t in enumerate(ids):
            if t == self.ids.boi:
                boi = i
            elif t == self.ids.eoi and boi is not None:
                out.extend(range(boi + 1, i))
                boi = None
        return out

    def llm_inputs(self, features: torch.Tensor) -> torch.Tensor:
        """input_resampler: (n, 256, D) regressed/ViT features -> (n, 64, hidden)."""
        return self.input_resampler(features.to(self.device, self.dtype))

    def inject(self, ids: list[int], features: torch.Tensor | None) -> torch.Tensor:
        """Embeddings of ``ids`` with the image positions overwritten by ``input_resampler(features)``."""
        emb = self.embed_ids(ids)
        pos = self.image_positions(ids)
        n = 0 if features is None else features.shape[0]
        if len(pos) != n * NUM_IMG_TOKENS:
            raise ValueError(f"{len(pos)} image positions in the prompt but {n} images of {NUM_IMG_TOKENS} tokens")
        if n:
            emb = emb.clone()
            emb[0, pos] = self.llm_inputs(features).reshape(n * NUM_IMG_TOKENS, -1)
        return emb

    def forward(self, embeds: torch.Tensor, cache: Any, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed ``embeds`` (1, L, H) at positions ``start..start+L-1``; the cache grows in place.

        Returns (hidden (L, H) after the final RMSNorm, logits of the last position (V,)).
        """
        positions = torch.arange(start, start + embeds.shape[1], device=self.device)[None]
        kwargs: dict[str, Any] = {self._cache_arg: cache}
        if self._pass_cache_position:
            kwargs["cache_position"] = positions[0]
        out = self.llm.model(inputs_embeds=embeds, position_ids=positions, use_cache=True, **kwargs)
        hidden = out.last_hidden_state[0]
        logits = self.llm.lm_head(hidden[-1:]).float()[0]
        return hidden, logits

    def pick(self, logits: torch.Tensor) -> int:
        """Greedy choice with §2's ``AutoImageTokenGenerationProcessor`` in free mode:
        the logits of ``<img_00000>``..``</img>`` are set to 0.0 (not -inf); ``<img>`` is free."""
        scores = logits.clone()
        scores[self._free_masked.to(scores.device)] = 0.0
        return int(torch.argmax(scores))

    def regress(self, hidden: torch.Tensor) -> torch.Tensor:
        """output_resampler: (64, hidden) states -> (256, D) regressed ViT features (float32, CPU)."""
        return self.output_resampler(hidden[None].to(self.dtype))[0].float().cpu()
