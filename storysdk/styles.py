"""StoryDiffusion's style templates and base-model names (data from ``plugins/storysdk-storydiffusion/docs/storydiffusion-styles.md``).

A style wraps a frame prompt in a positive template (``{prompt}`` is replaced by the
prompt) and has a negative prompt that is put in front of the user's negative prompt.
:func:`apply_style` does both exactly as upstream does (``plugins/storysdk-storydiffusion/docs/storydiffusion.md`` §2):

    positive = template.replace("{prompt}", prompt)
    negative = style_negative + " " + user_negative

Two sets of names are accepted: the nine styles of the current open-source app
(:data:`CURRENT_STYLE_NAMES`) and the two older names that the hosted API still uses
(:data:`LEGACY_STYLE_NAMES`: ``Cinematic`` and ``Disney Charactor``, misspelling kept).

Deviation: upstream silently falls back to its default style for an unknown name;
:func:`get_style` raises :class:`~storysdk.errors.ConfigError` listing the valid names.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

import attrs

from .errors import ConfigError

__all__ = [
    "CURRENT_STYLE_NAMES",
    "DEFAULT_SD_MODEL",
    "DEFAULT_STYLE",
    "HOSTED_DEFAULT_STYLE",
    "HOSTED_STYLE_NAMES",
    "LEGACY_STYLE_NAMES",
    "NO_STYLE",
    "SD_MODELS",
    "STYLES",
    "SDModel",
    "Style",
    "apply_style",
    "get_sd_model",
    "get_style",
    "style_names",
]

#: The style that applies no template (``None`` means this style too).
NO_STYLE = "(No style)"

#: Default of the open-source app (``plugins/storysdk-storydiffusion/docs/storydiffusion.md`` §2, ``DEFAULT_STYLE_NAME``).
DEFAULT_STYLE = "Japanese Anime"

#: Default of the hosted API's ``style_name`` field (``plugins/storysdk-storydiffusion/docs/storydiffusion-api.md``; sic).
HOSTED_DEFAULT_STYLE = "Disney Charactor"


@attrs.frozen
class Style:
    """One style: ``positive`` is a template containing ``{prompt}``, ``negative`` a negative prompt."""

    name: str
    positive: str
    negative: str

    def __attrs_post_init__(self) -> None:
        if "{prompt}" not in self.positive:
            raise ConfigError(
                f"style {self.name!r}: the positive template must contain '{{prompt}}' "
                "where the frame prompt goes"
            )

    def apply(self, prompt: str, negative: str = "") -> tuple[str, str]:
        """``(positive, negative)`` for ``prompt``, as upstream builds them (§2).

        ``str.replace`` is used, not ``str.format``, so braces in a prompt are kept as they are.
        """
        return self.positive.replace("{prompt}", prompt), self.negative + " " + negative


# plugins/storysdk-storydiffusion/docs/storydiffusion-styles.md, first table (current app, utils/style_template.py at HEAD);
# strings copied character for character.
_CURRENT: tuple[Style, ...] = (
    Style(
        name="(No style)",
        positive="{prompt}",
        negative="",
    ),
    Style(
        name="Japanese Anime",
        positive="anime artwork illustrating {prompt}. created by japanese anime studio. highly emotional. best quality, high resolution, (Anime Style, Manga Style:1.3), Low detail, sketch, concept art, line art, webtoon, manhua, hand drawn, defined lines, simple shades, minimalistic, High contrast, Linear compositions, Scalable artwork, Digital art, High Contrast Shadows",
        negative="lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry",
    ),
    Style(
        name="Digital/Oil Painting",
        positive="{prompt} . (Extremely Detailed Oil Painting:1.2), glow effects, godrays, Hand drawn, render, 8k, octane render, cinema 4d, blender, dark, atmospheric 4k ultra detailed, cinematic sensual, Sharp focus, humorous illustration, big depth of field",
        negative="anime, cartoon, graphic, text, painting, crayon, graphite, abstract, glitch, deformed, mutated, ugly, disfigured, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry",
    ),
    Style(
        name="Pixar/Disney Character",
        positive="Create a Disney Pixar 3D style illustration on {prompt} . The scene is vibrant, motivational, filled with vivid colors and a sense of wonder.",
        negative="lowres, bad anatomy, bad hands, text, bad eyes, bad arms, bad legs, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, blurry, grayscale, noisy, sloppy, messy, grainy, highly detailed, ultra textured, photo",
    ),
    Style(
        name="Photographic",
        positive="cinematic photo {prompt} . Hyperrealistic, Hyperdetailed, detailed skin, matte skin, soft lighting, realistic, best quality, ultra realistic, 8k, golden ratio, Intricate, High Detail, film photography, soft focus",
        negative="drawing, painting, crayon, sketch, graphite, impressionist, noisy, blurry, soft, deformed, ugly, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry",
    ),
    Style(
        name="Comic book",
        positive="comic {prompt} . graphic illustration, comic art, graphic novel art, vibrant, highly detailed",
        negative="photograph, deformed, glitch, noisy, realistic, stock photo, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry",
    ),
    Style(
        name="Line art",
        positive="line art drawing {prompt} . professional, sleek, modern, minimalist, graphic, line art, vector graphics",
        negative="anime, photorealistic, 35mm film, deformed, glitch, blurry, noisy, off-center, deformed, cross-eyed, closed eyes, bad anatomy, ugly, disfigured, mutated, realism, realistic, impressionism, expressionism, oil, acrylic, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry",
    ),
    Style(
        name="Black and White Film Noir",
        positive="{prompt} . (b&w, Monochromatic, Film Photography:1.3), film noir, analog style, soft lighting, subsurface scattering, realistic, heavy shadow, masterpiece, best quality, ultra realistic, 8k",
        negative="anime, photorealistic, 35mm film, deformed, glitch, blurry, noisy, off-center, deformed, cross-eyed, closed eyes, bad anatomy, ugly, disfigured, mutated, realism, realistic, impressionism, expressionism, oil, acrylic, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry",
    ),
    Style(
        name="Isometric Rooms",
        positive="Tiny cute isometric {prompt} . in a cutaway box, soft smooth lighting, soft colors, 100mm lens, 3d blender render",
        negative="anime, photorealistic, 35mm film, deformed, glitch, blurry, noisy, off-center, deformed, cross-eyed, closed eyes, bad anatomy, ugly, disfigured, mutated, realism, realistic, impressionism, expressionism, oil, acrylic, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry",
    ),
)

# plugins/storysdk-storydiffusion/docs/storydiffusion-styles.md, second table: older names kept by the hosted API.
_LEGACY: tuple[Style, ...] = (
    Style(
        name="Cinematic",
        positive="cinematic still {prompt} . emotional, harmonious, vignette, highly detailed, high budget, bokeh, cinemascope, moody, epic, gorgeous, film grain, grainy",
        negative="anime, cartoon, graphic, text, painting, crayon, graphite, abstract, glitch, deformed, mutated, ugly, disfigured",
    ),
    Style(
        name="Disney Charactor",
        positive="A Pixar animation character of {prompt} . pixar-style, studio anime, Disney, high-quality",
        negative="lowres, bad anatomy, bad hands, text, bad eyes, bad arms, bad legs, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, blurry, grayscale, noisy, sloppy, messy, grainy, highly detailed, ultra textured, photo",
    ),
)

#: Every accepted style by its exact name (read-only).
STYLES: Mapping[str, Style] = MappingProxyType({s.name: s for s in _CURRENT + _LEGACY})

#: The nine styles of the current open-source app, in its menu order.
CURRENT_STYLE_NAMES: tuple[str, ...] = tuple(s.name for s in _CURRENT)

#: The two older names only the hosted API still offers.
LEGACY_STYLE_NAMES: tuple[str, ...] = tuple(s.name for s in _LEGACY)

#: The menu of the app before commit 02dda9b, which the hosted API keeps (plugins/storysdk-storydiffusion/docs/storydiffusion.md §2).
HOSTED_STYLE_NAMES: tuple[str, ...] = (
    "(No style)",
    "Japanese Anime",
    "Cinematic",
    "Disney Charactor",
    "Photographic",
    "Comic book",
    "Line art",
)


def style_names(*, legacy: bool = True) -> list[str]:
    """All accepted style names: the current ones, then (``legacy=True``) the two older hosted names."""
    return list(CURRENT_STYLE_NAMES + (LEGACY_STYLE_NAMES if legacy else ()))


def _lookup(kind: str, name: str, table: Mapping[str, object]) -> str:
    """The exact key of ``table`` for ``name`` (exact, then case-insensitive), or a ConfigError."""
    if name in table:
        return name
    folded = {k.casefold(): k for k in table}
    key = folded.get(name.strip().casefold())
    if key is not None:
        return key
    close = difflib.get_close_matches(name.casefold(), list(folded), n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(folded[c]) for c in close)}?)" if close else ""
    raise ConfigError(
        f"unknown {kind} {name!r}{hint}; use one of: {', '.join(map(repr, table))} "
        "(case does not matter)"
    )


def get_style(name: str | None) -> Style:
    """The style called ``name``; ``None`` means ``"(No style)"``; the match ignores case.

    An unknown name raises :class:`~storysdk.errors.ConfigError` naming the valid styles and
    the closest matches.
    """
    if name is None:
        return STYLES[NO_STYLE]
    if not isinstance(name, str):
        raise ConfigError(f"a style name must be a string or None, got {type(name).__name__}")
    return STYLES[_lookup("style", name, STYLES)]


def apply_style(name: str | None, prompt: str, negative: str = "") -> tuple[str, str]:
    """``(styled prompt, style_negative + " " + negative)`` for the style ``name`` (§2)."""
    return get_style(name).apply(prompt, negative)


class SDModel(NamedTuple):
    """A base checkpoint: a hub id or local folder, plus the file name for single-file checkpoints."""

    checkpoint: str
    single_file: str | None


#: Base-model names of the hosted API (``sd_model``) and the upstream app
#: (plugins/storysdk-storydiffusion/docs/storydiffusion-styles.md, last table; config/models.yaml upstream). Unstable ships
#: ``.bin`` weights, the two other folders ship safetensors; Juggernaut is a single file.
SD_MODELS: Mapping[str, SDModel] = MappingProxyType(
    {
        "Unstable": SDModel("stablediffusionapi/sdxl-unstable-diffusers-y", None),
        "RealVision": SDModel("SG161222/RealVisXL_V4.0", None),
        "SDXL": SDModel("stabilityai/stable-diffusion-xl-base-1.0", None),
        "Juggernaut": SDModel(
            "RunDiffusion/Juggernaut-XL-v9", "Juggernaut-XL_v9_RunDiffusionPhoto_v2.safetensors"
        ),
    }
)

#: Default ``sd_model`` of the hosted API and of the upstream app.
DEFAULT_SD_MODEL = "Unstable"


def get_sd_model(name: str) -> SDModel:
    """The base model called ``name`` (case-insensitive), or a ConfigError listing the valid names."""
    if not isinstance(name, str):
        raise ConfigError(f"a base-model name must be a string, got {type(name).__name__}")
    return SD_MODELS[_lookup("base model", name, SD_MODELS)]
