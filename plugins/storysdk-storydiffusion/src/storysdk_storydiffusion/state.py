"""The per-run state of Consistent Self-Attention (CSA): batch layout, step, samplers, token bank.

StoryDiffusion keeps all of this in module globals (``docs/storydiffusion.md`` §1.3); here one
:class:`ConsistencyState` lives for one generation and is shared by the processors of one
UNet. Nothing in this module imports torch at import time.

The unit of work is one UNet batch, described by :class:`Row` objects, one per image (the
two classifier-free-guidance halves of an image share its row):

- ``Row.write(name)``: an identity ("id") frame of character ``name``. All write rows of one
  character form its write group (§1.5): each attends to its own tokens plus the sampled
  tokens of the other images of the group, and the sampled tokens are cached in the bank.
- ``Row.read(names)``: a later frame that attends to the banked tokens of ``names`` (§1.6).
- ``Row.plain()`` (or a read row without names, an ``[NC]`` frame): ordinary self-attention.

Upstream renders one write group per call and one read frame per call; this state allows any
mix in one batch (several read frames, several characters, and write groups together with read
rows for the bounded-memory "lockstep" mode).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from storysdk.errors import ComponentError, ConfigError
from storysdk.interfaces import derive_seed

if TYPE_CHECKING:
    import torch

__all__ = ["CSAConfig", "ConsistencyState", "Row", "TokenBank"]

ROW_KINDS = ("write", "read", "plain")


def _check_rate(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be between 0 and 1 (a sampling rate or probability), got {value}")
    return value


@attrs.frozen
class CSAConfig:
    """The constants of CSA, upstream defaults (all configurable).

    ``sa32``/``sa64``: share of tokens an id image contributes at the 1/32 and 1/16 resolution
    layers (§1.2, defaults 0.5 from §2). ``warmup_steps``: the first steps use plain attention
    (1 in the low-VRAM app, 5 in app.py/predict.py, §1.7). ``bypass_early``/``bypass_late``:
    probability that one layer call uses plain attention before/after ``bypass_switch_step``
    (0.3 / 0.1 / 20, §1.7).
    """

    sa32: float = attrs.field(default=0.5, converter=float)  # docs/storydiffusion.md §2 defaults
    sa64: float = attrs.field(default=0.5, converter=float)  # docs/storydiffusion.md §2 defaults
    warmup_steps: int = 1  # docs/storydiffusion.md §1.7: step 0 always plain
    bypass_early: float = attrs.field(default=0.3, converter=float)  # §1.7: steps 1-19
    bypass_late: float = attrs.field(default=0.1, converter=float)  # §1.7: step 20 on
    bypass_switch_step: int = 20  # §1.7

    def __attrs_post_init__(self) -> None:
        _check_rate("sa32", self.sa32)
        _check_rate("sa64", self.sa64)
        _check_rate("bypass_early", self.bypass_early)
        _check_rate("bypass_late", self.bypass_late)
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be a whole number >= 0, got {self.warmup_steps!r}")
        if not isinstance(self.bypass_switch_step, int) or self.bypass_switch_step < 0:
            raise ConfigError(
                f"bypass_switch_step must be a whole number >= 0, got {self.bypass_switch_step!r}"
            )


@attrs.frozen
class Row:
    """The role of one image in a UNet batch: ``write`` (id frame), ``read`` or ``plain``."""

    kind: str
    characters: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        if self.kind not in ROW_KINDS:
            raise ConfigError(f"row kind {self.kind!r} is unknown; use one of {', '.join(ROW_KINDS)}")
        if self.kind == "write" and len(self.characters) != 1:
            raise ConfigError(f"a write row belongs to exactly one character, got {self.characters!r}")

    @classmethod
    def write(cls, character: str) -> Row:
        """An id frame of ``character``."""
        return cls("write", (character,))

    @classmethod
    def read(cls, characters: Sequence[str]) -> Row:
        """A frame reading the bank of ``characters`` (plain when empty, like an ``[NC]`` frame)."""
        return cls("read", tuple(characters)) if characters else cls("plain")

    @classmethod
    def plain(cls) -> Row:
        """A frame with ordinary self-attention."""
        return cls("plain")


class TokenBank:
    """Cached id-frame tokens: ``bank[character][step][layer]`` is a list of ``(2, k_i, C)`` tensors.

    ``device``: where the tensors are kept (``"cpu"`` keeps a GPU run's bank in host memory;
    ``None`` keeps them where they were made, as upstream does, §1.9). ``max_steps``: keep only
    the last ``max_steps`` steps (1 in lockstep mode); ``None`` keeps all (upstream).
    ``limit_bytes``: raise :class:`ConfigError` instead of growing past this size.
    """

    def __init__(
        self,
        *,
        device: str | torch.device | None = None,
        max_steps: int | None = None,
        limit_bytes: int | None = None,
    ) -> None:
        if max_steps is not None and max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1 or None, got {max_steps}")
        if limit_bytes is not None and limit_bytes <= 0:
            raise ConfigError(f"the bank limit must be a positive number of bytes, got {limit_bytes}")
        self.device = device
        self.max_steps = max_steps
        self.limit_bytes = limit_bytes
        self._data: dict[str, dict[int, dict[str, list[torch.Tensor]]]] = {}
        self._nbytes = 0
        self.peak_bytes = 0

    def put(self, character: str, step: int, layer: str, tokens: Sequence[torch.Tensor]) -> None:
        """Store the sampled tokens of every id image of ``character`` for ``(step, layer)``."""
        steps = self._data.setdefault(character, {})
        if self.max_steps is not None:
            for old in [s for s in steps if s <= step - self.max_steps]:
                self._nbytes -= _size(steps.pop(old))
        layers = steps.setdefault(step, {})
        if layer in layers:
            self._nbytes -= _size({layer: layers.pop(layer)})
        # the tokens come from advanced indexing, so they are already copies of the activations
        stored = [t.detach().to(self.device) if self.device is not None else t.detach() for t in tokens]
        added = _size({layer: stored})
        if self.limit_bytes is not None and self._nbytes + added > self.limit_bytes:
            raise ConfigError(
                f"the CSA token bank would grow past its limit of {self.limit_bytes / 2**30:.3f} GiB "
                f"(character {character!r}, step {step}); raise bank_limit_gib, use mode='lockstep' "
                "(bank memory independent of the step count), bank_device='cpu', or lower "
                "sa32/sa64, steps, num_ids or the image size"
            )
        layers[layer] = stored
        self._nbytes += added
        self.peak_bytes = max(self.peak_bytes, self._nbytes)

    def get(self, character: str, step: int, layer: str) -> list[torch.Tensor]:
        """The tokens stored for ``(character, step, layer)``; :class:`ComponentError` when absent."""
        try:
            return self._data[character][step][layer]
        except KeyError:
            raise ComponentError(
                f"no id-frame tokens are banked for character {character!r} at step {step}, layer "
                f"{layer!r}; render the character's id frames (a write phase with the same number "
                "of steps) before frames that read them"
            ) from None

    def has(self, character: str) -> bool:
        return bool(self._data.get(character))

    def characters(self) -> list[str]:
        return [c for c, steps in self._data.items() if steps]

    def steps(self, character: str) -> list[int]:
        return sorted(self._data.get(character, {}))

    def numel(self) -> int:
        """Number of stored elements (the quantity of the §1.9 formula, before bytes per element)."""
        return sum(
            t.numel()
            for steps in self._data.values()
            for layers in steps.values()
            for ts in layers.values()
            for t in ts
        )

    def nbytes(self) -> int:
        return self._nbytes

    def clear(self, character: str | None = None) -> None:
        """Drop everything (or one character's tokens)."""
        if character is None:
            self._data.clear()
            self._nbytes = 0
        else:
            self._nbytes -= sum(_size(layers) for layers in self._data.pop(character, {}).values())


def _size(layers: dict[str, list[torch.Tensor]]) -> int:
    return sum(t.numel() * t.element_size() for ts in layers.values() for t in ts)


class ConsistencyState:
    """Everything one generation's CSA processors share (replaces upstream's globals, §1.3).

    ``height``/``width``: the pixel size of the frames (multiples of 32, §1.2); they fix the
    token counts ``n32 = (H//32)(W//32)`` and ``n64 = (H//16)(W//16)`` that pick ``sa32`` or
    ``sa64``. ``seed``: re-seeds, at every :meth:`begin_call`, the ``random.Random`` that draws
    the bypass decisions (upstream re-seeds Python's ``random`` before every pipeline call,
    §1.7/§2) and one ``torch.Generator`` per character for the token samples.

    The step index is set by the pipeline (:meth:`on_step_end`, called from
    ``callback_on_step_end``), never by counting layer calls; :meth:`on_unet_call` (a UNet
    forward pre-hook) refuses a UNet call that would break that bookkeeping (§1.3).
    """

    def __init__(
        self,
        config: CSAConfig | None = None,
        *,
        height: int,
        width: int,
        seed: int = 0,
        bank: TokenBank | None = None,
    ) -> None:
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value <= 0 or value % 32:
                raise ConfigError(
                    f"{name} must be a positive multiple of 32 pixels for consistent self-attention "
                    f"(its 1/32-resolution layers need whole tokens, docs/storydiffusion.md §1.2), got {value!r}; "
                    f"use {max(32, round(int(value) / 32) * 32) if isinstance(value, int) else 768}"
                )
        self.config = config or CSAConfig()
        self.height = height
        self.width = width
        self.seed = int(seed)
        self.bank = bank if bank is not None else TokenBank()
        self.n32 = (height // 32) * (width // 32)  # §1.2: tokens of the up_blocks.0 layers
        self.n64 = (height // 16) * (width // 16)  # §1.2: tokens of the up_blocks.1 layers
        self.rows: tuple[Row, ...] | None = None
        self.step = 0
        self.layer_calls = 0
        self.csa_calls = 0
        self._py_rng = random.Random(self.seed)
        self._token_gens: dict[str, torch.Generator] = {}
        self._write_groups: dict[str, list[int]] = {}
        self._read_groups: dict[tuple[str, ...], list[int]] = {}
        self._plain_rows: list[int] = []
        self._indices: dict[tuple[str, int], list[torch.Tensor]] = {}
        self._indices_step = -1
        self._unet_calls_in_step = 0

    # -- the call ------------------------------------------------------------------------
    def begin_call(self, rows: Sequence[Row]) -> None:
        """Start one pipeline call whose UNet batch holds ``rows`` (in order, per CFG half)."""
        import torch

        rows = tuple(rows)
        if not rows:
            raise ConfigError("a CSA call needs at least one row")
        self.rows = rows
        self.step = 0
        self._unet_calls_in_step = 0
        self._py_rng = random.Random(self.seed)  # §2 setup_seed before every pipeline call
        self._write_groups = {}
        self._read_groups = {}
        self._plain_rows = []
        for pos, row in enumerate(rows):
            if row.kind == "write":
                self._write_groups.setdefault(row.characters[0], []).append(pos)
            elif row.kind == "read":
                self._read_groups.setdefault(row.characters, []).append(pos)
            else:
                self._plain_rows.append(pos)
        for chars in self._read_groups:
            for c in chars:
                if c not in self._write_groups and not self.bank.has(c):
                    raise ConfigError(
                        f"a frame reads character {c!r}, but no id frames of {c!r} were rendered; "
                        "render its id frames first (or in the same batch, lockstep mode)"
                    )
        self._token_gens = {
            c: torch.Generator(device="cpu").manual_seed(derive_seed(self.seed, "csa-tokens", c))
            for c in self._write_groups
        }
        self._indices = {}
        self._indices_step = -1

    def end_call(self) -> None:
        """Finish the call: the processors fall back to plain attention until the next one."""
        self.rows = None

    @property
    def active(self) -> bool:
        """Whether a call with at least one write or read row is in progress."""
        return self.rows is not None and len(self._plain_rows) < len(self.rows)

    @property
    def write_groups(self) -> dict[str, list[int]]:
        return self._write_groups

    @property
    def read_groups(self) -> dict[tuple[str, ...], list[int]]:
        return self._read_groups

    @property
    def plain_rows(self) -> list[int]:
        return self._plain_rows

    # -- steps, driven by the pipeline ---------------------------------------------------------
    def on_unet_call(self, batch_size: int) -> None:
        """UNet forward pre-hook: check the batch is CFG-doubled and the UNet runs once per step."""
        if self.rows is None:
            return
        if batch_size != 2 * len(self.rows):
            raise ConfigError(
                f"consistent self-attention needs classifier-free guidance: the UNet got a batch of "
                f"{batch_size} for {len(self.rows)} image(s), expected {2 * len(self.rows)} "
                "(uncond + cond halves, docs/storydiffusion.md §1.3); use guidance > 1"
            )
        if self._unet_calls_in_step:
            raise ConfigError(
                f"the scheduler called the UNet twice in denoising step {self.step}; consistent "
                "self-attention needs one UNet call per step (§1.3); use a one-call scheduler "
                "such as 'ddim', 'euler' or 'dpmpp_2m' (not Heun or DPM2)"
            )
        self._unet_calls_in_step += 1

    def on_step_end(self, step_index: int) -> None:
        """``callback_on_step_end``: step ``step_index`` is done, the next one starts."""
        self.step = int(step_index) + 1
        self._unet_calls_in_step = 0

    # -- sampling ---------------------------------------------------------------------------
    def rate_for(self, token_count: int) -> float:
        """``sa32`` for the 1/32-resolution layers, ``sa64`` for any other count (§1.2, as upstream)."""
        return self.config.sa32 if token_count == self.n32 else self.config.sa64

    def check_token_count(self, token_count: int, layer: str) -> None:
        if token_count not in (self.n32, self.n64):
            raise ComponentError(
                f"layer {layer!r} got {token_count} tokens, but a {self.width}x{self.height} SDXL frame "
                f"has {self.n32} (1/32) or {self.n64} (1/16) tokens in its up-block self-attention; "
                "build the ConsistencyState with the size the pipeline renders"
            )

    def sampled_indices(self, character: str, token_count: int) -> list[torch.Tensor]:
        """The token positions each id image of ``character`` contributes at this step (§1.4).

        One Bernoulli(``rate_for(token_count)``) sample per id image and resolution, drawn
        afresh at every denoising step and shared by all layers of that step (§1.3).
        """
        import torch

        if self._indices_step != self.step:
            self._indices = {}
            self._indices_step = self.step
            for char, positions in self._write_groups.items():
                gen = self._token_gens[char]
                for n, rate in ((self.n32, self.config.sa32), (self.n64, self.config.sa64)):
                    mask = torch.rand((len(positions), n), generator=gen) < rate
                    self._indices[(char, n)] = [torch.nonzero(m, as_tuple=True)[0] for m in mask]
        try:
            return self._indices[(character, token_count)]
        except KeyError:
            raise ComponentError(
                f"character {character!r} has no write rows in this call (or {token_count} is not a "
                f"token count of a {self.width}x{self.height} frame)"
            ) from None

    def use_csa(self) -> bool:
        """Warm-up and random bypass (§1.7): one draw of the state's ``random.Random`` per layer call."""
        cfg = self.config
        if self.step < cfg.warmup_steps:
            return False
        bypass = cfg.bypass_early if self.step < cfg.bypass_switch_step else cfg.bypass_late
        return self._py_rng.random() > bypass
