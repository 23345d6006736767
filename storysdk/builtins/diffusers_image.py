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
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError
from ..interfaces import Generator, RenderContext
from ..model import Asset, ImageAsset, Scene, StoryPlan
from ..options import DeviceOptions, Field

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_SDXL", "DiffusersImageGenerator", "scene_prompts", "step_callbacks"]

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
    """``DiffusionPipeline.from_pretrained`` with the SDK's errors, through
    :func:`storysdk.runtime.load_pretrained_pipeline`: every model component loads strictly (a
    missing, unexpected or wrongly shaped tensor is a :class:`~storysdk.errors.CheckpointError`
    naming its folder), a broken file (truncated, empty, not JSON, an unsafe pickle) is named,
    a missing package or an unreachable hub id is a :class:`ConfigError`."""
    from diffusers import DiffusionPipeline

    from ..runtime import dtype_kwargs, load_pretrained_pipeline

    return load_pretrained_pipeline(DiffusionPipeline, model, what="model", **dtype_kwargs(dtype))


def check_offload(who: str, offload: str | None, device: torch.device) -> None:
    """CPU offload needs CUDA: refuse it on another device before any weights are built."""
    if offload is not None and device.type != "cuda":
        raise ConfigError(
            f"{who}: offload={offload!r} needs a CUDA device (got {str(device)!r}); drop the offload option on CPU"
        )


def load_pipeline(
    who: str,
    *,
    preset: str,
    model: str | None,
    device: Any,
    dtype: Any,
    offload: str | None,
    tiny: Callable[[], Any],
    full: Callable[[torch.dtype], Any],
    configure: Callable[[Any], None] | None = None,
) -> tuple[Any, torch.device]:
    """Build a diffusers pipeline the way every model-backed built-in does.

    Resolves preset, device and dtype with :func:`storysdk.runtime.resolve`, refuses CPU
    offload without CUDA before any weights are built, takes the tiny preset from ``tiny()``
    (cast to the dtype) or the real model from ``full(dtype)``, lets ``configure`` adjust it
    (a scheduler, ...), silences the pipeline's own progress bar and applies ``offload``.
    Returns the pipeline and the execution device.
    """
    from ..runtime import apply_offload, resolve

    r = resolve(who, preset=preset, model=model, device=device, dtype=dtype)
    check_offload(who, offload, r.device)
    if r.preset == "tiny":
        pipe = tiny()
        if r.dtype != pipe.dtype:
            pipe = pipe.to(dtype=r.dtype)
    else:
        pipe = full(r.dtype)
    if configure is not None:
        configure(pipe)
    pipe.set_progress_bar_config(disable=True)
    return apply_offload(pipe, offload, r.device), r.device


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


