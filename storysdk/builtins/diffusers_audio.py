"""``diffusers-audio``: any diffusers text-to-audio pipeline as a storysdk generator.

Stable Audio (``audio_end_in_s``) and AudioLDM / AudioLDM2 / MusicLDM (``audio_length_in_s``)
are told apart by their ``__call__`` signature. One clip per scene, trimmed or padded with
silence to exactly ``round(duration * sample_rate)`` frames. ``preset="tiny"`` uses the
tiny Stable Audio of :mod:`storysdk.tiny`. Torch and diffusers load only with the model.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..interfaces import Generator, RenderContext
from ..model import Asset, AudioAsset, Scene
from .diffusers_image import call_default, check_model_path, load_pipeline, pipeline_from_pretrained

__all__ = ["DEFAULT_AUDIO_MODEL", "DiffusersAudioGenerator", "fit_length"]

DEFAULT_AUDIO_MODEL = "stabilityai/stable-audio-open-1.0"
TINY_MODEL_NAME = "tiny-stable-audio"


def fit_length(samples: np.ndarray, frames: int) -> np.ndarray:
    """``samples`` (channels, n) cut or zero-padded at the end to exactly ``frames`` frames."""
    have = samples.shape[1]
    if have >= frames:
        return np.ascontiguousarray(samples[:, :frames])
    pad = np.zeros((samples.shape[0], frames - have), dtype=samples.dtype)
    return np.concatenate([samples, pad], axis=1)


class DiffusersAudioGenerator(Generator):
    """Renders one audio clip per scene with a diffusers text-to-audio pipeline.

    Options: ``model`` (folder or hub id), ``preset`` (``"tiny"``, ``"auto"``, ``None``),
    ``duration`` (seconds for scenes without one), ``negative_prompt``, ``steps``/``guidance``
    (``None``: the pipeline's defaults), ``device``/``dtype``/``offload``, ``extra`` (more
    pipeline keyword arguments). Each scene is seeded with a CPU generator from
    ``ctx.scene_seed(scene)``. The sample rate is the pipeline's: ``vae.sampling_rate`` for
    Stable Audio, the vocoder's for AudioLDM/AudioLDM2. A scene longer than the model can
    make in one clip (47.55 s for Stable Audio Open) is a :class:`ConfigError`.
    """

    name: ClassVar[str] = "diffusers-audio"
    description: ClassVar[str] = "any diffusers text-to-audio pipeline (Stable Audio, AudioLDM 2, ...), one clip per scene"
    modality = "audio"
    batching: ClassVar[bool] = False
    needs_gpu: ClassVar[bool] = True
    tiny_preset: ClassVar[bool] = True

    def __init__(
        self,
        *,
        model: str | None = None,
        preset: str | None = None,
        duration: float = 5.0,
        negative_prompt: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        device: str | None = None,
        dtype: str | None = None,
        offload: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        from ..runtime import OFFLOAD_MODES, resolve_preset

        if not isinstance(duration, (int, float)) or not duration > 0:
            raise ConfigError(f"duration must be a positive number of seconds, got {duration!r}")
        if steps is not None and (not isinstance(steps, int) or steps < 1):
            raise ConfigError(f"steps must be a whole number >= 1, got {steps!r}")
        if offload is not None and offload not in OFFLOAD_MODES:
            raise ConfigError(f"offload {offload!r} is unknown; use 'model', 'sequential' or None")
        if extra is not None and not isinstance(extra, dict):
            raise ConfigError(f"extra must be a dict of pipeline keyword arguments, got {type(extra).__name__}")
        self.model = str(model) if model is not None else DEFAULT_AUDIO_MODEL
        self.preset = resolve_preset(preset, self.model)
        if self.preset == "full":
            self.model = check_model_path(self.model)
        self.duration = float(duration)
        self.negative_prompt = negative_prompt
        self.steps = steps
        self.guidance = guidance
        self.device = device
        self.dtype = dtype
        self.offload = offload
        self.extra = dict(extra or {})
        self._pipe: Any = None

    @property
    def model_name(self) -> str:
        return TINY_MODEL_NAME if self.preset == "tiny" else self.model

    def load(self) -> Any:
        """Load the pipeline now (otherwise at the first :meth:`generate`) and return it."""
        if self._pipe is None:
            from ..tiny import tiny_stable_audio_pipeline

            self._pipe, _ = load_pipeline(
                f"generator {self.name!r}",
                preset=self.preset,
                device=self.device,
                dtype=self.dtype,
                offload=self.offload,
                tiny=lambda: tiny_stable_audio_pipeline(0),
                full=lambda dtype: pipeline_from_pretrained(self.model, dtype),
            )
        return self._pipe

    @property
    def sample_rate(self) -> int:
        """The sample rate of the loaded pipeline's output (loads the model)."""
        return pipeline_sample_rate(self.load())

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterable[Asset]:
        """Yield one :class:`AudioAsset` per scene, each exactly the scene's duration long."""
        from ..runtime import cpu_generator

        pipe = self.load()
        rate = pipeline_sample_rate(pipe)
        params = inspect.signature(pipe.__call__).parameters
        length_arg = _length_parameter(params)
        limit = _max_seconds(pipe)
        negative = self.negative_prompt if self.negative_prompt is not None else ctx.plan.negative_prompt
        for scene in scenes:
            duration = float(scene.duration) if scene.duration is not None else self.duration
            if limit is not None and duration > limit + 1e-9:
                raise ConfigError(
                    f"scene {scene.index}: duration {duration:g} s is longer than model {self.model_name!r} "
                    f"can make in one clip ({limit:g} s); split the scene or shorten it"
                )
            seed = ctx.scene_seed(scene)
            kwargs: dict[str, Any] = {"prompt": scene.prompt, "generator": cpu_generator(seed)}
            kwargs[length_arg] = duration
            if negative and "negative_prompt" in params:
                kwargs["negative_prompt"] = negative
            if self.steps is not None:
                kwargs["num_inference_steps"] = self.steps
            if self.guidance is not None:
                kwargs["guidance_scale"] = self.guidance
            if "output_type" in params:
                kwargs["output_type"] = "np"
            steps = kwargs.get("num_inference_steps", call_default(pipe, "num_inference_steps"))
            kwargs.update(_progress_kwargs(params, ctx, scene, steps))
            kwargs.update(self.extra)
            audio = pipe(**kwargs).audios[0]
            samples = _as_channels_frames(audio)
            frames = int(round(duration * rate))
            yield AudioAsset(
                scene.index,
                fit_length(samples, frames),
                sample_rate=rate,
                made_by=self.name,
                metadata={
                    "seed": seed,
                    "steps": steps,
                    "guidance": kwargs.get("guidance_scale", call_default(pipe, "guidance_scale")),
                    "model": self.model_name,
                    "duration": duration,
                    "prompt": scene.prompt,
                    "negative_prompt": negative or None,
                },
            )


