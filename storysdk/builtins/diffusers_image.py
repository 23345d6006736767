"""``diffusers-image``: any diffusers text-to-image pipeline as a batched storysdk generator.

The model is a local folder, a hub id, or one ``.safetensors``/``.ckpt`` file (SDXL or
SD 1.5, through ``from_single_file``); ``preset="tiny"`` uses the tiny SDXL of
:mod:`storysdk.tiny`. Torch and diffusers are imported only when the model is loaded.
"""

from __future__ import annotations

import inspect
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError
from ..interfaces import Generator, RenderContext
from ..model import Asset, ImageAsset, Scene, StoryPlan

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_SDXL", "DiffusersImageGenerator", "scene_prompts"]

DEFAULT_SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
TINY_MODEL_NAME = "tiny-sdxl"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
SDXL_TOKEN_KIND = "sdxl-text"
SDXL_TOKEN_NAMES = (
    "prompt_embeds",
    "pooled_prompt_embeds",
    "negative_prompt_embeds",
    "negative_pooled_prompt_embeds",
)
# A key only SDXL-family single files have (the second text encoder, OpenCLIP bigG).
_SDXL_SINGLE_FILE_KEY = "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def scene_prompts(
    scene: Scene, plan: StoryPlan, style: str | None, negative_prompt: str | None
) -> tuple[str, str | None]:
    """The (prompt, negative prompt) a text encoder sees for ``scene``.

    ``style`` ``None`` means the plan's style; ``negative_prompt`` ``None`` the plan's.
    The style is applied with :func:`storysdk.styles.apply_style`. An empty negative
    prompt becomes ``None`` (SDXL then uses zero embeddings, ``force_zeros_for_empty_prompt``).
    """
    name = style if style is not None else plan.style
    negative = negative_prompt if negative_prompt is not None else plan.negative_prompt
    prompt = scene.prompt
    if name is not None:
        from ..styles import apply_style

        prompt, negative = apply_style(name, prompt, negative or "")
    return prompt, (negative if negative and negative.strip() else None)


def check_model_path(model: str) -> str:
    """``model`` unchanged when it is an existing path or looks like a hub id; else a clear error."""
    expanded = os.path.expanduser(model)
    if os.path.exists(expanded):
        return expanded
    looks_like_file = model.endswith(SINGLE_FILE_SUFFIXES)
    if looks_like_file or not _HUB_ID.match(model):
        raise ConfigError(
            f"model path {model!r} does not exist; give an existing folder or .safetensors file, "
            "a hub id like 'stabilityai/stable-diffusion-xl-base-1.0', or preset='tiny' for toy weights"
        )
    return model


def load_error(model: str, exc: BaseException, hint: str = "") -> ConfigError:
    """A :class:`ConfigError` for a model that failed to load, with the fixes."""
    return ConfigError(
        f"could not load model {model!r}: {type(exc).__name__}: {exc}. "
        + (hint + " " if hint else "")
        + "Give a local folder (save_pretrained layout), a hub id reachable from here, "
        "or preset='tiny' for toy weights"
    )


def pipeline_from_pretrained(model: str, dtype: torch.dtype) -> Any:
    """``DiffusionPipeline.from_pretrained`` with the SDK's errors (missing package, bad model)."""
    from diffusers import DiffusionPipeline

    from ..runtime import dtype_kwargs

    try:
        return DiffusionPipeline.from_pretrained(model, **dtype_kwargs(dtype))
    except ImportError as exc:  # e.g. Stable Audio's scheduler needs torchsde
        raise ConfigError(
            f"model {model!r} needs a package that is not installed: {exc}; install it and retry"
        ) from exc
    except (OSError, ValueError) as exc:
        raise load_error(model, exc) from exc