def step_callbacks(
    params: Any, report: Callable[[int, int], None], steps: Any, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Keyword arguments that make a diffusers pipeline call ``report(done, total)`` after every denoising step.

    ``report`` is the cancellation point (it raises to stop the call, within one step).
    Pipelines with ``callback_on_step_end`` get it (``total``: the call's number of UNet/DiT
    calls, ``pipe.num_timesteps``; ``steps`` where it is unknown); a callback the user gave in
    ``extra`` still runs, after ``report``. Older pipelines get ``callback`` with
    ``callback_steps=1``. A pipeline with neither reports nothing per step.
    """
    fallback = int(steps or 0)
    own = dict(extra or {})
    if "callback_on_step_end" in params:
        theirs = own.get("callback_on_step_end")
        out: dict[str, Any] = {}
        inputs = getattr(theirs, "tensor_inputs", None)  # a diffusers PipelineCallback keeps its inputs here
        if theirs is not None and not callable(theirs):
            raise ConfigError(f"extra callback_on_step_end must be callable, got {theirs!r}")
        if inputs is not None and "callback_on_step_end_tensor_inputs" not in own:
            out["callback_on_step_end_tensor_inputs"] = list(inputs)

        def on_step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
            total = getattr(pipe, "num_timesteps", None)
            report(step + 1, int(total) if isinstance(total, int) and total > 0 else fallback)
            if theirs is not None:
                return theirs(pipe, step, timestep, callback_kwargs)
            return callback_kwargs

        out["callback_on_step_end"] = on_step_end
        return out
    if "callback" in params:  # older pipelines: callback(step, timestep, latents) every callback_steps
        theirs = own.get("callback")

        def callback(step: int, timestep: Any, latents: Any) -> None:
            report(step + 1, fallback)
            if theirs is not None:
                theirs(step, timestep, latents)

        return {"callback": callback, "callback_steps": 1}
    return {}


class DiffusersImageGenerator(Generator):
    """Renders scenes with a diffusers text-to-image pipeline, several scenes per denoising batch.

    The options are declared in :class:`Options`: ``model`` (folder, hub id or single file),
    the shared ``preset``/``device``/``dtype``/``offload``/``weights_seed``
    (:class:`~storysdk.options.DeviceOptions`), ``steps``/``guidance`` (``None``: the
    pipeline's defaults), ``width``/``height`` (``None``: the plan's, else the pipeline's),
    ``negative_prompt`` and ``style`` (``None``: the plan's), ``scheduler`` (a diffusers class
    name), ``batch_size`` (scenes per batch), ``config`` (diffusers config folder or hub id for
    a single-file checkpoint) and ``extra`` (more keyword arguments for the pipeline call).
    Building the generator loads nothing; the model loads at the first :meth:`generate`
    (or :meth:`load`).

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

    class Options(DeviceOptions):
        model: str | Path | None = Field(
            None,
            description=f"diffusers folder, hub id, or one .safetensors/.ckpt file (SDXL or SD 1.5); "
            f"None: {DEFAULT_SDXL}",
        )
        steps: int | None = Field(None, ge=1, description="denoising steps; None: the pipeline's default")
        guidance: float | None = Field(
            None, allow_inf_nan=False, description="classifier-free guidance scale; None: the pipeline's default"
        )
        width: int | None = Field(
            None, gt=0, multiple_of=8, description="picture width in pixels; None: the plan's, else the pipeline's"
        )
        height: int | None = Field(
            None, gt=0, multiple_of=8, description="picture height in pixels; None: the plan's, else the pipeline's"
        )
        negative_prompt: str | None = Field(None, description="negative prompt; None: the plan's")
        style: str | None = Field(
            None, description="style template applied to each prompt (storysdk.styles); None: the plan's"
        )
        scheduler: str | None = Field(
            None, description="diffusers scheduler class name, e.g. 'DDIMScheduler'; None: the model's own"
        )
        batch_size: int = Field(4, ge=1, description="scenes per denoising batch (as memory allows)")
        config: str | None = Field(
            None, description="single-file checkpoints: the base model's diffusers config folder or hub id"
        )
        extra: dict[str, Any] | None = Field(None, description="more keyword arguments for the pipeline call")

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
        self._pipe: Any = None
        self._device: Any = None

    # -- loading -------------------------------------------------------------------------

    @property
    def weights(self) -> str:
        """The weights this generator uses, as recorded in ``run.json`` (``"tiny"``, ``"tiny (fallback: ...)"`` or the model)."""
        return str(self._weights) if self._preset == "tiny" else self._model

    @property
    def model_name(self) -> str:
        """The model as recorded in asset metadata (``"tiny-sdxl"`` for the tiny preset)."""
        return TINY_MODEL_NAME if self._preset == "tiny" else self._model

    def load(self) -> Any:
        """Load the pipeline now (otherwise done at the first :meth:`generate`) and return it."""
        if self._pipe is None:
            from ..tiny import tiny_sdxl_pipeline

            opts = self.options

            def configure(pipe: Any) -> None:
                if opts.scheduler is not None:
                    pipe.scheduler = scheduler_from_name(pipe, opts.scheduler)

            self._pipe, self._device = load_pipeline(
                f"generator {self.name!r}",
                preset=self._preset,
                model=self._model,
                device=opts.device,
                dtype=opts.dtype,
                offload=opts.offload,
                tiny=lambda: tiny_sdxl_pipeline(opts.weights_seed),
                full=self._load_full,
                configure=configure,
            )
        return self._pipe

    def _load_full(self, dtype: torch.dtype) -> Any:
        if self._model.endswith(SINGLE_FILE_SUFFIXES) and os.path.isfile(self._model):
            return self._load_single_file(dtype)
        return pipeline_from_pretrained(self._model, dtype)

    def _load_single_file(self, dtype: torch.dtype) -> Any:
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        from ..runtime import dtype_kwargs

        model = self._model
        cls = StableDiffusionXLPipeline if _is_sdxl_single_file(model) else StableDiffusionPipeline
        kwargs: dict[str, Any] = dtype_kwargs(dtype)
        if self.options.config is not None:
            kwargs["config"] = self.options.config
        return single_file_pipeline(cls, model, kwargs)

    def check_plan(self, plan: StoryPlan) -> None:
        """Refuse a plan whose picture size is not a multiple of 8 (unless this generator's own size replaces it)."""
        for label, own, planned in (("width", self.options.width, plan.width), ("height", self.options.height, plan.height)):
            if own is None:
                _check_size(label, planned, where=f"plan {label}")

    # -- generation ----------------------------------------------------------------------

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterable[Asset]:
        """Yield one :class:`ImageAsset` per scene, ``batch_size`` scenes per pipeline call.

        A resumed run batches every scene as the interrupted run did: each asset records the
        scenes it was denoised with (``metadata["batch"]``), and a pending scene whose batch
        partly finished is rendered again in that whole batch (the finished scenes' pictures
        are not yielded again). The UNet's floating-point sums depend on the batch's shape, so
        this keeps resumed pictures byte-identical to an uninterrupted run's.
        """
        opts = self.options
        width = opts.width if opts.width is not None else ctx.plan.width
        height = opts.height if opts.height is not None else ctx.plan.height
        _check_size("width", width, where="plan width" if opts.width is None else "width")
        _check_size("height", height, where="plan height" if opts.height is None else "height")
        pipe = self.load()
        wanted = {s.index for s in scenes}
        for batch in self._batches(scenes, ctx):
            yield from self._batch(pipe, batch, wanted, ctx, width, height)

    def _batches(self, scenes: Sequence[Scene], ctx: RenderContext) -> list[list[Scene]]:
        """The scenes in batches of ``batch_size``; batches of an interrupted run are kept whole."""
        known = {s.index: s for s in ctx.plan.scenes}
        known.update((s.index, s) for s in scenes)
        earlier: dict[int, list[int]] = {}  # scene -> the batch a finished asset says it was in
        if ctx.story is not None:
            for asset in ctx.finished("image").values():
                group = asset.metadata.get("batch")
                if asset.made_by == self.name and isinstance(group, list) and all(i in known for i in group):
                    for i in group:
                        earlier.setdefault(i, group)
        batches: list[list[Scene]] = []
        free: list[Scene] = []
        placed: set[int] = set()
        for scene in scenes:
            if scene.index in placed:
                continue
            group = earlier.get(scene.index)
            if group is None:
                free.append(scene)
                placed.add(scene.index)
            else:
                batches.append([known[i] for i in group])
                placed.update(group)
        size = self.options.batch_size
        return batches + [free[i : i + size] for i in range(0, len(free), size)]

    def _batch(
        self,
        pipe: Any,
        batch: list[Scene],
        wanted: set[int],
        ctx: RenderContext,
        width: int | None,
        height: int | None,
    ) -> Iterator[ImageAsset]:
        """Denoise ``batch`` in one call; yield the pictures of the ``wanted`` scenes."""
        from ..runtime import cpu_generator

        opts = self.options
        params = inspect.signature(pipe.__call__).parameters
        seeds = [ctx.scene_seed(s) for s in batch]
        prompts = [scene_prompts(s, ctx.plan, opts.style, opts.negative_prompt) for s in batch]
        kwargs: dict[str, Any] = {"generator": [cpu_generator(seed) for seed in seeds], "output_type": "pil"}
        if opts.steps is not None:
            kwargs["num_inference_steps"] = opts.steps
        if opts.guidance is not None:
            kwargs["guidance_scale"] = opts.guidance
        if width is not None:
            kwargs["width"] = width
        if height is not None:
            kwargs["height"] = height
        tokens = self._tokens_for(batch, prompts, params, wanted)
        if tokens is not None:
            kwargs.update(tokens)
        else:
            kwargs["prompt"] = [p for p, _ in prompts]
            negatives = [n for _, n in prompts]
            if any(n is not None for n in negatives) and "negative_prompt" in params:
                kwargs["negative_prompt"] = [n or "" for n in negatives]
        steps = kwargs.get("num_inference_steps", call_default(pipe, "num_inference_steps"))
        label = f"scenes {', '.join(str(s.index) for s in batch)}"
        scene_index = batch[0].index if len(batch) == 1 else None

        def report(done: int, total: int) -> None:  # the cancellation point: raises to stop the call
            ctx.report(done, total, scene_index, label)

        kwargs.update(opts.extra or {})
        kwargs.update(step_callbacks(params, report, steps, opts.extra))
        images = pipe(**kwargs).images
        guidance = kwargs.get("guidance_scale", call_default(pipe, "guidance_scale"))
        members = [s.index for s in batch]
        for scene, seed, image, (prompt, negative) in zip(batch, seeds, images, prompts):
            if scene.index not in wanted:  # finished before: only keeps the batch's shape
                continue
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
                    "batch": members,
                },
            )

    def _tokens_for(
        self, batch: list[Scene], prompts: list[tuple[str, str | None]], params: Any, wanted: set[int]
    ) -> dict[str, Any] | None:
        """The embeddings of ``sdxl-text`` tokens for the batch, or ``None`` to encode text.

        Tokens are used when every wanted scene of the batch has them. A scene that is in the
        batch only to keep its shape (finished before a resume) and has none gets zeros: its
        picture is thrown away, and each scene's result depends on its own rows only.
        """
        import torch

        asked = [s for s in batch if s.index in wanted]
        if "pooled_prompt_embeds" not in params or not all(SDXL_TOKEN_KIND in s.tokens for s in asked):
            return None
        for scene, tok, (prompt, negative) in (
            (s, s.tokens[SDXL_TOKEN_KIND], p) for s, p in zip(batch, prompts) if s.index in wanted
        ):
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
        like = asked[0].tokens[SDXL_TOKEN_KIND].tensors
        out = {}
        for key in SDXL_TOKEN_NAMES:
            rows = [
                torch.as_tensor(s.tokens[SDXL_TOKEN_KIND].tensors[key])
                if SDXL_TOKEN_KIND in s.tokens
                else torch.zeros_like(torch.as_tensor(like[key]))
                for s in batch
            ]
            out[key] = torch.cat(rows).to(self._device, dtype)
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
    """Whether a single-file checkpoint is SDXL's (it has the second text encoder); a file that is
    truncated, empty, damaged or an unsafe pickle is a :class:`~storysdk.errors.CheckpointError` here,
    before diffusers reads it (the pickle is read with ``weights_only=True`` onto the meta device)."""
    from ..errors import CheckpointError
    from ..runtime import load_torch_file, safetensors_keys

    if path.endswith(".safetensors"):
        return _SDXL_SINGLE_FILE_KEY in set(safetensors_keys(path, what="single-file checkpoint"))
    state = load_torch_file(path, what="single-file checkpoint", map_location="meta")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(
            f"single-file checkpoint {path!r} holds a {type(state).__name__}, not a state dict of tensors; "
            "give an SDXL or SD 1.5 .safetensors/.ckpt checkpoint"
        )
    return _SDXL_SINGLE_FILE_KEY in state