def pipeline_sample_rate(pipe: Any) -> int:
    """The output sample rate of a diffusers audio pipeline (VAE for Stable Audio, vocoder otherwise)."""
    vae_rate = getattr(getattr(getattr(pipe, "vae", None), "config", None), "sampling_rate", None)
    if vae_rate:
        return int(vae_rate)
    vocoder_rate = getattr(getattr(getattr(pipe, "vocoder", None), "config", None), "sampling_rate", None)
    if vocoder_rate:
        return int(vocoder_rate)
    raise ConfigError(
        f"cannot tell the sample rate of {type(pipe).__name__}: neither vae.config.sampling_rate nor "
        "vocoder.config.sampling_rate exists; use a Stable Audio or AudioLDM-family pipeline"
    )


def _length_parameter(params: Any) -> str:
    if "audio_end_in_s" in params:
        return "audio_end_in_s"
    if "audio_length_in_s" in params:
        return "audio_length_in_s"
    raise ConfigError(
        "this pipeline takes neither audio_end_in_s (Stable Audio) nor audio_length_in_s (AudioLDM); "
        "it is not a text-to-audio pipeline diffusers-audio can drive"
    )


def _max_seconds(pipe: Any) -> float | None:
    """Stable Audio's longest clip: ``sample_size * hop_length / sampling_rate``; else ``None``."""
    transformer = getattr(pipe, "transformer", None)
    vae = getattr(pipe, "vae", None)
    hop = getattr(vae, "hop_length", None)
    size = getattr(getattr(transformer, "config", None), "sample_size", None)
    rate = getattr(getattr(vae, "config", None), "sampling_rate", None)
    if hop and size and rate:
        return float(size) * float(hop) / float(rate)
    return None


def _progress_kwargs(params: Any, ctx: RenderContext, scene: Scene, steps: Any) -> dict[str, Any]:
    total = int(steps or 0)
    if "callback_on_step_end" in params:

        def on_step_end(_pipe: Any, step: int, _t: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
            ctx.report(step + 1, total, scene.index, f"scene {scene.index}")
            return callback_kwargs

        return {"callback_on_step_end": on_step_end}
    if "callback" in params:  # older audio pipelines: callback(step, timestep, latents)

        def callback(step: int, _t: Any, _latents: Any) -> None:
            ctx.report(step + 1, total, scene.index, f"scene {scene.index}")

        return {"callback": callback, "callback_steps": 1}
    return {}


def _as_channels_frames(audio: Any) -> np.ndarray:
    if hasattr(audio, "detach"):
        audio = audio.detach().float().cpu().numpy()
    arr = np.asarray(audio, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    return arr
