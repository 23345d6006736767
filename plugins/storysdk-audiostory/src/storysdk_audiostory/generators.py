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
(plain TangoFlux renders independent clips). In a pipeline the "story" is the generator's
track: ``ctx.plan.scenes`` are the track's cues, so every cue but the one with the highest
index is padded; the ``audiostory`` track planner numbers its cues in time order, so that is
the track's last clip, and :mod:`storysdk.mixing` joins the track's contiguous padded clips
with :func:`storysdk.audio.crossfade_join`, as upstream joins a story.

**Seeds (deliberate deviation).** Upstream re-seeds the global CPU generator to 0 for every clip,
so all clips share one initial noise (§9). Here each clip's noise comes from a CPU generator
seeded with ``ctx.scene_seed(scene)``, so clips differ and a clip's noise does not depend on
the others; ``noise_seed=0`` restores the upstream behaviour.

**Batching.** By default (``dit_batch=1``) each clip goes through the DiT on its own (CFG batch
``[uncond, cond]``), as upstream's per-clip sampling does (docs/audiostory.md §1.6): a clip's
samples then depend on nothing but its own scene, so a story rendered again, a resumed run and
a scene rendered alone give the same bytes. ``dit_batch=N`` (or ``None``: all on CPU, sized from
free GPU memory on CUDA) sends ``N`` clips through together (CFG batch ``2 x N``, the speed-up
of docs/audiostory.md §8); matrix kernels then round differently with the batch size, so clips
differ from one-at-a-time renders by about 1e-6 (§9) and an interrupted run resumes with other
bits for the clips it had not saved. Clips whose text lengths differ (``tangoflux``) are batched
by length, since the DiT attends to every context token. VAE decoding runs ``vae_batch`` clips
at a time (it is the memory-hungry part).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
from pydantic import field_validator
from storysdk.errors import ConfigError
from storysdk.interfaces import Generator, RenderContext
from storysdk.model import AudioAsset, Scene, StoryPlan
from storysdk.options import Field

from . import constants as C
from .options import AudioStoryDeviceOptions, folder_path
from .planner import QUERIES_KIND

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


class _DiTOptions(AudioStoryDeviceOptions):
    """The options both DiT generators declare (their defaults differ: see each subclass)."""

    checkpoint: str | None = Field(
        None,
        description="the AudioStory release folder (config.yaml + pytorch_model.bin); needed unless preset='tiny'",
    )
    vae: str | None = Field(
        None, description="folder of the Oobleck VAE (config.json + model.safetensors), with the AudioStory release"
    )
    text_encoder: str | None = Field(None, description="local flan-t5-large folder (tokenizer, config, encoder)")
    steps: int = Field(
        C.AUDIOSTORY_STEPS, ge=1, description="flow-matching Euler steps of the DiT (docs/audiostory.md §1.6)"
    )
    guidance: float = Field(
        C.AUDIOSTORY_GUIDANCE, ge=0, description="classifier-free guidance scale (docs/audiostory.md §1.6)"
    )
    crossfade: float = Field(
        C.CROSSFADE_SECONDS,
        ge=0,
        description="seconds of padding on every clip but the story's last, for a crossfade join of that length "
        "(docs/audiostory.md §1.7)",
    )
    target_sr: int = Field(
        C.TARGET_SAMPLE_RATE, gt=0, description="sample rate of the clips, Hz (docs/audiostory.md §1.7)"
    )
    noise_seed: int | None = Field(
        None,
        description="seed of every clip's initial noise (None: each scene's own seed; 0: upstream, "
        "docs/audiostory.md §9)",
    )
    dit_batch: int | None = Field(
        1,
        ge=1,
        description="clips per DiT batch; 1: each clip alone, bit-identical however the story is split or resumed; "
        "more (None: all on CPU, sized from free GPU memory on CUDA) is faster but changes the last bits",
    )
    vae_batch: int = Field(1, ge=1, description="clips decoded by the VAE at a time (the memory-hungry part)")

    _paths = field_validator("checkpoint", "vae", "text_encoder", mode="before")(folder_path)