def single_file_pipeline(cls: Any, path: str, kwargs: dict[str, Any]) -> Any:
    """``cls.from_single_file(path, **kwargs)``, its failures one clear error naming the file.

    The file itself was checked (complete, safe) before; what is left is a checkpoint diffusers
    cannot map onto ``cls`` (another architecture, weights missing) or configs it cannot find.
    """
    from ..errors import CheckpointError, StorySDKError
    from ..runtime import load_torch_file

    try:
        return cls.from_single_file(path, **kwargs)
    except StorySDKError:
        raise
    except ImportError as exc:
        raise ConfigError(f"model {path!r} needs a package that is not installed: {exc}; install it and retry") from exc
    except MemoryError:
        raise
    except OSError as exc:  # the configs: no config= folder and no hub
        raise load_error(
            path,
            exc,
            f"A single-file checkpoint loads as {cls.__name__} and needs its base model's diffusers "
            "configs: pass config='<local diffusers folder of the base model>' (or reach the hub once).",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - diffusers' conversion raises many error types
        if not path.endswith(".safetensors"):
            load_torch_file(path, what="single-file checkpoint", map_location="meta")  # an unsafe pickle is named so
        message = str(exc).splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"single-file checkpoint {path!r} does not load as {cls.__name__} ({type(exc).__name__}: {message[:240]}); "
            "it is incomplete or of another architecture: give a complete SDXL or SD 1.5 checkpoint, or pass "
            "config='<diffusers folder of its base model>' when its architecture differs from the default"
        ) from exc

