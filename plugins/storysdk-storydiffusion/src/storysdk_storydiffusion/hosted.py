"""The hosted StoryDiffusion request (docs/storydiffusion-api.md): form fields in, comic image out.

:func:`parse_fields` takes exactly the fields of the hosted endpoint, as a multipart form sends
them (strings; missing or blank fields take their defaults), and checks them. The request is
then rendered by an ordinary :class:`storysdk.Pipeline` (:func:`build_pipeline`): the ``script``
planner (unnamed mode: the character description is prepended to every non-``[NC]`` line),
the ``storydiffusion`` generator (the first ``num_ids`` lines are the id frames, ``[NC]``
allowed among them as predict.py does) and the ``comic`` composer; the answer is the first
comic page in ``output_format``/``output_quality``. Only the first 10 lines of
``comic_description`` are honoured, as the hosted demo does (predict.py keeps
``splitlines()[:10]``).

:func:`run_request` renders into an output folder, so a run that stopped (a crash, a
cancelled job) resumes there, and reports progress; given a
:class:`~storysdk.ComponentCache` it keeps the loaded SDXL pipeline of each ``sd_model``
between requests. It is what ``POST /v1/storydiffusion`` runs on the server's workers
(:mod:`.routes`). :func:`render` is the one-call convenience for scripts.

``ref_image`` (the PhotoMaker path, docs/storydiffusion.md §3) is not supported yet: giving one is a
:class:`~storysdk.errors.ConfigError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from storysdk import ComponentCache, Pipeline, Registry, get_registry
from storysdk.errors import ConfigError, ScriptError
from storysdk.interfaces import ProgressCallback
from storysdk.limits import LimitError, Limits
from storysdk.model import Story, StoryRequest
from storysdk.output import atomic_write
from storysdk.styles import get_style, match_name

from .styles import SD_MODELS, get_sd_model

__all__ = [
    "DEFAULT_COMIC",
    "DEFAULT_FIELDS",
    "DEFAULT_NEGATIVE",
    "FIELDS",
    "HostedRequest",
    "HostedResult",
    "build_pipeline",
    "check_request",
    "compose_page",
    "encode_page",
    "generator_options",
    "parse_fields",
    "render",
    "render_story",
    "request_key",
    "run_request",
    "story_request",
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
#: The largest seed: torch's ``Generator.manual_seed`` takes 64-bit unsigned seeds (predict.py seeds a torch.Generator).
MAX_SEED = 2**64 - 1
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
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"field {name!r} is not UTF-8 text; send UTF-8") from None
    return str(value)


def _shown(raw: str) -> str:
    return repr(raw) if len(raw) <= 40 else repr(raw[:30]) + f"... ({len(raw)} characters)"


def _number(fields: Mapping[str, Any], name: str, kind: type, lo: float | None, hi: float | None) -> Any:
    raw = _text(fields, name).strip() or DEFAULT_FIELDS[name]
    what = "a number" if kind is float else "a whole number"
    try:
        if len(raw) > 64:  # no field's value is that long; int() of a long text is slow
            raise ValueError(raw)
        value = kind(raw) if kind is float else int(raw)
    except ValueError:
        raise ConfigError(f"field {name!r} must be {what}, got {_shown(raw)}") from None
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"field {name!r} must be a finite number, got {_shown(raw)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"field {name!r} must be in the range {lo} - {hi}, got {raw if len(raw) <= 40 else _shown(raw)}")
    return value


def parse_fields(fields: Mapping[str, Any], registry: Registry | None = None) -> HostedRequest:
    """Validate form ``fields`` (defaults for missing or blank ones); :class:`ConfigError` names the field.

    ``style_name`` must be a style registered in ``registry`` and ``comic_style`` a style of its
    ``comic`` composer (default registry: :func:`storysdk.get_registry`).
    """
    reg = registry if registry is not None else get_registry()
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
        seed = _number(fields, "seed", int, 0, MAX_SEED)
    sizes: dict[str, int] = {}
    for name in ("image_width", "image_height"):
        value = _number(fields, name, int, None, None)
        if value not in SIZES:
            raise ConfigError(f"field {name!r} must be one of 256, 288, ..., 1024 (multiples of 32), got {value}")
        sizes[name] = value
    fmt = _text(fields, "output_format").strip().lower() or DEFAULT_FIELDS["output_format"]
    if fmt not in FORMATS:
        raise ConfigError(f"field 'output_format' must be webp, jpeg or png, got {fmt!r}")
    sd_model = _text(fields, "sd_model").strip() or DEFAULT_FIELDS["sd_model"]
    style_name = _text(fields, "style_name").strip() or DEFAULT_FIELDS["style_name"]
    comic_style = _text(fields, "comic_style").strip() or DEFAULT_FIELDS["comic_style"]
    checks: tuple[tuple[str, Callable[[], object]], ...] = (
        ("sd_model", lambda: get_sd_model(sd_model)),
        ("style_name", lambda: get_style(style_name, reg)),
        ("comic_style", lambda: reg.create("composer", "comic", style=comic_style)),  # cheap: no model
    )
    for name, check in checks:
        try:
            check()
        except ConfigError as exc:
            raise ConfigError(f"field {name!r}: {exc}") from None
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


def story_request(req: HostedRequest) -> StoryRequest:
    """The :class:`StoryRequest` of a hosted request: its frame lines, character, style, negative prompt, seed, size."""
    return StoryRequest(
        script=req.comic_description,
        characters=req.character_description,
        style=req.style_name,
        negative_prompt=req.negative_prompt,
        seed=req.seed,
        width=req.image_width,
        height=req.image_height,
    )


def generator_options(req: HostedRequest) -> dict[str, Any]:
    """The ``storydiffusion`` generator's options for ``req`` (style, negative prompt and seed come with the plan)."""
    return {
        "model": req.sd_model,
        "sa32": req.sa32_setting,
        "sa64": req.sa64_setting,
        "steps": req.num_steps,
        "guidance": req.guidance_scale,
        "num_ids": req.num_ids,
        "allow_nc_id_frames": True,  # predict.py renders [NC] lines among the first num_ids in the id batch
    }


