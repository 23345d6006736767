"""The ``storydiffusion`` generator: character-consistent frames with Consistent Self-Attention.

Faithful to StoryDiffusion's image side (docs/storydiffusion.md §1, §2) by default:

- each character's id frames are rendered together first (write phase, §1.5), then every other
  frame reads the banked tokens of the characters it shows (read phase, §1.6); ``[NC]`` frames
  use plain attention;
- DDIM, 5.0 guidance, 768x768, ``sa32 = sa64 = 0.5``, warm-up 1 step, bypass 0.3 / 0.1
  (§1.7), FreeU on, the ``Japanese Anime`` style unless the plan or the ``style`` option names
  another; 50 steps as the paper (the hosted API's default is 25);
- seeds as upstream (``seed_mode="upstream"``): every pipeline call starts from a fresh
  generator seeded with the story seed (or ``noise_seed``), so every read frame starts from the
  same noise (§2).

Id frames are this generator's business, not the planner's: :meth:`check_plan` chooses them
(``num_ids``, ``allow_nc_id_frames``, ``nc_rows_check``; the rules are in :mod:`.idframes`)
and refuses a plan whose characters lack them, before any model is loaded; ``generate`` uses
the same choice. Plans from any planner work: the ``script`` planner's (named or unnamed mode),
plans that mark their id frames (``Scene.metadata["id_frame"]``), and plain plans, whose id
frames are derived as upstream does.

Beyond upstream, each with an option that restores upstream's behaviour:

- ``read_batch`` read frames share one UNet batch, each row reading the bank of its own
  characters (``upstream_mode=True`` or ``read_batch=1``: one frame per call);
- any number of named characters, a bank per character (upstream stops at 2);
- ``bank_device="cpu"`` keeps the bank in host memory; ``bank_limit_gib`` refuses to grow past
  a size; ``mode="lockstep"`` denoises the read frames in the same batch as the id frames, so
  only the current step's tokens are ever held: the bank no longer grows with the step count.
  Lockstep gives the same images as the standard mode (same seeds, same samples and bypass
  draws, which are re-seeded per call); only floating-point reduction order differs with the
  batch size (the test suite bounds it). Its cost: the id frames are denoised again with every
  chunk of ``read_batch`` read frames;
- ``seed_mode="per_scene"``: each frame starts from its own noise (``ctx.scene_seed``).

The generator receives the scenes to render, possibly a subset (a resume). The read frames are
cut into chunks of ``read_batch`` over the whole plan, whatever subset is asked for, so a
resumed run renders every frame in the same UNet batch as an uninterrupted one and its images
are byte-identical (a chunk holding one pending frame is rendered whole: at most
``read_batch - 1`` finished frames are rendered again). Id frames of the characters those
chunks need are always rendered (the bank needs them), but only requested scenes are yielded,
each as soon as its batch is done.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import field_validator, model_validator

from storysdk.errors import ConfigError
from storysdk.interfaces import Generator, RenderContext
from storysdk.model import Asset, ImageAsset, Scene, StoryPlan
from storysdk.options import DeviceOptions, Field

from .loading import MULTI_CALL_SCHEDULERS, SCHEDULERS

if TYPE_CHECKING:
    from .render import CSARenderer, Frame
    from .state import ConsistencyState

__all__ = ["StoryDiffusionGenerator"]

DEFAULT_SIZE = 768  # docs/storydiffusion.md §2 defaults table (H = W = 768)
_SIZE_RULE = (
    "a positive multiple of 32 pixels (the 1/32-resolution self-attention layers need whole tokens, "
    "docs/storydiffusion.md §1.2)"
)


def _plan_size(name: str, value: object) -> int | None:
    """A plan's width or height, checked like the options (a plan is not validated by them)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % 32:
        near = max(32, round(value / 32) * 32) if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_SIZE
        raise ConfigError(f"{name} must be {_SIZE_RULE}, got {value!r}; use {near}")
    return value


