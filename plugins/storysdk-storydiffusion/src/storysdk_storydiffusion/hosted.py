"""The hosted StoryDiffusion request format (docs/storydiffusion-api.md): form fields in, comic image out.

``render(fields)`` takes exactly the fields of the hosted endpoint, as a multipart form sends
them (strings; missing or blank fields take their defaults), and returns the composed comic as
``(image bytes, mime type)`` in ``output_format``/``output_quality``. It runs the ``script``
planner in unnamed mode (the character description is prepended to every non-``[NC]`` line,
the first ``num_ids`` lines are the id frames, ``[NC]`` allowed among them as predict.py does),
the ``storydiffusion`` generator and the ``comic`` composer. Only the first 10 lines of
``comic_description`` are honoured, as the hosted demo does (predict.py keeps
``splitlines()[:10]``).

``ref_image`` (the PhotoMaker path, docs/storydiffusion.md §3) is not supported yet: giving one is a
:class:`~storysdk.errors.ConfigError`.

:class:`HostedRenderer` does the same for one request after another and keeps the loaded SDXL
pipelines between them (what ``storysdk serve`` runs in each worker).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from storysdk.errors import ConfigError
from storysdk.model import Story, StoryRequest

__all__ = [
    "DEFAULT_FIELDS",
    "FIELDS",
    "HostedRenderer",
    "HostedRequest",
    "compose_page",
    "parse_fields",
    "render",
    "render_story",
]

MAX_LINES = 10  # docs/storydiffusion-api.md: the hosted demo honours only the first 10 lines
#: The hosted default negative prompt (the "anatomy list" of docs/storydiffusion-api.md / predict.py).
DEFAULT_NEGATIVE = (
    "bad anatomy, bad hands, missing fingers, extra fingers, three hands, three legs, bad arms, "
    "missing legs, missing arms, poorly drawn face, bad face, fused face, cloned face, three crus, "
    "fused feet, fused thigh, extra crus, ugly fingers, horn, cartoon, cg, 3d, unreal, animate, "
    "amputation, disconnected limbs"
)
#: The default example of docs/storydiffusion-api.md: 8 frames, 3 id frames.
DEFAULT_COMIC = "\n".join(
    [
        "at home, read new paper #at home, The newspaper says there is a treasure house in the forest.",
        "on the road, near the forest",
        "[NC] The car on the road, near the forest #He drives to the forest in search of treasure.",
        "[NC]A tiger appeared in the forest, at night ",
        "very frightened, open mouth, in the forest, at night",
        "running very fast, in the forest, at night",
        "[NC] A house in the forest, at night #Suddenly, he discovers the treasure house!",
        "in the house filled with treasure, laughing, at night #He is overjoyed inside the house.",
    ]
)
#: Every field of the hosted request and its default, as a form would send it.
DEFAULT_FIELDS: dict[str, str] = {
    "seed": "42",
    "num_ids": "3",
    "sd_model": "Unstable",
    "num_steps": "25",
    "ref_image": "",
    "image_width": "768",
    "image_height": "768",
    "sa32_setting": "0.5",
    "sa64_setting": "0.5",
    "output_format": "webp",
    "guidance_scale": "5",
    "output_quality": "80",
    "negative_prompt": DEFAULT_NEGATIVE,
    "character_description": "a man, wearing black suit",
    "comic_description": DEFAULT_COMIC,
    "style_strength_ratio": "20",
    "style_name": "Disney Charactor",
    "comic_style": "Classic Comic Style",
}
FIELDS = tuple(DEFAULT_FIELDS)
SIZES = tuple(range(256, 1025, 32))  # predict.py: image_width/height choices 256..1024 step 32
FORMATS = {"webp": ("WEBP", "image/webp"), "jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}


@attrs.frozen
class HostedRequest:
    """A validated hosted request (typed values)."""

    seed: int
    num_ids: int
    sd_model: str
    num_steps: int
    image_width: int
    image_height: int
    sa32_setting: float
    sa64_setting: float
    output_format: str
    guidance_scale: float
    output_quality: int
    negative_prompt: str
    character_description: str
    comic_description: str
    style_strength_ratio: int
    style_name: str
    comic_style: str


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None:
        return DEFAULT_FIELDS[name]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return str(value)


def _number(fields: Mapping[str, Any], name: str, kind: type, lo: float | None, hi: float | None) -> Any:
    raw = _text(fields, name).strip() or DEFAULT_FIELDS[name]
    try:
        value = kind(raw) if kind is float else int(raw)
    except ValueError:
        raise ConfigError(
            f"field {name!r} must be {'a number' if kind is float else 'a whole number'}, got {raw!r}"
        ) from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"field {name!r} must be in the range {lo} - {hi}, got {raw}")
    return value


def parse_fields(fields: Mapping[str, Any]) -> HostedRequest:
    """Validate form ``fields`` (defaults for missing or blank ones); :class:`ConfigError` names the field."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(map(repr, unknown))}; the hosted request has: {', '.join(FIELDS)}")
    ref = fields.get("ref_image")
    if ref not in (None, "", b""):
        raise ConfigError(
            "field 'ref_image' (a reference photo, the PhotoMaker path) is not supported yet; "
            "leave it blank and describe the character in 'character_description'"
        )
    seed_text = _text(fields, "seed").strip() if fields.get("seed") is not None else DEFAULT_FIELDS["seed"]
    if seed_text == "":
        seed = int.from_bytes(os.urandom(2), "big")  # blank = random, as predict.py
    else:
        seed = _number(fields, "seed", int, 0, None)
    sizes: dict[str, int] = {}
    for name in ("image_width", "image_height"):
        value = _number(fields, name, int, None, None)
        if value not in SIZES:
            raise ConfigError(f"field {name!r} must be one of 256, 288, ..., 1024 (multiples of 32), got {value}")
        sizes[name] = value
    fmt = _text(fields, "output_format").strip().lower() or DEFAULT_FIELDS["output_format"]
    if fmt not in FORMATS:
        raise ConfigError(f"field 'output_format' must be webp, jpeg or png, got {fmt!r}")
    from storysdk.styles import get_sd_model, get_style

    sd_model = _text(fields, "sd_model").strip() or DEFAULT_FIELDS["sd_model"]
    style_name = _text(fields, "style_name").strip() or DEFAULT_FIELDS["style_name"]
    for name, check, value in (("sd_model", get_sd_model, sd_model), ("style_name", get_style, style_name)):
        try:
            check(value)
        except ConfigError as exc:
            raise ConfigError(f"field {name!r}: {exc}") from None
    comic_style = _text(fields, "comic_style").strip() or DEFAULT_FIELDS["comic_style"]
    from storysdk.builtins.comic import resolve_style

    try:
        resolve_style(comic_style)
    except ConfigError as exc:
        raise ConfigError(f"field 'comic_style': {exc}") from None
    guidance = _number(fields, "guidance_scale", float, 0.1, 10)
    if guidance <= 1:
        raise ConfigError(
            f"field 'guidance_scale' is {guidance}: values in 0.1 - 1 switch classifier-free guidance off, "
            "which consistent self-attention needs (docs/storydiffusion.md §1.3); use a value in (1, 10], e.g. 5"
        )
    character = _text(fields, "character_description")
    if not character.strip():
        raise ConfigError("field 'character_description' is empty; describe the character, e.g. 'a man, wearing black suit'")
    comic = _text(fields, "comic_description")
    lines = comic.splitlines()[:MAX_LINES]
    num_ids = _number(fields, "num_ids", int, 1, None)
    if num_ids > len(lines):
        raise ConfigError(
            f"field 'num_ids' is {num_ids} but 'comic_description' has {len(lines)} frame line(s) "
            f"(of at most {MAX_LINES} honoured); it must not exceed the number of frame lines"
        )
    return HostedRequest(
        seed=seed,
        num_ids=num_ids,
        sd_model=sd_model,
        num_steps=_number(fields, "num_steps", int, 20, 50),
        image_width=sizes["image_width"],
        image_height=sizes["image_height"],
        sa32_setting=_number(fields, "sa32_setting", float, 0, 1),
        sa64_setting=_number(fields, "sa64_setting", float, 0, 1),
        output_format=fmt,
        guidance_scale=guidance,
        output_quality=_number(fields, "output_quality", int, 0, 100),
        negative_prompt=_text(fields, "negative_prompt"),
        character_description=character,
        comic_description="\n".join(lines),
        style_strength_ratio=_number(fields, "style_strength_ratio", int, 15, 50),
        style_name=style_name,
        comic_style=comic_style,
    )


