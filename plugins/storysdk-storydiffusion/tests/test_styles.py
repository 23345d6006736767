"""StoryDiffusion's style templates, menus and base-model names, registered through ``register_styles``.

The expected strings are written out from ``docs/storydiffusion-styles.md`` (the template with
``{prompt}`` replaced, and ``style_negative + " " + user_negative``), not taken from the code.
"""

from __future__ import annotations

import pytest

from storysdk.errors import ConfigError
from storysdk.styles import apply_style, get_style, menu, style_catalog, style_names
from storysdk.testing import make_registry
from storysdk_storydiffusion import plugin
from storysdk_storydiffusion.styles import (
    CURRENT_STYLE_NAMES,
    DEFAULT_SD_MODEL,
    DEFAULT_STYLE,
    HOSTED_DEFAULT_STYLE,
    HOSTED_STYLE_NAMES,
    LEGACY_STYLE_NAMES,
    SD_MODELS,
    STYLES,
    get_sd_model,
)
from storysdk_storydiffusion.styles import style_names as storydiffusion_style_names

REG = make_registry(plugin, fakes=False)

PROMPT = "a girl reading a book"
NEGATIVE = "blurry hands"

# Each style applied to PROMPT with the user negative NEGATIVE (docs/storydiffusion-styles.md).
EXPECTED = {
    "(No style)": (
        "a girl reading a book",
        " blurry hands",
    ),
    "Japanese Anime": (
        "anime artwork illustrating a girl reading a book. created by japanese anime studio. highly emotional. best quality, high resolution, (Anime Style, Manga Style:1.3), Low detail, sketch, concept art, line art, webtoon, manhua, hand drawn, defined lines, simple shades, minimalistic, High contrast, Linear compositions, Scalable artwork, Digital art, High Contrast Shadows",
        "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry blurry hands",
    ),
    "Digital/Oil Painting": (
        "a girl reading a book . (Extremely Detailed Oil Painting:1.2), glow effects, godrays, Hand drawn, render, 8k, octane render, cinema 4d, blender, dark, atmospheric 4k ultra detailed, cinematic sensual, Sharp focus, humorous illustration, big depth of field",
        "anime, cartoon, graphic, text, painting, crayon, graphite, abstract, glitch, deformed, mutated, ugly, disfigured, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry blurry hands",
    ),
    "Pixar/Disney Character": (
        "Create a Disney Pixar 3D style illustration on a girl reading a book . The scene is vibrant, motivational, filled with vivid colors and a sense of wonder.",
        "lowres, bad anatomy, bad hands, text, bad eyes, bad arms, bad legs, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, blurry, grayscale, noisy, sloppy, messy, grainy, highly detailed, ultra textured, photo blurry hands",
    ),
    "Photographic": (
        "cinematic photo a girl reading a book . Hyperrealistic, Hyperdetailed, detailed skin, matte skin, soft lighting, realistic, best quality, ultra realistic, 8k, golden ratio, Intricate, High Detail, film photography, soft focus",
        "drawing, painting, crayon, sketch, graphite, impressionist, noisy, blurry, soft, deformed, ugly, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry blurry hands",
    ),
    "Comic book": (
        "comic a girl reading a book . graphic illustration, comic art, graphic novel art, vibrant, highly detailed",
        "photograph, deformed, glitch, noisy, realistic, stock photo, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry blurry hands",
    ),
    "Line art": (
        "line art drawing a girl reading a book . professional, sleek, modern, minimalist, graphic, line art, vector graphics",
        "anime, photorealistic, 35mm film, deformed, glitch, blurry, noisy, off-center, deformed, cross-eyed, closed eyes, bad anatomy, ugly, disfigured, mutated, realism, realistic, impressionism, expressionism, oil, acrylic, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry blurry hands",
    ),
    "Black and White Film Noir": (
        "a girl reading a book . (b&w, Monochromatic, Film Photography:1.3), film noir, analog style, soft lighting, subsurface scattering, realistic, heavy shadow, masterpiece, best quality, ultra realistic, 8k",
        "anime, photorealistic, 35mm film, deformed, glitch, blurry, noisy, off-center, deformed, cross-eyed, closed eyes, bad anatomy, ugly, disfigured, mutated, realism, realistic, impressionism, expressionism, oil, acrylic, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry blurry hands",
    ),
    "Isometric Rooms": (
        "Tiny cute isometric a girl reading a book . in a cutaway box, soft smooth lighting, soft colors, 100mm lens, 3d blender render",
        "anime, photorealistic, 35mm film, deformed, glitch, blurry, noisy, off-center, deformed, cross-eyed, closed eyes, bad anatomy, ugly, disfigured, mutated, realism, realistic, impressionism, expressionism, oil, acrylic, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry blurry hands",
    ),
    "Cinematic": (
        "cinematic still a girl reading a book . emotional, harmonious, vignette, highly detailed, high budget, bokeh, cinemascope, moody, epic, gorgeous, film grain, grainy",
        "anime, cartoon, graphic, text, painting, crayon, graphite, abstract, glitch, deformed, mutated, ugly, disfigured blurry hands",
    ),
    "Disney Charactor": (
        "A Pixar animation character of a girl reading a book . pixar-style, studio anime, Disney, high-quality",
        "lowres, bad anatomy, bad hands, text, bad eyes, bad arms, bad legs, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, blurry, grayscale, noisy, sloppy, messy, grainy, highly detailed, ultra textured, photo blurry hands",
    ),
}