class StoryDiffusionGenerator(Generator):
    """StoryDiffusion's Consistent Self-Attention on an SDXL checkpoint (see the module docs).

    Options are declared in :class:`StoryDiffusionGenerator.Options` (``storysdk plugins
    --options storydiffusion`` lists them with their defaults and ranges).
    """

    name: ClassVar[str] = "storydiffusion"
    modality: ClassVar[str] = "image"  # type: ignore[assignment]
    batching: ClassVar[bool] = True
    #: A character's id frames render together as one batch: under an interleaved planner the
    #: track renders once the story is written, not scene by scene.
    needs_whole_plan: ClassVar[bool] = True
    needs_gpu: ClassVar[bool] = True
    tiny_preset: ClassVar[bool] = True
    description: ClassVar[str] = (
        "StoryDiffusion: character-consistent frames on SDXL with Consistent Self-Attention "
        "(id frames first, then frames reading their tokens)"
    )

    class Options(DeviceOptions):
        model: str | os.PathLike[str] | None = Field(
            None,
            description="a base-model name (Unstable, RealVision, SDXL, Juggernaut; default Unstable, "
            "docs/storydiffusion.md §2), a diffusers folder or hub id, or an SDXL .safetensors file",
        )
        pipeline: Any = Field(
            None,
            description="an already loaded SDXL pipeline, used instead of model and set up in place "
            "(scheduler, FreeU, device)",
        )
        config: str | None = Field(
            None, description="a local SDXL diffusers folder whose configs a single-file checkpoint needs"
        )
        num_ids: int | None = Field(
            None,
            ge=1,
            description="id (reference) frames per character, rendered together first (docs/storydiffusion.md "
            "§1.5); None: the plan's metadata['num_ids'], else 3 (the hosted API's default; upstream's app: 1). "
            "A plan that marks its id frames keeps them",
        )
        allow_nc_id_frames: bool = Field(
            False,
            description="unnamed mode: [NC] frames may be among the first num_ids frames, as predict.py and "
            "the hosted API do; False: an error, as the gradio apps",
        )
        nc_rows_check: bool = Field(
            False,
            description="named mode: also refuse [NC] in the first num_ids rows of the script, as lowvram.py does",
        )
        sa32: float = Field(
            0.5, ge=0, le=1, description="share of id-frame tokens shared at the 1/32 layers (docs/storydiffusion.md §2: 0.5)"
        )
        sa64: float = Field(
            0.5, ge=0, le=1, description="share of id-frame tokens shared at the 1/16 layers (docs/storydiffusion.md §2: 0.5)"
        )
        steps: int = Field(
            50, ge=1, description="denoising steps (the paper's 50, docs/storydiffusion.md §2; the hosted API uses 25)"
        )
        guidance: float = Field(
            5.0,
            gt=1,
            description="classifier-free guidance scale, > 1: CSA runs on both guidance halves "
            "(docs/storydiffusion.md §1.3, §2: 5.0)",
        )
        width: int | None = Field(
            None, gt=0, multiple_of=32, description=f"frame width, {_SIZE_RULE}; None: the plan's, else 768"
        )
        height: int | None = Field(
            None, gt=0, multiple_of=32, description=f"frame height, {_SIZE_RULE}; None: the plan's, else 768"
        )
        negative_prompt: str | None = Field(
            None, description="negative prompt after the style's (None: the plan's); docs/storydiffusion.md §2"
        )
        style: str | None = Field(
            None, description="a registered style name (None: the plan's, else Japanese Anime, docs/storydiffusion.md §2)"
        )
        noise_seed: int | None = Field(
            None, description="seed of the initial noise and CSA's draws instead of the story seed (None: the story's)"
        )
        seed_mode: Literal["upstream", "per_scene"] = Field(
            "upstream",
            description="'upstream': the same initial noise for every read frame (docs/storydiffusion.md §2); "
            "'per_scene': each scene its own",
        )
        scheduler: str = Field(
            "ddim",
            description=f"one of {', '.join(SCHEDULERS)} or a diffusers scheduler class name (upstream: DDIM, "
            "docs/storydiffusion.md §2)",
        )
        freeu: bool = Field(True, description="FreeU with upstream's factors s1=0.6, s2=0.4, b1=1.1, b2=1.2 (docs/storydiffusion.md §2)")
        warmup_steps: int = Field(1, ge=0, description="first steps with plain attention (docs/storydiffusion.md §1.7: 1)")
        bypass_early: float = Field(
            0.3, ge=0, le=1, description="chance a layer call skips CSA before bypass_switch_step (docs/storydiffusion.md §1.7: 0.3)"
        )
        bypass_late: float = Field(
            0.1, ge=0, le=1, description="chance a layer call skips CSA from bypass_switch_step on (docs/storydiffusion.md §1.7: 0.1)"
        )
        bypass_switch_step: int = Field(
            20, ge=0, description="the step where bypass_late takes over (docs/storydiffusion.md §1.7: 20)"
        )
        mode: Literal["standard", "lockstep"] = Field(
            "standard",
            description="'standard': id frames, then the reads (upstream); 'lockstep': reads denoised with the id "
            "frames, the bank holds one step",
        )
        read_batch: int = Field(4, ge=1, description="read frames per UNet batch (upstream: 1)")
        upstream_mode: bool = Field(False, description="render exactly as upstream: one read frame per call, standard mode")
        bank_device: str | None = Field(
            None, description="where the token bank lives ('cpu': host memory); None: where the tokens are made"
        )
        bank_limit_gib: float | None = Field(
            None, gt=0, description="refuse to grow the token bank past this many GiB; None: no limit"
        )

        renamed: ClassVar[dict[str, str]] = {"seed": "noise_seed"}

        @field_validator("scheduler")
        @classmethod
        def _one_call_scheduler(cls, value: str) -> str:
            name = SCHEDULERS.get(value.strip().lower(), value)
            if name in MULTI_CALL_SCHEDULERS:
                raise ValueError(
                    f"scheduler {value!r} calls the UNet more than once per step, which consistent "
                    "self-attention cannot follow (docs/storydiffusion.md §1.3); use 'ddim' (upstream), "
                    "'euler', 'dpmpp_2m' or 'unipc'"
                )
            if value.strip().lower() not in SCHEDULERS and not value.endswith("Scheduler"):
                raise ValueError(
                    f"scheduler {value!r} is unknown; use one of {', '.join(SCHEDULERS)} or a diffusers "
                    "scheduler class name such as 'DDIMScheduler'"
                )
            return value

        @field_validator("style")
        @classmethod
        def _known_style(cls, value: str | None) -> str | None:
            if value is not None:
                from storysdk.styles import get_style

                get_style(value)  # an unknown style fails now, not after loading the model
            return value

        @model_validator(mode="after")
        def _upstream_is_standard(self) -> StoryDiffusionGenerator.Options:
            if self.upstream_mode and self.mode != "standard":
                raise ValueError(
                    "upstream_mode=True renders as upstream does; it cannot be combined with mode='lockstep'"
                )
            return self

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from .state import CSAConfig

        o = self.options
        self._csa = CSAConfig(
            sa32=o.sa32,
            sa64=o.sa64,
            warmup_steps=o.warmup_steps,
            bypass_early=o.bypass_early,
            bypass_late=o.bypass_late,
            bypass_switch_step=o.bypass_switch_step,
        )
        self._pipe: Any = None
        self._device: Any = None
        self._preset: str | None = None
        self._weights: Any = None  # storysdk.runtime.Weights, decided once (offline) by `weights`
        self.last_state: ConsistencyState | None = None

    @property
    def read_batch(self) -> int:
        """Read frames per UNet batch in effect (1 under ``upstream_mode``)."""
        return 1 if self.options.upstream_mode else self.options.read_batch

    @property
    def weights(self) -> str:
        """The weights this generator uses, as recorded in ``run.json``: ``"tiny"``, ``"tiny (fallback: ...)"``
        (``preset='auto'`` without the model in the local cache), the model, or the given pipeline."""
        o = self.options
        if o.pipeline is not None:
            return f"the given pipeline ({self.model_name()})"
        w = self._resolved_weights()
        return str(w) if w.preset == "tiny" else self.model_name()

    def _resolved_weights(self) -> Any:
        if self._weights is None:
            from storysdk.runtime import resolve_weights

            from .loading import resolve_model

            ref, single = resolve_model(self.options.model)
            self._weights = resolve_weights(self.options.preset, ref, filename=single, who=f"generator {self.name!r}")
        return self._weights

    def model_name(self) -> str:
        """What renders: ``"tiny-sdxl"``, the ``model`` option (default ``Unstable``) or the given pipeline's name."""
        from .styles import DEFAULT_SD_MODEL

        o = self.options
        if o.pipeline is not None:
            return str(getattr(o.pipeline, "name_or_path", None) or type(o.pipeline).__name__)
        if self._preset == "tiny" or (self._preset is None and o.preset == "tiny"):
            return "tiny-sdxl"
        return str(o.model or DEFAULT_SD_MODEL)

    # -- the plan ---------------------------------------------------------------------------
    def id_frames(self, plan: StoryPlan) -> dict[str, list[Scene]]:
        """``{character: its id scenes}``, chosen by this generator's options (see :mod:`.idframes`)."""
        from .idframes import choose_id_frames

        o = self.options
        return choose_id_frames(
            plan, o.num_ids, allow_nc_id_frames=o.allow_nc_id_frames, nc_rows_check=o.nc_rows_check
        )

    def check_plan(self, plan: StoryPlan) -> None:
        """Refuse, before any model is loaded, a plan this generator cannot render.

        Its size must be a multiple of 32, every character needs its id frames (the first
        ``num_ids`` frames showing only it; see :mod:`.idframes`) and every other frame may show
        only characters with id frames.
        """
        self._layout(plan, plan.scenes)

    def _layout(self, plan: StoryPlan, scenes: Sequence[Scene]) -> tuple[int, int, dict[str, list[Scene]]]:
        o = self.options
        width = _plan_size("plan width", o.width if o.width is not None else plan.width) or DEFAULT_SIZE
        height = _plan_size("plan height", o.height if o.height is not None else plan.height) or DEFAULT_SIZE
        ids = self.id_frames(plan)
        owned = {s.index for group in ids.values() for s in group}
        for s in scenes:
            if s.index in owned:
                continue
            missing = [c for c in s.characters if c not in ids]
            if missing:
                raise ConfigError(
                    f"scene {s.index} shows {', '.join(missing)}, which has no id frames; every character "
                    "needs id frames (scenes showing only it) before other frames can share its look"
                )
        return width, height, ids

    # -- model ------------------------------------------------------------------------------
    def load(self) -> Any:
        """Load the SDXL pipeline now (otherwise at the first :meth:`generate`) and return it."""
        if self._pipe is None:
            from storysdk.runtime import resolve

            from .loading import load_pipeline, prepare_pipeline, resolve_model

            o = self.options
            who = f"generator {self.name!r}"
            if o.pipeline is not None:
                r = resolve(who, preset=None, model=None, device=o.device, dtype=None)
                self._pipe = prepare_pipeline(
                    o.pipeline, device=r.device, offload=o.offload, scheduler=o.scheduler, freeu=o.freeu
                )
                self._device, self._preset = r.device, "pipeline"
                return self._pipe
            ref, single = resolve_model(o.model)
            # the preset 'auto' decided once, offline (a single file of a hub repo counts when it is cached)
            preset = self._resolved_weights().preset
            r = resolve(who, preset=preset, model=ref if single is None else None, device=o.device, dtype=o.dtype)
            self._pipe = load_pipeline(
                o.model,
                preset=r.preset,
                device=r.device,
                dtype=r.dtype,
                offload=o.offload,
                scheduler=o.scheduler,
                freeu=o.freeu,
                config=o.config,
                weights_seed=o.weights_seed,
            )
            self._device, self._preset = r.device, r.preset
        return self._pipe

    # -- generation ----------------------------------------------------------------------------
    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterable[Asset]:
        """Yield an :class:`ImageAsset` for each of ``scenes`` as soon as its batch is rendered."""
        plan = ctx.plan
        width, height, ids = self._layout(plan, [*plan.scenes, *scenes])  # the chunks hold other scenes too
        owned = {s.index for group in ids.values() for s in group}
        requested = {s.index for s in scenes}
        # chunks over the whole plan: a resumed run batches every frame as an uninterrupted one
        reads = [s for s in plan.scenes if s.index not in owned]
        in_plan = {s.index for s in reads}
        reads += [s for s in scenes if s.index not in owned and s.index not in in_plan]  # not in the plan
        step = self.read_batch
        chunks = [reads[i : i + step] for i in range(0, len(reads), step)]
        yield from self._run(ctx, width, height, ids, chunks, requested)

    def _run(
        self,
        ctx: RenderContext,
        width: int,
        height: int,
        ids: dict[str, list[Scene]],
        chunks: list[list[Scene]],
        requested: set[int],
    ) -> Iterator[ImageAsset]:
        from .render import CSARenderer
        from .state import ConsistencyState, TokenBank

        o = self.options
        pipe = self.load()
        seed = o.noise_seed if o.noise_seed is not None else ctx.seed
        limit = int(o.bank_limit_gib * 2**30) if o.bank_limit_gib is not None else None
        bank = TokenBank(device=o.bank_device, max_steps=1 if o.mode == "lockstep" else None, limit_bytes=limit)
        state = ConsistencyState(self._csa, height=height, width=width, seed=seed, bank=bank)
        self.last_state = state
        frames = _FrameMaker(self, ctx, pipe, width, height, seed)
        with CSARenderer(pipe, state, steps=o.steps, guidance=o.guidance, seed=seed, device=self._device) as r:
            try:
                if o.mode == "standard":
                    yield from self._standard(r, frames, ids, chunks, requested)
                else:
                    yield from self._lockstep(r, frames, ids, chunks, requested)
            finally:
                bank.clear()

    def _standard(
        self,
        r: CSARenderer,
        frames: _FrameMaker,
        ids: dict[str, list[Scene]],
        chunks: list[list[Scene]],
        requested: set[int],
    ) -> Iterator[ImageAsset]:
        todo = [c for c in chunks if any(s.index in requested for s in c)]
        shown = {name for chunk in todo for s in chunk for name in s.characters}
        for char, group in ids.items():  # §1.5: one write call per character
            if char in shown or any(s.index in requested for s in group):
                batch = frames.write(char, group)
                yield from self._assets(r, batch, frames, requested, f"id frames of {char}")
        for chunk in todo:  # §1.6 (one frame per call upstream)
            batch = [frames.read(s) for s in chunk]
            yield from self._assets(r, batch, frames, requested, "frames")

    def _lockstep(
        self,
        r: CSARenderer,
        frames: _FrameMaker,
        ids: dict[str, list[Scene]],
        chunks: list[list[Scene]],
        requested: set[int],
    ) -> Iterator[ImageAsset]:
        first: dict[str, int] = {}  # the chunk whose batch yields each character's id frames
        for k, chunk in enumerate(chunks):
            for c in ids:
                if c not in first and any(c in s.characters for s in chunk):
                    first[c] = k
        for k, chunk in enumerate(chunks):
            chars = [c for c in ids if any(c in s.characters for s in chunk)]
            here = {s.index for s in chunk} | {s.index for c in chars if first[c] == k for s in ids[c]}
            wanted = here & requested
            if not wanted:
                continue
            batch = [f for c in chars for f in frames.write(c, ids[c])] + [frames.read(s) for s in chunk]
            yield from self._assets(r, batch, frames, wanted, "frames with their id frames")
        for char, group in ids.items():  # id frames no read frame needs (or no read frames at all)
            if char not in first and any(s.index in requested for s in group):
                yield from self._assets(r, frames.write(char, group), frames, requested, f"id frames of {char}")

    def _assets(
        self, r: CSARenderer, batch: list[Frame], frames: _FrameMaker, requested: set[int], what: str
    ) -> Iterator[ImageAsset]:
        ctx = frames.ctx
        first = batch[0].key.index

        def progress(done: int, total: int) -> None:
            ctx.report(done, total, first, f"{what}: step {done}/{total}")

        images = r.render(batch, progress)
        for frame, image in zip(batch, images):
            scene = frame.key
            if scene.index in requested:
                yield ImageAsset(scene.index, image, made_by=self.name, metadata=frames.metadata(frame))