class _DiTGenerator(Generator):
    modality = "audio"
    batching = True
    needs_gpu = True
    tiny_preset = True
    Options: ClassVar[type[_DiTOptions]] = _DiTOptions
    options: _DiTOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._rt: AudioRuntime | None = None

    # -- models ------------------------------------------------------------------------------
    def runtime(self) -> AudioRuntime:
        """The loaded DiT, VAE and text encoder (loaded on first use)."""
        if self._rt is None:
            from .loading import load_audio_runtime

            o = self.options
            self._rt = load_audio_runtime(
                preset=o.preset,
                checkpoint=o.checkpoint,
                vae=o.vae,
                text_encoder=o.text_encoder,
                device=o.device,
                dtype=o.dtype,
                weights_seed=o.weights_seed,
                component=f"generator {self.name!r}",
            )
        return self._rt

    def _clip_window(self) -> float | None:
        """Seconds one DiT clip holds, known without loading a model (``None``: not known yet).

        Resolves the preset as loading will, so the real weights without ``checkpoint`` or a
        missing device are refused here, before rendering starts.
        """
        if self._rt is not None:
            return self._rt.clip_seconds
        from .loading import preset_of, tiny_clip_seconds
        from .release import release_clip_seconds

        o = self.options
        preset = preset_of(f"generator {self.name!r}", preset=o.preset, checkpoint=o.checkpoint, device=o.device,
                           dtype=o.dtype)
        return tiny_clip_seconds() if preset == "tiny" else release_clip_seconds(o.checkpoint, o.vae)

    def _padding(self, scene: Scene, last: int) -> tuple[float, float]:
        duration = float(scene.duration) if scene.duration is not None else C.TANGOFLUX_DEFAULT_DURATION
        return duration, (self.options.crossfade if scene.index != last else 0.0)

    def check_plan(self, plan: StoryPlan) -> None:
        """Every scene (with its crossfade padding) fits one DiT clip and has conditioning; the
        weights this generator would load are there to be loaded (no model is loaded here)."""
        if not plan.scenes:
            return
        for scene in plan.scenes:
            self._check_scene(scene)
        window = self._clip_window()
        if window is None:
            return
        last = max(s.index for s in plan.scenes)
        for scene in plan.scenes:
            duration, pad = self._padding(scene, last)
            _check_fits(scene, duration, pad, window)

    def _check_scene(self, scene: Scene) -> None:
        """Refuse a scene this generator has no conditioning for (subclasses)."""

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
        noise_seed = self.options.noise_seed
        for scene in sorted(scenes, key=lambda s: s.index):
            duration, pad = self._padding(scene, last)
            _check_fits(scene, duration, pad, rt.clip_seconds)
            cond, mask = self._conditioning(scene, rt)
            seed = int(noise_seed) if noise_seed is not None else ctx.scene_seed(scene)
            jobs.append(_Job(scene, cond, mask, duration, pad, seed))
        groups: dict[int, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(int(job.cond.shape[1]), []).append(job)
        done = 0
        for length, group in groups.items():
            size = self.options.dit_batch or _auto_batch(rt, length, len(group))
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

        o = self.options
        latents = sample_latents(
            dit, cond, uncond, pooled_c, pooled_u, durations, noise,
            steps=o.steps, guidance=o.guidance, on_step=on_step,
        )
        rate = rt.sample_rate
        for start in range(0, len(chunk), o.vae_batch):
            part = chunk[start : start + o.vae_batch]
            waves = rt.decode(latents[start : start + len(part)]).cpu().numpy()
            for job, wave in zip(part, waves):
                clip = wave[:, : int(job.seconds * rate)]  # trim, §1.7
                samples = resample(clip, rate, o.target_sr) if o.target_sr != rate else clip
                done += 1
                yield AudioAsset(
                    job.scene.index,
                    samples,
                    sample_rate=o.target_sr,
                    made_by=self.name,
                    metadata={
                        "duration": job.duration,
                        "generated_seconds": job.seconds,
                        "crossfade": job.pad,
                        "noise_seed": job.seed,
                        "steps": o.steps,
                        "guidance": o.guidance,
                    },
                )
                # after the yield: the pipeline has saved the clip before a cancel raises here
                ctx.report(done, total, job.scene.index, "clip decoded")


def _check_fits(scene: Scene, duration: float, pad: float, window: float) -> None:
    if duration + pad > window + 1e-6:
        raise ConfigError(
            f"scene {scene.index}: {duration:.2f} s (+{pad:.2f} s crossfade padding) is longer than the "
            f"{window:.2f} s the DiT renders in one clip; split the scene or shorten it"
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

    Options (``storysdk plugins --options audiostory``): ``checkpoint`` (the AudioStory release
    folder: ``config.yaml`` + ``pytorch_model.bin``), ``vae`` (folder with the Oobleck
    ``config.json`` + ``model.safetensors``), ``text_encoder`` (local flan-t5-large, for the
    unconditional embedding only), ``steps`` (50), ``guidance`` (4.0), ``crossfade`` (3.0 s of
    padding on every clip but the last), ``target_sr`` (32000), ``noise_seed`` (None: per-scene
    seeds; 0: upstream), ``dit_batch``, ``vae_batch``, and ``preset``, ``device``, ``dtype``,
    ``weights_seed`` (tiny weights).
    """

    name = "audiostory"
    description = "AudioStory: TangoFlux DiT + Oobleck VAE on the LLM's fused bridging queries (32 kHz stereo)"
    consumes = (COND_KIND,)

    class Options(_DiTOptions):
        """AudioStory's defaults: 50 steps, guidance 4.0, 3 s crossfade padding (docs/audiostory.md §1.6-§1.7)."""

    options: Options

    def _check_scene(self, scene: Scene) -> None:
        if COND_KIND not in scene.tokens and QUERIES_KIND not in scene.tokens:
            raise ConfigError(_no_cond(scene))

    def _conditioning(self, scene: Scene, rt: AudioRuntime) -> tuple[torch.Tensor, None]:
        tok = scene.tokens.get(COND_KIND)
        if tok is None:
            raise ConfigError(_no_cond(scene))
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


def _no_cond(scene: Scene) -> str:
    return (
        f"scene {scene.index} has no {COND_KIND!r} tokens; run the 'audiostory-bridge' tokenizer on a plan "
        "from the 'audiostory' planner, or use the 'tangoflux' generator for scenes from other planners"
    )


class TangoFluxGenerator(_DiTGenerator):
    """Plain TangoFlux text-to-audio (docs/audiostory.md §2) from each scene's prompt (or caption).

    Voices scenes from any planner, e.g. StoryDiffusion frames. ``checkpoint``: TangoFlux's
    release folder (``config.json``, ``tangoflux.safetensors``, ``vae.safetensors``; the Flan-T5
    tokenizer comes from ``text_encoder``) or the AudioStory release folder, whose fine-tuned DiT
    is then used. Defaults as ``TangoFluxInference.generate``: 25 steps, guidance 4.5; no
    crossfade padding unless ``crossfade`` is set (``storysdk plugins --options tangoflux``).
    """

    name = "tangoflux"
    description = "TangoFlux text-to-audio (Flan-T5 -> DiT -> Oobleck VAE) for scenes from any planner"

    class Options(_DiTOptions):
        """TangoFlux's defaults (``TangoFluxInference.generate``, §2): 25 steps, guidance 4.5, no padding."""

        checkpoint: str | None = Field(
            None,
            description="TangoFlux's release folder (config.json, tangoflux.safetensors, vae.safetensors) or "
            "the AudioStory release folder; needed unless preset='tiny'",
        )
        steps: int = Field(
            C.TANGOFLUX_STEPS, ge=1, description="flow-matching Euler steps of the DiT (docs/audiostory.md §2)"
        )
        guidance: float = Field(
            C.TANGOFLUX_GUIDANCE, ge=0, description="classifier-free guidance scale (docs/audiostory.md §2)"
        )
        crossfade: float = Field(
            0.0,
            ge=0,
            description="seconds of padding on every clip but the story's last, for a crossfade join of that length "
            "(0: independent clips, joined by hard cuts)",
        )

    options: Options

    def _check_scene(self, scene: Scene) -> None:
        if not (scene.prompt or scene.caption or "").strip():
            raise ConfigError(_no_text(scene))

    def _conditioning(self, scene: Scene, rt: AudioRuntime) -> tuple[torch.Tensor, torch.Tensor]:
        text = scene.prompt or scene.caption
        if not text.strip():
            raise ConfigError(_no_text(scene))
        return rt.encode_caption(text)

    def _uncond(self, length: int, rt: AudioRuntime) -> tuple[torch.Tensor, torch.Tensor]:
        return rt.uncond_states(length)


def _no_text(scene: Scene) -> str:
    return f"scene {scene.index} has no prompt or caption for TangoFlux to voice; give it one"
