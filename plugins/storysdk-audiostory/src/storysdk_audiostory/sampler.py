"""Flow-matching Euler sampler with classifier-free guidance (docs/audiostory.md §1.6, §9).

Schedule: ``sigmas = linspace(1, 1/n, n)`` then a final 0 (FlowMatchEulerDiscrete with
1000 train steps and shift 1.0, so timesteps are ``1000 * sigma``); the DiT receives
``t / 1000`` shaped (1,). CFG batch: unconditional first; ``v = v_u + g (v_c - v_u)``;
Euler ``x <- x + (sigma_next - sigma) v`` in float32. Several clips go through in one batch
``[u_1..u_B, c_1..c_B]``; each clip's result equals its one-clip run (the tests check it).
Imports torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .dit import TangoFluxDiT

__all__ = ["flow_schedule", "sample_latents"]

NUM_TRAIN_TIMESTEPS = 1000  # FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000), §1.6


def flow_schedule(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmas with the final 0, shape (steps+1,); timesteps ``1000 * sigma``, shape (steps,)), float32."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    sig = np.linspace(1.0, 1.0 / steps, steps).astype(np.float32)
    timesteps = torch.from_numpy(sig * np.float32(NUM_TRAIN_TIMESTEPS))
    sigmas = torch.cat([torch.from_numpy(sig), torch.zeros(1)])
    return sigmas, timesteps


@torch.no_grad()
def sample_latents(
    dit: TangoFluxDiT,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    pooled_cond: torch.Tensor,
    pooled_uncond: torch.Tensor,
    durations: torch.Tensor,
    noise: torch.Tensor,
    *,
    steps: int,
    guidance: float,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Sample B clips at once; returns float32 latents (B, L, C).

    ``cond``/``uncond``: (B, S, D) token states (without the duration token);
    ``pooled_*``: (B, D') after ``fc``; ``durations``: (B,) seconds; ``noise``: (B, L, C).
    ``guidance <= 1`` runs the conditional branch only.
    """
    device, dtype = dit.device, dit.dtype
    cfg = guidance > 1.0
    dur = dit.duration_emebdder(durations.to(device=device, dtype=torch.float32)).to(dtype)
    ctx = torch.cat([cond.to(device, dtype), dur], dim=1)
    pooled = pooled_cond.to(device, dtype)
    if cfg:
        ctx = torch.cat([torch.cat([uncond.to(device, dtype), dur], dim=1), ctx], dim=0)
        pooled = torch.cat([pooled_uncond.to(device, dtype), pooled], dim=0)
    sigmas, timesteps = flow_schedule(steps)
    x = noise.to(device=device, dtype=torch.float32)
    for i in range(steps):
        t = (timesteps[i] / NUM_TRAIN_TIMESTEPS).reshape(1).to(device)
        inp = torch.cat([x, x]) if cfg else x
        v = dit.velocity(inp.to(dtype), t, ctx, pooled).float()
        if cfg:
            v_u, v_c = v.chunk(2)
            v = v_u + guidance * (v_c - v_u)
        x = x + (sigmas[i + 1] - sigmas[i]).item() * v
        if on_step is not None:
            on_step(i + 1, steps)
    return x