class _FrameMaker:
    """Builds the :class:`Frame` of a scene: styled prompt, negative prompt, noise, row."""

    def __init__(self, gen: StoryDiffusionGenerator, ctx: RenderContext, pipe: Any, width: int, height: int, seed: int) -> None:
        from .styles import DEFAULT_STYLE

        o = gen.options
        self.gen = gen
        self.ctx = ctx
        self.pipe = pipe
        self.width = width
        self.height = height
        self.seed = seed
        self.style = o.style if o.style is not None else (ctx.plan.style or DEFAULT_STYLE)
        user_negative = o.negative_prompt if o.negative_prompt is not None else ctx.plan.negative_prompt
        self.user_negative = user_negative or ""

    def _texts(self, scene: Scene) -> tuple[str, str]:
        from storysdk.styles import apply_style

        return apply_style(self.style, scene.prompt, self.user_negative)  # §2: style_neg + " " + user_neg

    def _noise(self, scenes: Sequence[Scene]) -> list[Any]:
        from .render import initial_noise

        if self.gen.options.seed_mode == "upstream":  # §2: a fresh Generator(seed) before every pipeline call
            return initial_noise(self.pipe, len(scenes), self.height, self.width, self.seed)
        return [initial_noise(self.pipe, 1, self.height, self.width, self.ctx.scene_seed(s))[0] for s in scenes]

    def write(self, char: str, group: Sequence[Scene]) -> list[Frame]:
        from .render import Frame
        from .state import Row

        noise = self._noise(group)
        return [Frame(s, *self._texts(s), noise[i], Row.write(char)) for i, s in enumerate(group)]

    def read(self, scene: Scene) -> Frame:
        from .render import Frame
        from .state import Row

        return Frame(scene, *self._texts(scene), self._noise([scene])[0], Row.read(scene.characters))

    def metadata(self, frame: Frame) -> dict[str, Any]:
        o = self.gen.options
        row = frame.row
        seed = self.seed if self.gen.options.seed_mode == "upstream" else self.ctx.scene_seed(frame.key)
        return {
            "seed": seed,
            "id_frame": row.kind == "write",
            "characters": list(row.characters),
            "style": self.style,
            "steps": o.steps,
            "guidance": o.guidance,
            "sa32": o.sa32,
            "sa64": o.sa64,
            "mode": o.mode,
            "model": self.gen.model_name(),
        }