CURRENT = [
    "(No style)",
    "Japanese Anime",
    "Digital/Oil Painting",
    "Pixar/Disney Character",
    "Photographic",
    "Comic book",
    "Line art",
    "Black and White Film Noir",
    "Isometric Rooms",
]


def test_style_names_current_then_legacy() -> None:
    assert storydiffusion_style_names(legacy=False) == CURRENT
    assert storydiffusion_style_names() == CURRENT + ["Cinematic", "Disney Charactor"]
    assert list(CURRENT_STYLE_NAMES) == CURRENT
    assert list(LEGACY_STYLE_NAMES) == ["Cinematic", "Disney Charactor"]
    assert sorted(STYLES) == sorted(EXPECTED)
    # registered through the hook: the registry knows them all, in the same order
    assert style_names(REG) == CURRENT + ["Cinematic", "Disney Charactor"]
    assert all(owner == plugin.__name__ for name, owner in style_catalog(REG).owners.items() if name != "(No style)")


def test_menus_and_defaults() -> None:
    assert DEFAULT_STYLE == "Japanese Anime"
    assert HOSTED_DEFAULT_STYLE == "Disney Charactor"
    hosted = ("(No style)", "Japanese Anime", "Cinematic", "Disney Charactor", "Photographic", "Comic book", "Line art")
    assert HOSTED_STYLE_NAMES == hosted
    assert menu("storydiffusion-hosted", REG) == hosted  # the hosted API's order
    assert menu("storydiffusion", REG) == tuple(CURRENT)  # the app's menu
    for name in hosted:  # every hosted name resolves
        assert get_style(name, REG).name == name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_template(name: str) -> None:
    positive, negative = EXPECTED[name]
    assert apply_style(name, PROMPT, NEGATIVE, registry=REG) == (positive, negative)
    assert apply_style(name, PROMPT, NEGATIVE) == (positive, negative)  # the default registry has the plugin
    style = get_style(name, REG)
    assert style is STYLES[name] and style.apply(PROMPT, NEGATIVE) == (positive, negative)
    assert style.positive.count("{prompt}") == 1
    # an empty user negative still gets the joining space, as upstream (n + " " + negative)
    assert apply_style(name, PROMPT, registry=REG)[1] == negative[: -len(NEGATIVE)]


def test_braces_in_prompt_are_kept() -> None:
    # upstream uses str.replace, so braces in a prompt are not format fields
    assert apply_style("Comic book", "a {red} cat", registry=REG)[0] == (
        "comic a {red} cat . graphic illustration, comic art, graphic novel art, vibrant, highly detailed"
    )


def test_case_insensitive_lookup_and_close_matches() -> None:
    assert get_style("japanese anime", REG).name == "Japanese Anime"
    assert get_style("DISNEY CHARACTOR", REG).name == "Disney Charactor"
    assert get_style("  comic BOOK ", REG).name == "Comic book"
    with pytest.raises(ConfigError) as info:
        apply_style("Disney Character", "x", registry=REG)
    first = str(info.value).split(";")[0]
    assert "'Disney Charactor'" in first and "'Pixar/Disney Character'" in first
    with pytest.raises(ConfigError, match="did you mean 'Comic book'"):
        get_style("Comic bok", REG)


def test_sd_models_table() -> None:
    assert dict(SD_MODELS) == {
        "Unstable": ("stablediffusionapi/sdxl-unstable-diffusers-y", None),
        "RealVision": ("SG161222/RealVisXL_V4.0", None),
        "SDXL": ("stabilityai/stable-diffusion-xl-base-1.0", None),
        "Juggernaut": (
            "RunDiffusion/Juggernaut-XL-v9",
            "Juggernaut-XL_v9_RunDiffusionPhoto_v2.safetensors",
        ),
    }
    assert DEFAULT_SD_MODEL == "Unstable"
    assert get_sd_model("realvision").checkpoint == "SG161222/RealVisXL_V4.0"
    assert get_sd_model("Juggernaut").single_file == "Juggernaut-XL_v9_RunDiffusionPhoto_v2.safetensors"
    with pytest.raises(ConfigError, match="did you mean 'Unstable'"):
        get_sd_model("Unstabel")
    with pytest.raises(ConfigError, match="must be a string"):
        get_sd_model(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SD_MODELS["x"] = SD_MODELS["SDXL"]  # type: ignore[index]
    with pytest.raises(TypeError):
        STYLES["x"] = STYLES["Cinematic"]  # type: ignore[index]