def build_pipeline(
    req: HostedRequest,
    *,
    registry: Registry | None = None,
    runtime: Mapping[str, Any] | None = None,
    cache: ComponentCache | None = None,
    options: Mapping[str, Any] | None = None,
    compose: bool = True,
    limits: Limits | None = None,
) -> Pipeline:
    """The pipeline that renders ``req``: script planner, storydiffusion generator, comic composer (PNG pages).

    ``options`` go to the generator (``device``, ``mode``, ``pipeline``, ...) over the
    request's own; ``runtime`` (``preset``, ``device``, ``dtype``, ``offload``) to every
    component that takes it. ``compose=False`` leaves the composer out. ``limits`` (default:
    :class:`storysdk.Limits`' defaults) bound the request, the options and the plan.
    """
    composers = [("comic", {"style": req.comic_style, "format": "png"})] if compose else []
    return Pipeline(
        planner=("script", {"skip_blank_lines": False}),  # the hosted demo keeps blank lines (predict.py)
        generators=[("storydiffusion", {**generator_options(req), **dict(options or {})})],
        composers=composers,
        registry=registry,
        runtime=runtime,
        cache=cache,
        limits=limits,
    )


def _limit_field(exc: LimitError) -> str:
    """The hosted field a :class:`LimitError` is about (the words of its ``where``)."""
    if "request characters" in exc.where or "plan characters" in exc.where:
        return "character_description"
    words = set(re.findall(r"[a-z_]+", exc.where))
    for names, field in (
        ({"negative_prompt"}, "negative_prompt"),
        ({"style"}, "style_name"),
        ({"scene", "script", "caption", "title", "scenes"}, "comic_description"),
        ({"character"}, "character_description"),
        ({"width"}, "image_width"),
        ({"height"}, "image_height"),
        ({"steps"}, "num_steps"),
    ):
        if words & names:
            return field
    return "comic_description"


