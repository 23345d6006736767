"""StoryDiffusion's style templates, menus and base-model names (data from ``docs/storydiffusion-styles.md``).

The templates are registered with storysdk through the ``register_styles`` hook
(:func:`register_styles`, called by :mod:`.plugin`), so :func:`storysdk.styles.get_style` and
:func:`storysdk.styles.apply_style` find them by name, in any component. Upstream applies a
style as (docs/storydiffusion.md §2)::

    positive = template.replace("{prompt}", prompt)
    negative = style_negative + " " + user_negative

Two sets of names are accepted: the nine styles of the current open-source app
(:data:`CURRENT_STYLE_NAMES`, menu ``storydiffusion``) and the two older names that the hosted
API still uses (:data:`LEGACY_STYLE_NAMES`: ``Cinematic`` and ``Disney Charactor``,
misspelling kept); the hosted API's own menu is :data:`HOSTED_STYLE_NAMES` (menu
``storydiffusion-hosted``).

Deviation: upstream silently falls back to its default style for an unknown name; storysdk's
lookup raises :class:`~storysdk.errors.ConfigError` listing the valid names.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from storysdk.errors import ConfigError
from storysdk.hookspecs import Register
from storysdk.styles import IDENTITY, NO_STYLE, Style, match_name

__all__ = [
    "APP_MENU",
    "CURRENT_STYLE_NAMES",
    "DEFAULT_SD_MODEL",
    "DEFAULT_STYLE",
    "HOSTED_DEFAULT_STYLE",
    "HOSTED_MENU",
    "HOSTED_STYLE_NAMES",
    "LEGACY_STYLE_NAMES",
    "NO_STYLE",
    "SD_MODELS",
    "STYLES",
    "SDModel",
    "get_sd_model",
    "register_styles",
    "style_names",
]

#: Default of the open-source app (docs/storydiffusion.md §2, ``DEFAULT_STYLE_NAME``).
DEFAULT_STYLE = "Japanese Anime"

#: Default of the hosted API's ``style_name`` field (docs/storydiffusion-api.md; sic).
HOSTED_DEFAULT_STYLE = "Disney Charactor"

#: Menu names under which the styles are registered (:func:`storysdk.styles.menu`).
APP_MENU = "storydiffusion"
HOSTED_MENU = "storydiffusion-hosted"

# docs/storydiffusion-styles.md, first table (current app, utils/style_template.py at HEAD);
# strings copied character for character.
_CURRENT: tuple[Style, ...] = (
    IDENTITY,  # "(No style)": the prompt as it is, no negative (the core's identity style)
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

# docs/storydiffusion-styles.md, second table: older names kept by the hosted API.
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

#: Every StoryDiffusion style by its exact name (read-only).
STYLES: Mapping[str, Style] = MappingProxyType({s.name: s for s in _CURRENT + _LEGACY})

#: The nine styles of the current open-source app, in its menu order.
CURRENT_STYLE_NAMES: tuple[str, ...] = tuple(s.name for s in _CURRENT)

#: The two older names only the hosted API still offers.
LEGACY_STYLE_NAMES: tuple[str, ...] = tuple(s.name for s in _LEGACY)

#: The menu of the app before commit 02dda9b, which the hosted API keeps (docs/storydiffusion.md §2).
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
    """StoryDiffusion's style names: the current ones, then (``legacy=True``) the two older hosted names."""
    return list(CURRENT_STYLE_NAMES + (LEGACY_STYLE_NAMES if legacy else ()))


def register_styles(register: Register) -> None:
    """Register every style: the app's nine in menu ``storydiffusion``, then the hosted menu in its order."""
    for name in CURRENT_STYLE_NAMES:
        register(STYLES[name], menus=(APP_MENU,))
    for name in HOSTED_STYLE_NAMES:  # the legacy two are first registered here, in the hosted order
        register(STYLES[name], menus=(HOSTED_MENU,))


class SDModel(NamedTuple):
    """A base checkpoint: a hub id or local folder, plus the file name for single-file checkpoints."""

    checkpoint: str
    single_file: str | None


#: Base-model names of the hosted API (``sd_model``) and the upstream app
#: (docs/storydiffusion-styles.md, last table; config/models.yaml upstream). Unstable ships
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
    return SD_MODELS[match_name("base model", name, SD_MODELS)]
