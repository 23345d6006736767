"""Generators ``audiostory`` and ``tangoflux``: TangoFlux DiT + Oobleck VAE, all clips in batches.

Both render a scene's clip as docs/audiostory.md §1.6-§1.7 describe: CFG flow sampling in the DiT's
fixed latent window, VAE decode, trim to the clip's length, resample to 32 kHz. They differ in
the conditioning:

* ``audiostory`` consumes the ``tangoflux-cond`` tokens of the ``audiostory-bridge`` tokenizer
  (64 fused LLM query states); unconditional branch = Flan-T5 of ``""`` padded to 64 tokens,
  pooled by a plain mean (§1.6, §9);
* ``tangoflux`` encodes the scene's prompt with Flan-T5 (its own length); unconditional branch =
  ``""`` padded to that length; pooled by a masked mean (§2).

**Crossfade padding.** §1.7 generates every clip but the story's last ``crossfade`` seconds
longer (3 s) so that a crossfade join of that length gives a story of about the planned total.
The generators do this padding and record it in ``AudioAsset.metadata["crossfade"]``; give the
``soundtrack`` composer the same crossfade (``crossfade=3.0``) so the joined length is
``sum(durations)``; with ``crossfade=0`` here, join with a hard cut. ``tangoflux`` defaults to 0
(plain TangoFlux renders independent clips).

**Seeds (deliberate deviation).** Upstream re-seeds the global CPU generator to 0 for every clip,
so all clips share one initial noise (§9). Here each clip's noise comes from a CPU generator
seeded with ``ctx.scene_seed(scene)``, so a clip is the same alone or in a batch and clips
differ; ``noise_seed=0`` restores the upstream behaviour.

**Batching.** All clips of a call go through the DiT together (CFG batch ``2 x clips``), chunked
by ``dit_batch`` (``None``: all on CPU, sized from free GPU memory on CUDA); clips whose text
lengths differ (``tangoflux``) are batched by length, since the DiT attends to every context
token. VAE decoding runs ``vae_batch`` clips at a time (it is the memory-hungry part).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
from storysdk.errors import ConfigError
from storysdk.interfaces import Generator, RenderContext
from storysdk.model import AudioAsset, Scene

from . import constants as C

if TYPE_CHECKING:
    import torch

    from .runtime import AudioRuntime

__all__ = ["AudioStoryGenerator", "TangoFluxGenerator"]

COND_KIND = "tangoflux-cond"


@attrs.define(eq=False)
class _Job:
    scene: Scene
    cond: Any  # (1, S, D)
    cond_mask: Any | None  # (1, S) or None (AudioStory: no mask)
    duration: float
    pad: float
    seed: int

    @property
    def seconds(self) -> float:
        return self.duration + self.pad


class _DiTGenerator(Generator):
    modality = "audio"
    batching = True
    needs_gpu = True
    tiny_preset = True
    default_steps: ClassVar[int] = C.AUDIOSTORY_STEPS
    default_guidance: ClassVar[float] = C.AUDIOSTORY_GUIDANCE

    def __init__(
        self,
        *,
        preset: str | None = None,
        checkpoint: str | None = None,
        vae: str | None = None,
        text_encoder: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        crossfade: float | None = None,
        target_sr: int = C.TARGET_SAMPLE_RATE,
        noise_seed: int | None = None,
        dit_batch: int | None = None,
        vae_batch: int = 1,
        seed: int = 0,
    ) -> None:
        self.preset = preset
        self.checkpoint = checkpoint
        self.vae_path = vae
        self.text_encoder = text_encoder
        self.device = device
        self.dtype = dtype
        self.steps = int(steps if steps is not None else self.default_steps)
        self.guidance = float(guidance if guidance is not None else self.default_guidance)
        self.crossfade = float(crossfade if crossfade is not None else self._default_crossfade())
        self.target_sr = int(target_sr)
        self.noise_seed = noise_seed
        self.dit_batch = dit_batch
        self.vae_batch = int(vae_batch)
        self.seed = int(seed)
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")
        if self.crossfade < 0:
            raise ConfigError(f"crossfade must be >= 0 seconds, got {self.crossfade}")
        if self.target_sr <= 0:
            raise ConfigError(f"target_sr must be a positive number of Hz, got {target_sr}")
        if dit_batch is not None and dit_batch < 1:
            raise ConfigError(f"dit_batch must be >= 1 (or None for automatic), got {dit_batch}")
        if self.vae_batch < 1:
            raise ConfigError(f"vae_batch must be >= 1, got {vae_batch}")
        self._rt: AudioRuntime | None = None

    def _default_crossfade(self) -> float:
        return C.CROSSFADE_SECONDS

    # -- models ------------------------------------------------------------------------------
    def runtime(self) -> AudioRuntime:
        """The loaded DiT, VAE and text encoder (loaded on first use)."""
        if self._rt is None:
            from .loading import load_audio_runtime

            self._rt = load_audio_runtime(
                preset=self.preset,
                checkpoint=self.checkpoint,
                vae=self.vae_path,
                text_encoder=self.text_encoder,
                device=self.device,
                dtype=self.dtype,
                seed=self.seed,
                component=self.name,
            )
        return self._rt

    # -- per-scene conditioning (subclasses) ---------------------------------------------------
    def _conditioning(self, scene: Scene, rt: AudioRuntime) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _uncond(self, length: int, rt: AudioRuntime) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    # -- rendering ---------------------------------------------------------------------------
    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
        """Yield one 32 kHz stereo :class:`AudioAsset` per scene, batch by batch."""
        if not scenes:
            return
        rt = self.runtime()
        plan_indices = [s.index for s in ctx.plan.scenes] or [s.index for s in scenes]
        last = max(plan_indices)
        jobs: list[_Job] = []
        for scene in sorted(scenes, key=lambda s: s.index):
            duration = float(scene.duration) if scene.duration is not None else C.TANGOFLUX_DEFAULT_DURATION
            pad = self.crossfade if scene.index != last else 0.0
            if duration + pad > rt.clip_seconds + 1e-6:
                raise ConfigError(
                    f"scene {scene.index}: {duration:.2f} s (+{pad:.2f} s crossfade padding) is longer than the "
                    f"{rt.clip_seconds:.2f} s the DiT renders in one clip; split the scene or shorten it"
                )
            cond, mask = self._conditioning(scene, rt)
            seed = int(self.noise_seed) if self.noise_seed is not None else ctx.scene_seed(scene)
            jobs.append(_Job(scene, cond, mask, duration, pad, seed))
        groups: dict[int, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(int(job.cond.shape[1]), []).append(job)
        done = 0
        for length, group in groups.items():
            size = self.dit_batch or _auto_batch(rt, length, len(group))
            for start in range(0, len(group), size):
                chunk = group[start : start + size]
                for asset in self._render_chunk(chunk, length, rt, ctx, done, len(jobs)):
                    done += 1
                    yield asset

    def _render_chunk(
        self, chunk: list[_Job], length: int, rt: AudioRuntime, ctx: RenderContext, done: int, total: int
    ) -> Iterator[AudioAsset]:
        import torch
        from storysdk.runtime import cpu_generator
        from storysdk.audio import resample

        from .sampler import sample_latents

        dit = rt.dit
        cond = torch.cat([j.cond for j in chunk]).to(rt.device, rt.dtype)
        masks = [j.cond_mask for j in chunk]
        u_states, u_mask = self._uncond(length, rt)
        uncond = u_states.expand(len(chunk), -1, -1)
        with torch.no_grad():
            if masks[0] is None:  # AudioStory: plain means (§1.6)
                pooled_c = dit.pooled(cond)
                pooled_u = dit.pooled(uncond)
            else:  # TangoFlux: masked means (§2)
                pooled_c = dit.pooled(cond, torch.cat(masks).to(rt.device))
                pooled_u = dit.pooled(uncond, u_mask.expand(len(chunk), -1))
        noise = torch.cat(
            [
                torch.randn((1, dit.audio_seq_len, dit.in_channels), generator=cpu_generator(j.seed))
                for j in chunk
            ]
        )
        durations = torch.tensor([j.seconds for j in chunk], dtype=torch.float32)
        first = chunk[0].scene.index

        def on_step(i: int, n: int) -> None:
            ctx.report(i, n, first, f"DiT step {i}/{n} for {len(chunk)} clip(s)")

        latents = sample_latents(
            dit, cond, uncond, pooled_c, pooled_u, durations, noise,
            steps=self.steps, guidance=self.guidance, on_step=on_step,
        )
        rate = rt.sample_rate
        for start in range(0, len(chunk), self.vae_batch):
            part = chunk[start : start + self.vae_batch]
            waves = rt.decode(latents[start : start + len(part)]).cpu().numpy()
            for job, wave in zip(part, waves):
                clip = wave[:, : int(job.seconds * rate)]  # trim, §1.7
                samples = resample(clip, rate, self.target_sr) if self.target_sr != rate else clip
                ctx.report(done + 1, total, job.scene.index, "clip decoded")
                done += 1
                yield AudioAsset(
                    job.scene.index,
                    samples,
                    sample_rate=self.target_sr,
                    made_by=self.name,
                    metadata={
                        "duration": job.duration,
                        "generated_seconds": job.seconds,
                        "crossfade": job.pad,
                        "noise_seed": job.seed,
                        "steps": self.steps,
                        "guidance": self.guidance,
                    },
                )


def _auto_batch(rt: AudioRuntime, length: int, count: int) -> int:
    """All clips on CPU; on CUDA as many as half the free memory holds (rough activation estimate)."""
    import torch

    if rt.device.type != "cuda":
        return count
    free, _ = torch.cuda.mem_get_info(rt.device)
    tokens = rt.dit.audio_seq_len + length + 1
    width = rt.dit.transformer.inner_dim
    per_clip = 2 * tokens * width * 4 * 12 * torch.finfo(rt.dtype).bits // 8
    return max(1, min(count, int(0.5 * free // max(per_clip, 1))))


class AudioStoryGenerator(_DiTGenerator):
    """AudioStory's DiT path (docs/audiostory.md §1.6-§1.7) on the ``tangoflux-cond`` tokens of each scene.

    Options: ``preset`` ("tiny" or the released weights), ``checkpoint`` (the AudioStory release
    folder: ``config.yaml`` + ``pytorch_model.bin``), ``vae`` (folder with the Oobleck
    ``config.json`` + ``model.safetensors``), ``text_encoder`` (local flan-t5-large, for the
    unconditional embedding only), ``steps`` (50), ``guidance`` (4.0), ``crossfade`` (3.0 s of
    padding on every clip but the last), ``target_sr`` (32000), ``noise_seed`` (None: per-scene
    seeds; 0: upstream), ``dit_batch``, ``vae_batch``, ``device``, ``dtype``.
    """

    name = "audiostory"
    description = "AudioStory: TangoFlux DiT + Oobleck VAE on the LLM's fused bridging queries (32 kHz stereo)"
    consumes = (COND_KIND,)

    def _conditioning(self, scene: Scene, rt: AudioRuntime) -> tuple[torch.Tensor, None]:
        tok = scene.tokens.get(COND_KIND)
        if tok is None:
            raise ConfigError(
                f"scene {scene.index} has no {COND_KIND!r} tokens; run the 'audiostory-bridge' tokenizer on a plan "
                "from the 'audiostory' planner, or use the 'tangoflux' generator for scenes from other planners"
            )
        cond = tok["cond"]
        if cond.ndim == 2:
            cond = cond[None]
        if cond.shape[-1] != rt.dit.text_dim:
            raise ConfigError(
                f"scene {scene.index}: conditioning width {cond.shape[-1]} does not match the DiT's {rt.dit.text_dim}; "
                "use the same preset/checkpoint for the bridge tokenizer and the generator"
            )
        return cond, None

    def _uncond(self, length: int, rt: AudioRuntime) -> tuple[torch.Tensor, torch.Tensor]:
        # the only text AudioStory encodes is "" (§1.5): keep the cache, release the encoder
        states = rt.uncond_states(length)
        rt.drop_text_encoder()
        return states


class TangoFluxGenerator(_DiTGenerator):
    """Plain TangoFlux text-to-audio (docs/audiostory.md §2) from each scene's prompt (or caption).

    Voices scenes from any planner, e.g. StoryDiffusion frames. ``checkpoint``: TangoFlux's
    release folder (``config.json``, ``tangoflux.safetensors``, ``vae.safetensors``; the Flan-T5
    tokenizer comes from ``text_encoder``) or the AudioStory release folder, whose fine-tuned DiT
    is then used. Defaults as ``TangoFluxInference.generate``: 25 steps, guidance 4.5; no
    crossfade padding unless ``crossfade`` is set.
    """

    name = "tangoflux"
    description = "TangoFlux text-to-audio (Flan-T5 -> DiT -> Oobleck VAE) for scenes from any planner"
    default_steps = C.TANGOFLUX_STEPS
    default_guidance = C.TANGOFLUX_GUIDANCE

    def _default_crossfade(self) -> float:
        return 0.0

    def _conditioning(self, scene: Scene, rt: AudioRuntime) -> tuple[torch.Tensor, torch.Tensor]:
        text = scene.prompt or scene.caption
        if not text.strip():
            raise ConfigError(f"scene {scene.index} has no prompt or caption for TangoFlux to voice; give it one")
        return rt.encode_caption(text)

    def _uncond(self, length: int, rt: AudioRuntime) -> tuple[torch.Tensor, torch.Tensor]:
        return rt.uncond_states(length)