def check_request(
    req: HostedRequest,
    *,
    registry: Registry | None = None,
    runtime: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
) -> None:
    """Plan ``req`` and ask every component whether it can render the plan (id frames, sizes); loads no model.

    A request the pipeline would refuse raises :class:`~storysdk.errors.ConfigError` now,
    naming the field: a malformed frame line is one of ``comic_description``'s (the planner's
    :class:`~storysdk.errors.ScriptError` says which line), a bad character text one of
    ``character_description``'s, a request over ``limits`` (a
    :class:`~storysdk.limits.LimitError`: a caption or prompt too long) the field that asked.
    """
    try:
        pipe = build_pipeline(req, registry=registry, runtime=runtime, limits=limits)
        pipe.check_plan(pipe.plan(story_request(req)))
    except ScriptError as exc:
        field = "character_description" if exc.field == "characters" else "comic_description"
        raise ConfigError(f"field {field!r}: {exc}") from None
    except LimitError as exc:
        raise ConfigError(f"field {_limit_field(exc)!r}: {exc}") from None


def request_key(req: HostedRequest, *extra: Any) -> str:
    """A name for the request's output folder: a hash of every field (and of ``extra``, e.g. the server's settings)."""
    text = json.dumps([attrs.asdict(req), *extra], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


@attrs.frozen
class HostedResult:
    """A rendered request: the answer's bytes and mime type, and where it was written in the output folder."""

    data: bytes
    mime: str
    path: Path
    story: Story
    #: which weights rendered it (``{"generator storydiffusion": "tiny"}``, :meth:`storysdk.Pipeline.weights`)
    weights: dict[str, str] = attrs.field(factory=dict)


def _shared_generator(req: HostedRequest, registry: Registry, runtime: Mapping[str, Any], cache: ComponentCache) -> Any:
    """The generator kept in ``cache`` that loads the SDXL pipeline of ``req.sd_model`` once per cache.

    Requests differ in steps, guidance and attention shares, which are generator options; the
    weights depend only on the base model and the runtime (preset, device, dtype, offload).
    """
    info = registry.get("generator", "storydiffusion")
    taken = info.options()
    model_options = {k: v for k, v in runtime.items() if k in taken}
    model_options["model"] = match_name("base model", req.sd_model, SD_MODELS)  # one entry per model name
    return cache.get("generator", info, model_options)


def run_request(
    req: HostedRequest,
    out_dir: str | Path,
    *,
    registry: Registry | None = None,
    runtime: Mapping[str, Any] | None = None,
    cache: ComponentCache | None = None,
    progress: ProgressCallback | None = None,
    options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    limits: Limits | None = None,
) -> HostedResult:
    """Render ``req`` into ``out_dir`` and write the answer there (``response.<format>``).

    A folder holding an unfinished run of the same request (and settings) resumes it: the
    frames already there are kept and only the others are rendered. A folder holding another
    run is refused with :class:`~storysdk.errors.OutputFolderError` unless ``overwrite``.
    ``progress`` receives the pipeline's events (and may raise to stop the run, as a
    cancelled job does). With ``cache``, the base model's pipeline is loaded once and shared
    by every request with the same ``sd_model`` and ``runtime``. ``limits`` bound the request
    (see :func:`check_request`). The result says which weights rendered it.
    """
    reg = registry if registry is not None else get_registry()
    run = dict(runtime or {})
    extra = dict(options or {})
    weights: dict[str, str] | None = None
    if cache is not None and "pipeline" not in extra:  # the per-request generator renders with the shared one
        check_request(req, registry=reg, runtime=run, limits=limits)  # refused before the model loads
        shared = _shared_generator(req, reg, run, cache)
        weights = {"generator storydiffusion": str(shared.weights)}
        extra["pipeline"] = shared.load()
    pipe = build_pipeline(req, registry=reg, runtime=run, cache=cache, options=extra, limits=limits)
    if weights is None:
        weights = pipe.weights()
    folder = Path(out_dir)
    story = pipe.run(story_request(req), out_dir=folder, progress=progress, overwrite=overwrite)
    pages = story.files.get("comic", [])
    if not pages:
        raise ConfigError("the comic composer made no page; the request has no frame lines to draw")
    data, mime = encode_page(pages[0], req)
    path = folder / f"response.{req.output_format}"
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return HostedResult(data, mime, path, story, weights)


def encode_page(page: str | Path, req: HostedRequest) -> tuple[bytes, str]:
    """``(bytes, mime type)`` of the page image ``page`` in ``req.output_format``, as predict.py encodes it."""
    from PIL import Image

    with Image.open(page) as im:
        image = im.convert("RGB")
    pil_format, mime = FORMATS[req.output_format]
    buf = io.BytesIO()
    if pil_format == "PNG":
        image.save(buf, format="PNG")
    else:  # predict.py: quality and optimize for the lossy formats
        image.save(buf, format=pil_format, quality=req.output_quality, optimize=True)
    return buf.getvalue(), mime


def compose_page(story: Story, req: HostedRequest, registry: Registry | None = None) -> tuple[bytes, str]:
    """The first comic page of an already rendered ``story`` in ``req.comic_style``, encoded as ``req`` asks."""
    reg = registry if registry is not None else get_registry()
    composer = reg.create("composer", "comic", style=req.comic_style, format="png")
    with tempfile.TemporaryDirectory() as tmp:
        pages = composer.compose(story, Path(tmp))  # type: ignore[attr-defined]
        if not pages:
            raise ConfigError("the story has no pictures to typeset")
        return encode_page(pages[0], req)


def _refuse_ref_image(ref_image: Any) -> None:
    if ref_image is not None:
        raise ConfigError(
            "ref_image (a reference photo, the PhotoMaker path) is not supported yet; "
            "describe the character in 'character_description' instead"
        )


def _preset_runtime(preset: str | None) -> dict[str, Any]:
    return {} if preset is None else {"preset": preset}


def render_story(fields: Mapping[str, Any], ref_image: Any = None, preset: str | None = None, **options: Any) -> Story:
    """Plan and render the request: the :class:`Story` with one image per frame (no composing, no files).

    ``options`` go to the ``storydiffusion`` generator (e.g. ``device``, ``dtype``, ``pipeline``).
    """
    _refuse_ref_image(ref_image)
    req = parse_fields(fields)
    pipe = build_pipeline(req, runtime=_preset_runtime(preset), options=options, compose=False)
    return pipe.run(story_request(req))


def render(
    fields: Mapping[str, Any],
    ref_image: Any = None,
    preset: str | None = None,
    out_dir: str | Path | None = None,
    **options: Any,
) -> tuple[bytes, str]:
    """Render the hosted request ``fields``; returns ``(image bytes, mime type)`` of the comic's first page.

    ``preset="tiny"`` uses the tiny SDXL (toy weights); ``options`` go to the generator.
    With ``out_dir`` the frames and the page stay there (and a second call resumes or reuses
    them); without, they go to a temporary folder.
    """
    _refuse_ref_image(ref_image)
    req = parse_fields(fields)  # parsed once: a blank seed draws one random seed for the whole request
    if out_dir is not None:
        result = run_request(req, out_dir, runtime=_preset_runtime(preset), options=options)
        return result.data, result.mime
    with tempfile.TemporaryDirectory() as tmp:
        result = run_request(req, tmp, runtime=_preset_runtime(preset), options=options)
        return result.data, result.mime
