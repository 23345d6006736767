"""Running an SDXL pipeline with Consistent Self-Attention: one call per batch of frames.

A :class:`Frame` is one image to render (prompt, negative prompt, initial noise and its
:class:`~.state.Row`); :class:`CSARenderer` installs CSA on the pipeline's UNet for the
lifetime of a run and renders lists of frames in one pipeline call each, driving the state's
step index from ``callback_on_step_end`` (docs/storydiffusion.md §1.10).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch

from .patch import install_csa
from .state import ConsistencyState, Row

__all__ = ["CSARenderer", "Frame", "initial_noise"]


@attrs.define(eq=False)
class Frame:
    """One image of a pipeline call: its texts, its ``(1, C, h, w)`` initial noise and its row."""

    key: Any
    prompt: str
    negative: str
    noise: torch.Tensor
    row: Row


def initial_noise(pipe: Any, count: int, height: int, width: int, seed: int) -> list[torch.Tensor]:
    """``count`` noise tensors drawn as one batch from a fresh CPU generator seeded ``seed``.

    This is what the pipeline draws when upstream calls it with ``generator=Generator(seed)``
    for a batch of ``count`` prompts (docs/storydiffusion.md §2, "Seeds").
    """
    from storysdk.runtime import cpu_generator

    shape = (count, pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    noise = torch.randn(shape, generator=cpu_generator(seed), dtype=torch.float32)
    return list(noise.split(1))


ProgressFn = Callable[[int, int], None]


class CSARenderer:
    """CSA installed on ``pipe`` for one run; :meth:`render` runs one pipeline call.

    Use as a context manager (or call :meth:`close`) to restore the UNet's processors.
    """

    def __init__(
        self,
        pipe: Any,
        state: ConsistencyState,
        *,
        steps: int,
        guidance: float,
        seed: int,
        device: torch.device | None = None,
    ) -> None:
        self.pipe = pipe
        self.state = state
        self.steps = steps
        self.guidance = guidance
        self.seed = seed
        self.device = device if device is not None else pipe.unet.device
        self.handle = install_csa(pipe.unet, state, vae_scale_factor=pipe.vae_scale_factor)
        self.calls = 0

    def render(self, frames: Sequence[Frame], progress: ProgressFn | None = None) -> list[Any]:
        """Render ``frames`` in one UNet batch (CFG-doubled) and return PIL images in their order."""
        from storysdk.runtime import cpu_generator

        state = self.state
        dtype = self.pipe.unet.dtype
        latents = torch.cat([f.noise for f in frames]).to(device=self.device, dtype=dtype)

        def on_step_end(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            state.on_step_end(step)  # the pipeline drives the step index (§1.10)
            if progress is not None:
                progress(step + 1, self.steps)
            return kwargs

        state.begin_call([f.row for f in frames])
        try:
            out = self.pipe(
                prompt=[f.prompt for f in frames],
                negative_prompt=[f.negative for f in frames],
                latents=latents,
                num_inference_steps=self.steps,
                guidance_scale=self.guidance,
                height=state.height,
                width=state.width,
                generator=cpu_generator(self.seed),
                callback_on_step_end=on_step_end,
                output_type="pil",
            )
        finally:
            state.end_call()
        self.calls += 1
        return list(out.images)

    def close(self) -> None:
        self.handle.remove()

    def __enter__(self) -> CSARenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
