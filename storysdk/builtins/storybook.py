"""The ``storybook`` composer: one self-contained HTML5 page with every scene's pictures, caption
and audio players, in scene order, and a player for the whole story.

Each scene shows the pictures of every image track (labelled with the track's name when the page
shows several image tracks) and one player per audio track that has a cue in the scene: that
track over the scene's span on the story's timeline, as it sounds in the story's mix
(:func:`storysdk.mixing.mixdown`, ``Mixdown.tracks``: placed, with its gain and ducking and the
master gain). Above the scenes, a player plays the whole mix, the ``soundtrack`` composer's.

Read aloud. The narration track's player is each scene's "Read aloud" control: labelled so,
first among the scene's players, with the text it reads shown beside it (the sentences its clip
records in ``metadata["sentences"]``, else ``Scene.narration``). The narration track is
``narration_track``, else the first audio track whose clips carry ``metadata["sentences"]`` (what
a speech generator such as ``piper`` records); a story without one has no read-aloud control.

With ``embed=True`` (default) pictures and sounds are ``data:`` URIs inside the one file; with
``embed=False`` they are written to ``storybook_files/`` next to it (``story.<ext>`` for the
whole mix, ``<track>/scene-NNN.<ext>`` for a scene's picture or sound; a track planner's
pictures ``<track>/cue-NNN.<ext>``) and referenced by relative paths. The page loads nothing
from elsewhere (no scripts, no CDN, no remote fonts), and the same story gives the same bytes.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from ..audio import encode_audio
from ..errors import ConfigError
from ..interfaces import Composer
from ..mixing import Mixdown, mixdown
from ..model import AudioAsset, Modality, Story, Track
from ..options import Field, Options, suggest
from ..timeline import Timeline, timeline_of
from .fields import lower_case, quality_field
from .video import narration_of
from .frames import IMAGE_FORMATS, atomic_write_bytes, check_image_format, encode_image, pictures

__all__ = ["MIX_LABEL", "READ_ALOUD_LABEL", "StorybookComposer"]

_AUDIO_MIME = {"flac": "audio/flac", "wav": "audio/wav"}
_STYLE = (
    "body{margin:0;background:#faf8f3;color:#222;font-family:Georgia,'Times New Roman',serif}"
    "main{max-width:52rem;margin:0 auto;padding:1.5rem}"
    "h1{text-align:center;font-weight:normal}"
    ".scene{margin:2.5rem 0}"
    ".scene img{display:block;max-width:100%;height:auto;margin:0 auto}"
    ".scene figure{margin:0}"
    ".scene figcaption,.scene p{font-size:1.2rem;line-height:1.5;text-align:center;margin:.8rem 0}"
    ".label{font-size:.9rem;color:#666;text-align:center;margin:.8rem 0 .3rem}"
    ".read-aloud{border:1px solid #d8d2c4;border-radius:.5rem;padding:.3rem .8rem .8rem;margin:.8rem 0}"
    ".read-aloud .label{font-size:1rem;color:#333;font-weight:bold}"
    ".scene .read-aloud p{font-style:italic;margin:.3rem 0}"
    "audio{display:block;width:100%;margin-top:.5rem}"
)
#: The label of the whole story's player.
MIX_LABEL = "The whole story"
#: The label of a scene's narration player.
READ_ALOUD_LABEL = "Read aloud"


class StorybookComposer(Composer):
    """Writes ``storybook.html``: title, the whole story's player, then per scene its pictures,
    caption and players (see the module docstring).

    Options (declared in :class:`Options`): ``title`` (default: the plan's title, else
    "Story"), ``tracks`` (which image and audio tracks the scenes show, by name, in that order;
    ``None``: all), ``narration_track`` (the audio track whose player reads each scene aloud;
    ``None``: the first audio track whose clips carry sentences), ``image_format`` png/jpeg,
    ``quality`` (JPEG), ``audio_format`` flac (24-bit) or wav (32-bit float), ``embed``
    (``False``: files in ``storybook_files/``).
    Scenes with neither a picture nor a player are left out. Returns the HTML path, then any
    asset files in page order.
    """

    name = "storybook"
    description = "a self-contained HTML storybook with pictures, captions and audio players"
    requires: ClassVar[tuple[Modality, ...]] = ("image", "audio")
    track_options: ClassVar[dict[str, Modality]] = {"narration_track": "audio"}

    class Options(Options):
        title: str | None = Field(None, description="the page's title; None: the plan's title, else 'Story'")
        tracks: list[str] | None = Field(
            None, min_length=1,
            description="the image and audio tracks the scenes show, by name, in this order; None: every track",
        )
        narration_track: str | None = Field(
            None,
            description="the audio track whose player reads each scene aloud (labelled 'Read aloud', with its "
            "text); None: the first audio track whose clips carry sentences",
        )
        image_format: Literal["png", "jpeg", "jpg"] = Field(
            "png", description="picture format inside the page: png, jpeg or jpg, in any letter case"
        )
        quality: int = quality_field(90, "JPEG")
        audio_format: Literal["flac", "wav"] = Field(
            "flac", description="sound format: flac (24-bit) or wav (32-bit float), in any letter case"
        )
        embed: bool = Field(
            True, description="put pictures and sounds inside the HTML file; false: files in storybook_files/"
        )

        _lower = lower_case("image_format", "audio_format")

    options: Options

    def shown_tracks(self, story: Story) -> list[Track]:
        """The tracks the page shows: ``tracks`` in its order (a :class:`ConfigError` names one the
        story lacks), else every image and audio track of the story."""
        every = story.all_tracks()
        names = self.options.tracks
        if names is None:
            return list(every.values())
        out: list[Track] = []
        for name in names:
            if name not in every:
                known = ", ".join(every) or "(none)"
                raise ConfigError(
                    f"composer 'storybook': tracks names {name!r}, which is not one of the story's tracks ({known})."
                    f"{suggest(name, every)} List the story's image and audio tracks by name, or leave tracks unset "
                    "to show every track"
                )
            if every[name] not in out:
                out.append(every[name])
        return out

    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        opts = self.options
        out_dir = Path(out_dir)
        shown = self.shown_tracks(story)
        image_format = check_image_format(opts.image_format, ("png", "jpeg", "jpg"))
        title = opts.title or story.plan.title or "Story"
        assets_dir = out_dir / "storybook_files"
        written: list[Path] = []
        _, img_ext, img_mime = IMAGE_FORMATS[image_format]
        audio_mime = _AUDIO_MIME[opts.audio_format]

        def source(data: bytes, mime: str, filename: str) -> str:
            if opts.embed:
                return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
            written.append(atomic_write_bytes(assets_dir / filename, data))
            return f"{assets_dir.name}/{filename}"

        def sound(samples: np.ndarray, rate: int, filename: str) -> str:
            return source(encode_audio(samples, rate, opts.audio_format), audio_mime, filename)

        image_tracks = [t for t in shown if t.modality == "image"]
        audible = any(isinstance(a, AudioAsset) for t in story.audio_tracks() for a in t.assets.values())
        timeline = timeline_of(story) if audible else None
        mixed = mixdown(story, timeline=timeline) if timeline is not None else None
        audio_tracks = [t for t in shown if t.modality == "audio" and mixed is not None and t.name in mixed.tracks]
        narration = narration_of(story, opts.narration_track)
        if narration is not None and narration in audio_tracks:  # the read-aloud player comes first
            audio_tracks.remove(narration)
            audio_tracks.insert(0, narration)
        reader = narration.name if narration is not None else None

        body: list[str] = []
        if mixed is not None:
            src = sound(mixed.samples, mixed.sample_rate, f"story.{opts.audio_format}")
            body += ['<section class="mix" id="story">', f'<div class="label">{MIX_LABEL}</div>',
                     f'<audio controls preload="metadata" src="{src}"></audio>', "</section>"]
        for scene in story.plan.scenes:
            stem = f"scene-{scene.index:03d}"
            caption = html.escape(scene.caption)
            figure: list[str] = []
            for track in image_tracks:
                for picture in pictures(story, track, scene.index):
                    if len(image_tracks) > 1:
                        figure.append(f'<div class="label">{html.escape(track.name)}</div>')
                    data = encode_image(picture.asset.image, image_format, opts.quality)
                    src = source(data, img_mime, f"{track.name}/{picture.stem}.{img_ext}")
                    w, h = picture.asset.image.size
                    figure.append(f'<img src="{src}" alt="{caption or f"Scene {scene.index}"}" width="{w}" '
                                  f'height="{h}" data-track="{html.escape(track.name)}">')
            players: list[str] = []
            if mixed is not None and timeline is not None:
                players = self._players(story, scene.index, audio_tracks, mixed, timeline, sound, reader)
            if not figure and not players:
                continue
            body.append(f'<section class="scene" id="{stem}">')
            if figure:
                body += ["<figure>", *figure, *([f"<figcaption>{caption}</figcaption>"] if caption else []), "</figure>"]
            elif caption:
                body.append(f"<p>{caption}</p>")
            body += [*players, "</section>"]

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
                *body,
                "</main>",
                "</body>",
                "</html>",
                "",
            ]
        )
        html_path = atomic_write_bytes(out_dir / "storybook.html", page.encode("utf-8"))
        return [html_path, *written]

    def _players(self, story: Story, index: int, tracks: Sequence[Track], mixed: Mixdown, timeline: Timeline,
                 sound: Callable[[np.ndarray, int, str], str], reader: str | None = None) -> list[str]:
        """One player per audio track with a cue in scene ``index``: the track over the scene's span;
        track ``reader``'s is the scene's read-aloud control."""
        span = timeline.scene(index)
        rate = mixed.sample_rate
        lo = min(int(round(span.start * rate)), mixed.frames)
        hi = min(int(round(span.end * rate)), mixed.frames)
        out: list[str] = []
        for track in tracks:
            if hi <= lo or not any(isinstance(a, AudioAsset) for _, a in track.of_scene(index)):
                continue
            src = sound(mixed.tracks[track.name][:, lo:hi], rate, f"{track.name}/scene-{index:03d}.{self.options.audio_format}")
            name = html.escape(track.name)
            if track.name == reader:
                text = html.escape(_spoken(story, track, index))
                out.append(f'<div class="player read-aloud" data-track="{name}" role="group" '
                           f'aria-label="{READ_ALOUD_LABEL}: scene {index}"><div class="label">{READ_ALOUD_LABEL}</div>'
                           + (f"<p>{text}</p>" if text else "")
                           + f'<audio controls preload="metadata" src="{src}" aria-label="{READ_ALOUD_LABEL}"></audio></div>')
                continue
            label = f'<div class="label">{name}</div>' if len(tracks) > 1 else ""
            out.append(f'<div class="player" data-track="{name}">{label}'
                       f'<audio controls preload="metadata" src="{src}"></audio></div>')
        return out


def _spoken(story: Story, track: Track, index: int) -> str:
    """What the narration reads in scene ``index``: its clips' sentences, else ``Scene.narration``."""
    said = [str(s.get("text", "")).strip() for _, a in track.of_scene(index) if isinstance(a, AudioAsset)
            for s in (a.metadata.get("sentences") or []) if isinstance(s, dict)]
    said = [t for t in said if t]
    return " ".join(said) if said else story.plan.scene(index).narration.strip()
