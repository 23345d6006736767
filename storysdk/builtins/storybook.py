"""The ``storybook`` composer: one self-contained HTML5 page with every scene's picture,
caption and audio player, in scene order.

With ``embed=True`` (default) pictures and clips are ``data:`` URIs inside the one file; with
``embed=False`` they are written to ``storybook_files/`` next to it and referenced by relative
paths. The page loads nothing from elsewhere (no scripts, no CDN, no remote fonts).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import ClassVar, Literal

from ..audio import encode_audio
from ..interfaces import Composer
from ..model import Modality, Story
from ..options import Field, Options
from .fields import lower_case, quality_field
from .frames import IMAGE_FORMATS, atomic_write_bytes, check_image_format, encode_image

__all__ = ["StorybookComposer"]

_AUDIO_MIME = {"flac": "audio/flac", "wav": "audio/wav"}
_STYLE = (
    "body{margin:0;background:#faf8f3;color:#222;font-family:Georgia,'Times New Roman',serif}"
    "main{max-width:52rem;margin:0 auto;padding:1.5rem}"
    "h1{text-align:center;font-weight:normal}"
    ".scene{margin:2.5rem 0}"
    ".scene img{display:block;max-width:100%;height:auto;margin:0 auto}"
    ".scene figure{margin:0}"
    ".scene figcaption,.scene p{font-size:1.2rem;line-height:1.5;text-align:center;margin:.8rem 0}"
    ".scene audio{display:block;width:100%;margin-top:.5rem}"
)


class StorybookComposer(Composer):
    """Writes ``storybook.html``: title, then per scene its picture, caption and audio player.

    Options (declared in :class:`Options`): ``title`` (default: the plan's title, else
    "Story"), ``image_format`` png/jpeg, ``quality`` (JPEG), ``audio_format`` flac (24-bit) or
    wav (32-bit float), ``embed`` (``False``: assets go to ``storybook_files/scene-NNN.<ext>``).
    Scenes with neither a picture nor a clip are left out. Returns the HTML path, then any
    asset files.
    """

    name = "storybook"
    description = "a self-contained HTML storybook with pictures, captions and audio players"
    requires: ClassVar[tuple[Modality, ...]] = ("image", "audio")

    class Options(Options):
        title: str | None = Field(None, description="the page's title; None: the plan's title, else 'Story'")
        image_format: Literal["png", "jpeg", "jpg"] = Field(
            "png", description="picture format inside the page: png, jpeg or jpg, in any letter case"
        )
        quality: int = quality_field(90, "JPEG")
        audio_format: Literal["flac", "wav"] = Field(
            "flac", description="clip format: flac (24-bit) or wav (32-bit float), in any letter case"
        )
        embed: bool = Field(
            True, description="put pictures and clips inside the HTML file; false: files in storybook_files/"
        )

        _lower = lower_case("image_format", "audio_format")

    options: Options

    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        opts = self.options
        out_dir = Path(out_dir)
        image_format = check_image_format(opts.image_format, ("png", "jpeg", "jpg"))
        title = opts.title or story.plan.title or "Story"
        assets_dir = out_dir / "storybook_files"
        written: list[Path] = []
        sections: list[str] = []
        _, img_ext, img_mime = IMAGE_FORMATS[image_format]

        def source(data: bytes, mime: str, filename: str) -> str:
            if opts.embed:
                return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
            written.append(atomic_write_bytes(assets_dir / filename, data))
            return f"{assets_dir.name}/{filename}"

        for scene in story.plan.scenes:
            image = story.images.get(scene.index)
            clip = story.audio.get(scene.index)
            if image is None and clip is None:
                continue
            stem = f"scene-{scene.index:03d}"
            caption = html.escape(scene.caption)
            parts = [f'<section class="scene" id="{stem}">']
            if image is not None:
                src = source(encode_image(image.image, image_format, opts.quality), img_mime, f"{stem}.{img_ext}")
                alt = caption or f"Scene {scene.index}"
                w, h = image.image.size
                parts.append("<figure>")
                parts.append(f'<img src="{src}" alt="{alt}" width="{w}" height="{h}">')
                if caption:
                    parts.append(f"<figcaption>{caption}</figcaption>")
                parts.append("</figure>")
            elif caption:
                parts.append(f"<p>{caption}</p>")
            if clip is not None:
                data = encode_audio(clip.samples, clip.sample_rate, opts.audio_format)
                src = source(data, _AUDIO_MIME[opts.audio_format], f"{stem}.{opts.audio_format}")
                parts.append(f'<audio controls preload="metadata" src="{src}"></audio>')
            parts.append("</section>")
            sections.append("\n".join(parts))

        page = "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en">',
                "<head>",
                '<meta charset="utf-8">',
                '<meta name="viewport" content="width=device-width, initial-scale=1">',
                f"<title>{html.escape(title)}</title>",
                f"<style>{_STYLE}</style>",
                "</head>",
                "<body>",
                "<main>",
                f"<h1>{html.escape(title)}</h1>",
                *sections,
                "</main>",
                "</body>",
                "</html>",
                "",
            ]
        )
        html_path = atomic_write_bytes(out_dir / "storybook.html", page.encode("utf-8"))
        return [html_path, *written]
