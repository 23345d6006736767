"""``diffusers-audio``: any diffusers text-to-audio pipeline as a storysdk generator.

Stable Audio (``audio_end_in_s``) and AudioLDM / AudioLDM2 / MusicLDM (``audio_length_in_s``)
are told apart by their ``__call__`` signature. One clip per scene, trimmed or padded with
silence to exactly ``round(duration * sample_rate)`` frames. ``preset="tiny"`` uses the
tiny Stable Audio of :mod:`storysdk.tiny`. Torch and diffusers load only with the model.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..interfaces import Generator, RenderContext
from ..model import Asset, AudioAsset, Scene
from ..options import DeviceOptions, Field
from .diffusers_image import call_default, check_model_path, load_pipeline, pipeline_from_pretrained, step_callbacks

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

    The options are declared in :class:`Options`: ``model`` (folder or hub id), the shared
    ``preset``/``device``/``dtype``/``offload``/``weights_seed``
    (:class:`~storysdk.options.DeviceOptions`), ``duration`` (seconds for scenes without
    one), ``negative_prompt``, ``steps``/``guidance`` (``None``: the pipeline's defaults) and
    ``extra`` (more pipeline keyword arguments). Building it loads nothing; the model loads
    at the first :meth:`generate`. Each scene is seeded with a CPU generator from
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

    class Options(DeviceOptions):
        model: str | Path | None = Field(
            None, description=f"diffusers folder or hub id of a text-to-audio model; None: {DEFAULT_AUDIO_MODEL}"
        )
        duration: float = Field(
            5.0, gt=0, allow_inf_nan=False, description="seconds of audio for a scene that has no duration of its own"
        )
        negative_prompt: str | None = Field(None, description="negative prompt; None: the plan's")
        steps: int | None = Field(None, ge=1, description="denoising steps; None: the pipeline's default")
        guidance: float | None = Field(
            None, allow_inf_nan=False, description="classifier-free guidance scale; None: the pipeline's default"
        )
        extra: dict[str, Any] | None = Field(None, description="more keyword arguments for the pipeline call")

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from ..runtime import resolve_weights

        opts = self.options
        self._model = str(opts.model) if opts.model is not None else DEFAULT_AUDIO_MODEL
        # offline; 'auto' decides here (a model path that does not exist is an error)
        self._weights = resolve_weights(opts.preset, self._model, who=f"{self.kind} {self.name!r}")
        self._preset = self._weights.preset
        if self._preset == "full":
            self._model = check_model_path(self._model)
        self._pipe: Any = None

    @property
    def weights(self) -> str:
        """The weights this generator uses, as recorded in ``run.json`` (``"tiny"``, ``"tiny (fallback: ...)"`` or the model)."""
        return str(self._weights) if self._preset == "tiny" else self._model

    @property
    def model_name(self) -> str:
        """The model as recorded in asset metadata (``"tiny-stable-audio"`` for the tiny preset)."""
        return TINY_MODEL_NAME if self._preset == "tiny" else self._model

    def load(self) -> Any:
        """Load the pipeline now (otherwise at the first :meth:`generate`) and return it."""
        if self._pipe is None:
            from ..tiny import tiny_stable_audio_pipeline

            opts = self.options
            self._pipe, _ = load_pipeline(
                f"generator {self.name!r}",
                preset=self._preset,
                model=self._model,
                device=opts.device,
                dtype=opts.dtype,
                offload=opts.offload,
                tiny=lambda: tiny_stable_audio_pipeline(opts.weights_seed),
                full=lambda dtype: pipeline_from_pretrained(self._model, dtype),
            )
        return self._pipe

    @property
    def sample_rate(self) -> int:
        """The sample rate of the loaded pipeline's output (loads the model)."""
        return pipeline_sample_rate(self.load())

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterable[Asset]:
        """Yield one :class:`AudioAsset` per scene, each exactly the scene's duration long."""
        from ..runtime import cpu_generator

        opts = self.options
        pipe = self.load()
        rate = pipeline_sample_rate(pipe)
        params = inspect.signature(pipe.__call__).parameters
        length_arg = _length_parameter(params)
        limit = _max_seconds(pipe)
        negative = opts.negative_prompt if opts.negative_prompt is not None else ctx.plan.negative_prompt
        for scene in scenes:
            duration = float(scene.duration) if scene.duration is not None else opts.duration
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
            if opts.steps is not None:
                kwargs["num_inference_steps"] = opts.steps
            if opts.guidance is not None:
                kwargs["guidance_scale"] = opts.guidance
            if "output_type" in params:
                kwargs["output_type"] = "np"
            steps = kwargs.get("num_inference_steps", call_default(pipe, "num_inference_steps"))

            def report(done: int, total: int, _scene: Scene = scene) -> None:  # raises to cancel the call
                ctx.report(done, total, _scene.index, f"scene {_scene.index}")

            kwargs.update(opts.extra or {})
            kwargs.update(step_callbacks(params, report, steps, opts.extra))
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


def _as_channels_frames(audio: Any) -> np.ndarray:
    if hasattr(audio, "detach"):
        audio = audio.detach().float().cpu().numpy()
    arr = np.asarray(audio, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    return arr