def load_pipeline(
    who: str,
    *,
    preset: str,
    device: Any,
    dtype: Any,
    offload: str | None,
    tiny: Callable[[], Any],
    full: Callable[[torch.dtype], Any],
    configure: Callable[[Any], None] | None = None,
) -> tuple[Any, torch.device]:
    """Build a diffusers pipeline the way every model-backed built-in does.

    Resolves ``device``/``dtype``, takes the tiny preset from ``tiny()`` (cast to ``dtype``) or
    the real model from ``full(dtype)``, lets ``configure`` adjust it (a scheduler, ...),
    silences the pipeline's own progress bar and applies ``offload``. Returns the pipeline and
    the execution device.
    """
    from ..runtime import apply_offload, require_torch, resolve_device, resolve_dtype

    require_torch(who)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if preset == "tiny":
        pipe = tiny()
        if dt != pipe.dtype:
            pipe = pipe.to(dtype=dt)
    else:
        pipe = full(dt)
    if configure is not None:
        configure(pipe)
    pipe.set_progress_bar_config(disable=True)
    return apply_offload(pipe, offload, dev), dev


def scheduler_from_name(pipe: Any, name: str) -> Any:
    """An instance of the diffusers scheduler class ``name`` configured like ``pipe.scheduler``."""
    import diffusers

    compatible = sorted(
        c.__name__ for c in getattr(pipe.scheduler, "compatibles", []) if hasattr(c, "__name__")
    )
    cls = getattr(diffusers, name, None)
    if cls is None or not name.endswith("Scheduler") or not hasattr(cls, "from_config"):
        valid = ", ".join(compatible[:12]) or "EulerDiscreteScheduler, DDIMScheduler"
        raise ConfigError(f"scheduler {name!r} is not a diffusers scheduler; valid ones here: {valid}")
    return cls.from_config(pipe.scheduler.config)


def call_default(pipe: Any, name: str) -> Any:
    """The default of ``pipe.__call__``'s parameter ``name`` (``None`` when it has none)."""
    param = inspect.signature(pipe.__call__).parameters.get(name)
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return param.default


