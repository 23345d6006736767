"""The ``storydiffusion`` generator: character-consistent frames with Consistent Self-Attention.

Faithful to StoryDiffusion's image side (docs/storydiffusion.md §1, §2) by default:

- each character's id frames are rendered together first (write phase, §1.5), then every other
  frame reads the banked tokens of the characters it shows (read phase, §1.6); ``[NC]`` frames
  use plain attention;
- DDIM, 5.0 guidance, 768x768, ``sa32 = sa64 = 0.5``, warm-up 1 step, bypass 0.3 / 0.1
  (§1.7), FreeU on, the ``Japanese Anime`` style unless the plan or the ``style`` option names
  another; 50 steps as the paper (the hosted API's default is 25);
- seeds as upstream (``seed_mode="upstream"``): every pipeline call starts from a fresh
  generator seeded with the story seed, so every read frame starts from the same noise (§2).

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

The generator receives the scenes to render, possibly a subset (a resume). Id frames of the
characters those scenes need are always rendered (the bank needs them), but only requested
scenes are yielded, each as soon as its batch is done.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from storysdk.errors import ConfigError
from storysdk.interfaces import Generator, RenderContext
from storysdk.model import Asset, ImageAsset, Scene

if TYPE_CHECKING:
    from .render import CSARenderer, Frame
    from .state import ConsistencyState

__all__ = ["StoryDiffusionGenerator"]

MODES = ("standard", "lockstep")
SEED_MODES = ("upstream", "per_scene")
DEFAULT_SIZE = 768  # docs/storydiffusion.md §2 defaults table


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def _size(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % 32:
        near = max(32, round(value / 32) * 32) if isinstance(value, int) and not isinstance(value, bool) else 768
        raise ConfigError(
            f"{name} must be a positive multiple of 32 pixels (the 1/32-resolution self-attention "
            f"layers need whole tokens, docs/storydiffusion.md §1.2), got {value!r}; use {near}"
        )
    return value


class StoryDiffusionGenerator(Generator):
    """StoryDiffusion's Consistent Self-Attention on an SDXL checkpoint (see the module docs).

    Options: ``model`` (a name of :data:`storysdk.styles.SD_MODELS`, default ``Unstable``; a
    diffusers folder or hub id; a ``.safetensors`` file, with ``config`` for its diffusers
    configs), ``pipeline`` (an already loaded SDXL pipeline, used instead of ``model`` and set
    up in place: scheduler, FreeU, device), ``preset`` (``"tiny"``), ``sa32``/``sa64``, ``num_ids`` (used when the plan
    does not mark id frames; default: the plan's, else 3), ``steps``, ``guidance`` (> 1),
    ``width``/``height`` (multiples of 32; default the plan's, else 768), ``negative_prompt``,
    ``style``, ``seed`` (default: the story seed), ``seed_mode``, ``scheduler`` (``ddim``),
    ``dtype``/``device``/``offload``, ``freeu``, ``warmup_steps``, ``bypass_early``,
    ``bypass_late``, ``bypass_switch_step``, ``mode``, ``read_batch``, ``upstream_mode``,
    ``bank_device``, ``bank_limit_gib``.
    """

    name: ClassVar[str] = "storydiffusion"
    modality: ClassVar[str] = "image"  # type: ignore[assignment]
    batching: ClassVar[bool] = True
    needs_gpu: ClassVar[bool] = True
    tiny_preset: ClassVar[bool] = True
    description: ClassVar[str] = (
        "StoryDiffusion: character-consistent frames on SDXL with Consistent Self-Attention "
        "(id frames first, then frames reading their tokens)"
    )

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        pipeline: Any = None,
        preset: str | None = None,
        config: str | None = None,
        sa32: float = 0.5,
        sa64: float = 0.5,
        num_ids: int | None = None,
        steps: int = 50,
        guidance: float = 5.0,
        width: int | None = None,
        height: int | None = None,
        negative_prompt: str | None = None,
        style: str | None = None,
        seed: int | None = None,
        seed_mode: str = "upstream",
        scheduler: str = "ddim",
        dtype: str | None = None,
        device: str | None = None,
        offload: str | None = None,
        freeu: bool = True,
        warmup_steps: int = 1,
        bypass_early: float = 0.3,
        bypass_late: float = 0.1,
        bypass_switch_step: int = 20,
        mode: str = "standard",
        read_batch: int = 4,
        upstream_mode: bool = False,
        bank_device: str | None = None,
        bank_limit_gib: float | None = None,
    ) -> None:
        from .state import CSAConfig

        self.csa = CSAConfig(
            sa32=sa32,
            sa64=sa64,
            warmup_steps=warmup_steps,
            bypass_early=bypass_early,
            bypass_late=bypass_late,
            bypass_switch_step=bypass_switch_step,
        )
        if num_ids is not None:
            _positive_int("num_ids", num_ids)
        _positive_int("steps", steps)
        _positive_int("read_batch", read_batch)
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not guidance > 1:
            raise ConfigError(
                f"guidance must be > 1, got {guidance!r}: consistent self-attention runs on the two "
                "classifier-free-guidance halves of the batch and its step bookkeeping needs them "
                "(docs/storydiffusion.md §1.3); use for example 5.0 (upstream's default)"
            )
        if mode not in MODES:
            raise ConfigError(f"mode {mode!r} is unknown; use 'standard' (upstream) or 'lockstep' (bounded bank)")
        if seed_mode not in SEED_MODES:
            raise ConfigError(
                f"seed_mode {seed_mode!r} is unknown; use 'upstream' (same initial noise for every read "
                "frame) or 'per_scene' (each scene its own seed)"
            )
        if upstream_mode and mode != "standard":
            raise ConfigError("upstream_mode=True renders as upstream does; it cannot be combined with mode='lockstep'")
        if bank_limit_gib is not None and not bank_limit_gib > 0:
            raise ConfigError(f"bank_limit_gib must be a positive number of GiB or None, got {bank_limit_gib!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"seed must be a whole number or None (the story seed), got {seed!r}")
        self.model = model
        self.pipeline = pipeline
        self.preset = preset
        self.config = config
        self.num_ids = num_ids
        self.steps = steps
        self.guidance = float(guidance)
        self.width = _size("width", width)
        self.height = _size("height", height)
        self.negative_prompt = negative_prompt
        self.style = style
        self.seed = seed
        self.seed_mode = seed_mode
        self.scheduler = scheduler
        self.dtype = dtype
        self.device = device
        self.offload = offload
        self.freeu = freeu
        self.mode = mode
        self.read_batch = 1 if upstream_mode else read_batch
        self.upstream_mode = upstream_mode
        self.bank_device = bank_device
        self.bank_limit_gib = bank_limit_gib
        self._pipe: Any = None
        self._device: Any = None
        self.last_state: ConsistencyState | None = None
        if style is not None:
            from storysdk.styles import get_style

            get_style(style)  # an unknown style fails now, not after loading the model

    # -- model ------------------------------------------------------------------------------
    def load(self) -> Any:
        """Load the SDXL pipeline now (otherwise at the first :meth:`generate`) and return it."""
        if self._pipe is None:
            from storysdk.runtime import require_torch, resolve_device, resolve_dtype

            from .loading import load_pipeline, prepare_pipeline

            require_torch(f"generator {self.name!r}")
            device = resolve_device(self.device)
            if self.pipeline is not None:
                self._pipe = prepare_pipeline(
                    self.pipeline, device=device, offload=self.offload, scheduler=self.scheduler, freeu=self.freeu
                )
                self._device = device
                return self._pipe
            dtype = resolve_dtype(self.dtype, device)
            self._pipe = load_pipeline(
                self.model,
                preset=self.preset,
                device=device,
                dtype=dtype,
                offload=self.offload,
                scheduler=self.scheduler,
                freeu=self.freeu,
                config=self.config,
            )
            self._device = device
        return self._pipe

    # -- generation ----------------------------------------------------------------------------
    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterable[Asset]:
        """Yield an :class:`ImageAsset` for each of ``scenes`` as soon as its batch is rendered."""
        from .idframes import id_frames_of

        plan = ctx.plan
        width = _size("plan width", self.width if self.width is not None else plan.width) or DEFAULT_SIZE
        height = _size("plan height", self.height if self.height is not None else plan.height) or DEFAULT_SIZE
        num_ids = self.num_ids or int(plan.metadata.get("num_ids", 3))
        ids = id_frames_of(plan, num_ids)
        id_owner = {s.index: c for c, group in ids.items() for s in group}
        reads = [s for s in scenes if s.index not in id_owner]
        for s in reads:
            missing = [c for c in s.characters if c not in ids]
            if missing:
                raise ConfigError(
                    f"scene {s.index} shows {', '.join(missing)}, which has no id frames; every character "
                    "needs id frames (scenes showing only it) before other frames can share its look"
                )
        requested = {s.index for s in scenes}
        needed = [c for c in ids if any(c in s.characters for s in reads) or any(x.index in requested for x in ids[c])]
        yield from self._run(ctx, width, height, {c: ids[c] for c in needed}, reads, requested)

    def _run(
        self,
        ctx: RenderContext,
        width: int,
        height: int,
        ids: dict[str, list[Scene]],
        reads: list[Scene],
        requested: set[int],
    ) -> Iterator[ImageAsset]:
        from .render import CSARenderer
        from .state import ConsistencyState, TokenBank

        pipe = self.load()
        seed = self.seed if self.seed is not None else ctx.seed
        limit = int(self.bank_limit_gib * 2**30) if self.bank_limit_gib is not None else None
        bank = TokenBank(
            device=self.bank_device, max_steps=1 if self.mode == "lockstep" else None, limit_bytes=limit
        )
        state = ConsistencyState(self.csa, height=height, width=width, seed=seed, bank=bank)
        self.last_state = state
        frames = _FrameMaker(self, ctx, pipe, width, height, seed)
        with CSARenderer(pipe, state, steps=self.steps, guidance=self.guidance, seed=seed, device=self._device) as r:
            try:
                if self.mode == "standard":
                    yield from self._standard(r, frames, ids, reads, requested)
                else:
                    yield from self._lockstep(r, frames, ids, reads, requested)
            finally:
                bank.clear()

    def _standard(
        self, r: CSARenderer, frames: _FrameMaker, ids: dict[str, list[Scene]], reads: list[Scene], requested: set[int]
    ) -> Iterator[ImageAsset]:
        for char, group in ids.items():  # §1.5: one write call per character
            batch = frames.write(char, group)
            yield from self._assets(r, batch, frames, requested, f"id frames of {char}")
        for start in range(0, len(reads), self.read_batch):  # §1.6 (one frame per call upstream)
            batch = [frames.read(s) for s in reads[start : start + self.read_batch]]
            yield from self._assets(r, batch, frames, requested, "frames")

    def _lockstep(
        self, r: CSARenderer, frames: _FrameMaker, ids: dict[str, list[Scene]], reads: list[Scene], requested: set[int]
    ) -> Iterator[ImageAsset]:
        done: set[int] = set()
        for start in range(0, len(reads), self.read_batch):
            chunk = reads[start : start + self.read_batch]
            chars = [c for c in ids if any(c in s.characters for s in chunk)]
            batch = [f for c in chars for f in frames.write(c, ids[c])] + [frames.read(s) for s in chunk]
            wanted = {s.index for s in chunk} | {s.index for c in chars for s in ids[c] if s.index not in done}
            yield from self._assets(r, batch, frames, requested & wanted, "frames with their id frames")
            done |= {s.index for c in chars for s in ids[c]}
        for char, group in ids.items():  # id frames no read frame needed (or no read frames at all)
            if any(s.index in requested and s.index not in done for s in group):
                yield from self._assets(r, frames.write(char, group), frames, requested - done, f"id frames of {char}")

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
        from storysdk.styles import DEFAULT_STYLE

        self.gen = gen
        self.ctx = ctx
        self.pipe = pipe
        self.width = width
        self.height = height
        self.seed = seed
        self.style = gen.style if gen.style is not None else (ctx.plan.style or DEFAULT_STYLE)
        user_negative = gen.negative_prompt if gen.negative_prompt is not None else ctx.plan.negative_prompt
        self.user_negative = user_negative or ""

    def _texts(self, scene: Scene) -> tuple[str, str]:
        from storysdk.styles import apply_style

        return apply_style(self.style, scene.prompt, self.user_negative)  # §2: style_neg + " " + user_neg

    def _noise(self, scenes: Sequence[Scene]) -> list[Any]:
        from .render import initial_noise

        if self.gen.seed_mode == "upstream":  # §2: a fresh Generator(seed) before every pipeline call
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
        row = frame.row
        seed = self.seed if self.gen.seed_mode == "upstream" else self.ctx.scene_seed(frame.key)
        return {
            "seed": seed,
            "id_frame": row.kind == "write",
            "characters": list(row.characters),
            "style": self.style,
            "steps": self.gen.steps,
            "guidance": self.gen.guidance,
            "sa32": self.gen.csa.sa32,
            "sa64": self.gen.csa.sa64,
            "mode": self.gen.mode,
            "model": "tiny-sdxl" if self.gen.preset == "tiny" else str(self.gen.model or "Unstable"),
        }