def render_story(fields: Mapping[str, Any], ref_image: Any = None, preset: str | None = None, **options: Any) -> Story:
    """Plan and render the request: the :class:`Story` with one image per frame (no composing).

    ``options`` go to the ``storydiffusion`` generator (e.g. ``device``, ``dtype``).
    """
    _refuse_ref_image(ref_image)
    return _render_request(parse_fields(fields), preset, options)


def _refuse_ref_image(ref_image: Any) -> None:
    if ref_image is not None:
        raise ConfigError(
            "ref_image (a reference photo, the PhotoMaker path) is not supported yet; "
            "describe the character in 'character_description' instead"
        )


def _render_request(
    req: HostedRequest, preset: str | None, options: Mapping[str, Any], holder: dict[str, Any] | None = None
) -> Story:
    from storysdk.builtins.script import ScriptPlanner
    from storysdk.interfaces import RenderContext

    from .generator import StoryDiffusionGenerator

    request = StoryRequest(
        script=req.comic_description,
        characters=req.character_description,
        style=req.style_name,
        negative_prompt=req.negative_prompt,
        seed=req.seed,
        width=req.image_width,
        height=req.image_height,
    )
    # unnamed mode; predict.py renders [NC] lines among the first num_ids in the id batch
    planner = ScriptPlanner(num_ids=req.num_ids, allow_nc_id_frames=True, skip_blank_lines=False)
    plan = planner.plan(request)
    gen = StoryDiffusionGenerator(
        model=req.sd_model,
        preset=preset,
        sa32=req.sa32_setting,
        sa64=req.sa64_setting,
        steps=req.num_steps,
        guidance=req.guidance_scale,
        style=req.style_name,
        negative_prompt=req.negative_prompt,
        seed=req.seed,
        **options,
    )
    if holder is not None:  # HostedRenderer keeps the loaded pipeline
        holder["pipeline"] = gen.load()
    story = Story(plan=plan)
    for asset in gen.generate(plan.scenes, RenderContext(plan=plan, seed=req.seed, component=gen.name)):
        story.add(asset)
    return story