class DiffusersImageGenerator(Generator):
    """Renders scenes with a diffusers text-to-image pipeline, several scenes per denoising batch.

    Options: ``model`` (folder, hub id or single file), ``preset`` (``"tiny"``, ``"auto"``,
    ``None``), ``steps``/``guidance`` (``None``: the pipeline's defaults), ``width``/``height``
    (``None``: the plan's, else the pipeline's), ``negative_prompt`` and ``style`` (``None``:
    the plan's), ``scheduler`` (a diffusers class name), ``batch_size`` (scenes per batch),
    ``device``/``dtype``/``offload``, ``config`` (diffusers config folder or hub id for a
    single-file checkpoint) and ``extra`` (more keyword arguments for the pipeline call).

    Every scene gets its own CPU generator seeded with ``ctx.scene_seed(scene)``, so a scene
    renders the same in any batch. When every scene of a batch carries ``"sdxl-text"``
    tokens (from ``clip-text``) and the pipeline takes pooled embeddings, the tokens are
    used instead of encoding the prompts again.
    """

    name: ClassVar[str] = "diffusers-image"
    description: ClassVar[str] = "any diffusers text-to-image pipeline (SDXL, SD 1.5, Flux, ...), batched over scenes"
    modality = "image"
    batching: ClassVar[bool] = True
    consumes: ClassVar[tuple[str, ...]] = (SDXL_TOKEN_KIND,)
    needs_gpu: ClassVar[bool] = True
    tiny_preset: ClassVar[bool] = True

    def __init__(
        self,
        *,
        model: str | None = None,
        preset: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        width: int | None = None,
        height: int | None = None,
        negative_prompt: str | None = None,
        style: str | None = None,
        scheduler: str | None = None,
        batch_size: int = 4,
        device: str | None = None,
        dtype: str | None = None,
        offload: str | None = None,
        config: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        from ..runtime import OFFLOAD_MODES, resolve_preset

        for label, size in (("width", width), ("height", height)):
            _check_size(label, size)
        if steps is not None and (not isinstance(steps, int) or steps < 1):
            raise ConfigError(f"steps must be a whole number >= 1, got {steps!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        if offload is not None and offload not in OFFLOAD_MODES:
            raise ConfigError(f"offload {offload!r} is unknown; use 'model', 'sequential' or None")
        if extra is not None and not isinstance(extra, dict):
            raise ConfigError(f"extra must be a dict of pipeline keyword arguments, got {type(extra).__name__}")
        self.model = str(model) if model is not None else DEFAULT_SDXL
        self.preset = resolve_preset(preset, self.model)
        if self.preset == "full":
            self.model = check_model_path(self.model)
        self.steps = steps
        self.guidance = guidance
        self.width = width
        self.height = height
        self.negative_prompt = negative_prompt
        self.style = style
        self.scheduler = scheduler
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.offload = offload
        self.config = config
        self.extra = dict(extra or {})
        self._pipe: Any = None
        self._device: Any = None

    # -- loading -------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The model as recorded in asset metadata (``"tiny-sdxl"`` for the tiny preset)."""
        return TINY_MODEL_NAME if self.preset == "tiny" else self.model

    def load(self) -> Any:
        """Load the pipeline now (otherwise done at the first :meth:`generate`) and return it."""
        if self._pipe is None:
            from ..tiny import tiny_sdxl_pipeline

            def configure(pipe: Any) -> None:
                if self.scheduler is not None:
                    pipe.scheduler = scheduler_from_name(pipe, self.scheduler)

            self._pipe, self._device = load_pipeline(
                f"generator {self.name!r}",
                preset=self.preset,
                device=self.device,
                dtype=self.dtype,
                offload=self.offload,
                tiny=lambda: tiny_sdxl_pipeline(0),
                full=self._load_full,
                configure=configure,
            )
        return self._pipe

    def _load_full(self, dtype: torch.dtype) -> Any:
        if self.model.endswith(SINGLE_FILE_SUFFIXES) and os.path.isfile(self.model):
            return self._load_single_file(dtype)
        return pipeline_from_pretrained(self.model, dtype)

    def _load_single_file(self, dtype: torch.dtype) -> Any:
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        cls = StableDiffusionXLPipeline if _is_sdxl_single_file(self.model) else StableDiffusionPipeline
        from ..runtime import dtype_kwargs

        kwargs: dict[str, Any] = dtype_kwargs(dtype)
        if self.config is not None:
            kwargs["config"] = self.config
        try:
            return cls.from_single_file(self.model, **kwargs)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise load_error(
                self.model,
                exc,
                f"A single-file checkpoint loads as {cls.__name__} and needs its base model's diffusers "
                "configs: pass config='<local diffusers folder of the base model>' (or reach the hub once).",
            ) from exc

    # -- generation ----------------------------------------------------------------------

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterable[Asset]:
        """Yield one :class:`ImageAsset` per scene, ``batch_size`` scenes per pipeline call."""
        pipe = self.load()
        width = self.width if self.width is not None else ctx.plan.width
        height = self.height if self.height is not None else ctx.plan.height
        _check_size("width", width, where="plan width" if self.width is None else "width")
        _check_size("height", height, where="plan height" if self.height is None else "height")
        for start in range(0, len(scenes), self.batch_size):
            yield from self._batch(pipe, list(scenes[start : start + self.batch_size]), ctx, width, height)

    def _batch(
        self, pipe: Any, batch: list[Scene], ctx: RenderContext, width: int | None, height: int | None
    ) -> Iterator[ImageAsset]:
        from ..runtime import cpu_generator

        params = inspect.signature(pipe.__call__).parameters
        seeds = [ctx.scene_seed(s) for s in batch]
        prompts = [scene_prompts(s, ctx.plan, self.style, self.negative_prompt) for s in batch]
        kwargs: dict[str, Any] = {"generator": [cpu_generator(seed) for seed in seeds], "output_type": "pil"}
        if self.steps is not None:
            kwargs["num_inference_steps"] = self.steps
        if self.guidance is not None:
            kwargs["guidance_scale"] = self.guidance
        if width is not None:
            kwargs["width"] = width
        if height is not None:
            kwargs["height"] = height
        tokens = self._tokens_for(batch, prompts, params)
        if tokens is not None:
            kwargs.update(tokens)
        else:
            kwargs["prompt"] = [p for p, _ in prompts]
            negatives = [n for _, n in prompts]
            if any(n is not None for n in negatives) and "negative_prompt" in params:
                kwargs["negative_prompt"] = [n or "" for n in negatives]
        steps = kwargs.get("num_inference_steps", call_default(pipe, "num_inference_steps"))
        if "callback_on_step_end" in params:
            label = f"scenes {', '.join(str(s.index) for s in batch)}"
            scene_index = batch[0].index if len(batch) == 1 else None

            def on_step_end(_pipe: Any, step: int, _t: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
                ctx.report(step + 1, int(steps or 0), scene_index, label)
                return callback_kwargs

            kwargs["callback_on_step_end"] = on_step_end
        kwargs.update(self.extra)
        images = pipe(**kwargs).images
        guidance = kwargs.get("guidance_scale", call_default(pipe, "guidance_scale"))
        for scene, seed, image, (prompt, negative) in zip(batch, seeds, images, prompts):
            yield ImageAsset(
                scene.index,
                image,
                made_by=self.name,
                metadata={
                    "seed": seed,
                    "steps": steps,
                    "guidance": guidance,
                    "model": self.model_name,
                    "width": image.width,
                    "height": image.height,
                    "prompt": prompt,
                    "negative_prompt": negative,
                    "scheduler": type(pipe.scheduler).__name__,
                    "used_tokens": tokens is not None,
                },
            )

    def _tokens_for(
        self, batch: list[Scene], prompts: list[tuple[str, str | None]], params: Any
    ) -> dict[str, Any] | None:
        """The embeddings of ``sdxl-text`` tokens for the whole batch, or ``None`` to encode text."""
        import torch

        if "pooled_prompt_embeds" not in params or not all(SDXL_TOKEN_KIND in s.tokens for s in batch):
            return None
        found = [s.tokens[SDXL_TOKEN_KIND] for s in batch]
        for scene, tok, (prompt, negative) in zip(batch, found, prompts):
            made_for = (tok.metadata.get("prompt"), tok.metadata.get("negative_prompt"))
            if "prompt" in tok.metadata and made_for != (prompt, negative):
                warnings.warn(
                    f"scene {scene.index}: the sdxl-text tokens were encoded from a different prompt "
                    f"({made_for[0]!r}) than this generator would use ({prompt!r}); the tokens are used. "
                    "Give clip-text the same style and negative_prompt options to make them agree",
                    UserWarning,
                    stacklevel=4,
                )
            missing = [k for k in SDXL_TOKEN_NAMES if k not in tok.tensors]
            if missing:
                raise ConfigError(
                    f"scene {scene.index}: sdxl-text tokens by {tok.made_by!r} lack {', '.join(missing)}; "
                    "make them with the clip-text tokenizer"
                )
        pipe = self._pipe
        dtype = pipe.unet.dtype if getattr(pipe, "unet", None) is not None else None
        out = {}
        for key in SDXL_TOKEN_NAMES:
            out[key] = torch.cat([torch.as_tensor(t.tensors[key]) for t in found]).to(self._device, dtype)
        width = getattr(getattr(pipe, "unet", None), "config", None)
        cross = getattr(width, "cross_attention_dim", None)
        if cross is not None and out["prompt_embeds"].shape[-1] != cross:
            raise ConfigError(
                f"sdxl-text tokens have width {out['prompt_embeds'].shape[-1]} but this model's UNet "
                f"expects {cross}; make the tokens with clip-text using the same model (and preset)"
            )
        return out


def _check_size(label: str, value: int | None, where: str | None = None) -> None:
    if value is None:
        return
    if not isinstance(value, int) or value <= 0 or value % 8:
        raise ConfigError(
            f"{where or label} must be a positive multiple of 8 pixels, got {value!r}; "
            f"use for example {max(8, (int(value) // 8) * 8) if isinstance(value, int) else 1024}"
        )


def _is_sdxl_single_file(path: str) -> bool:
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            return _SDXL_SINGLE_FILE_KEY in set(f.keys())
    import torch

    state = torch.load(path, map_location="meta", weights_only=True)
    state = state.get("state_dict", state)
    return _SDXL_SINGLE_FILE_KEY in state