def compose_page(story: Story, req: HostedRequest) -> tuple[bytes, str]:
    """The first comic page of ``story`` in ``req.comic_style``, encoded as ``req`` asks."""
    from PIL import Image

    from storysdk.builtins.comic import ComicComposer

    composer = ComicComposer(style=req.comic_style, seed=req.seed, format="png")
    with tempfile.TemporaryDirectory() as tmp:
        pages = composer.compose(story, Path(tmp))
        with Image.open(pages[0]) as im:
            page = im.convert("RGB")
    pil_format, mime = FORMATS[req.output_format]
    buf = io.BytesIO()
    if pil_format == "PNG":
        page.save(buf, format="PNG")
    else:  # predict.py: quality and optimize for the lossy formats
        page.save(buf, format=pil_format, quality=req.output_quality, optimize=True)
    return buf.getvalue(), mime


def render(
    fields: Mapping[str, Any], ref_image: Any = None, preset: str | None = None, **options: Any
) -> tuple[bytes, str]:
    """Render the hosted request ``fields``; returns ``(image bytes, mime type)`` of the comic's first page.

    ``preset="tiny"`` uses the tiny SDXL (toy weights); ``options`` go to the generator.
    """
    _refuse_ref_image(ref_image)
    req = parse_fields(fields)  # parsed once: a blank seed draws one random seed for the whole request
    return compose_page(_render_request(req, preset, options), req)


class HostedRenderer:
    """Renders hosted requests one after another, keeping loaded SDXL pipelines between them.

    ``preset`` and ``options`` (``device``, ``dtype``, ``offload``, ``mode``, ``read_batch``,
    ...) are given to every request's ``storydiffusion`` generator. The pipeline of each base
    model (``sd_model``; every name shares the tiny pipeline under ``preset="tiny"``) is loaded
    at its first request and reused; at most ``max_models`` stay loaded, the least recently
    used is dropped first. One renderer serves one request at a time (give each worker thread
    its own).
    """

    def __init__(self, *, preset: str | None = None, max_models: int = 1, **options: Any) -> None:
        if isinstance(max_models, bool) or not isinstance(max_models, int) or max_models < 1:
            raise ConfigError(f"max_models must be a whole number >= 1, got {max_models!r}")
        if "pipeline" in options:
            raise ConfigError("HostedRenderer loads its own pipelines; do not pass 'pipeline'")
        self.preset = preset
        self.options = dict(options)
        self.max_models = max_models
        self.loads = 0
        self._pipes: OrderedDict[str, Any] = OrderedDict()

    @property
    def loaded(self) -> list[str]:
        """The keys of the loaded pipelines (``"tiny"`` or the checkpoint), least recently used first."""
        return list(self._pipes)

    def _key(self, sd_model: str) -> str:
        from storysdk.runtime import resolve_preset

        from .loading import resolve_model

        ref, single = resolve_model(sd_model)
        kind = resolve_preset(self.preset, ref if single is None else None)
        return "tiny" if kind == "tiny" else f"{ref}/{single}" if single else ref

    def render_story(self, req: HostedRequest) -> Story:
        """Render a parsed request into a :class:`Story` (one image per frame)."""
        key = self._key(req.sd_model)
        pipe = self._pipes.get(key)
        if pipe is not None:
            self._pipes.move_to_end(key)
            return _render_request(req, self.preset, {**self.options, "pipeline": pipe})
        while len(self._pipes) >= self.max_models:  # make room before loading the next model
            self._pipes.popitem(last=False)
            _free_accelerator_memory()
        holder: dict[str, Any] = {}
        try:
            return _render_request(req, self.preset, self.options, holder)
        finally:  # kept even when this request fails after loading (a bad frame line, ...)
            if "pipeline" in holder:
                self.loads += 1
                self._pipes[key] = holder["pipeline"]

    def render(self, fields: Mapping[str, Any]) -> tuple[bytes, str]:
        """``(image bytes, mime type)`` of the request ``fields``, as :func:`render` returns."""
        req = parse_fields(fields)
        return compose_page(self.render_story(req), req)


def _free_accelerator_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - the plugin depends on torch
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
