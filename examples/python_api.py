"""Build and run a storysdk pipeline in code, on the tiny presets (offline, CPU, a few seconds).

    python examples/python_api.py [OUT_DIR]

Components are given by registered name (with options) or as instances; here the planner
and the tracks' generators are named, and one composer is a class defined in this file. A
pipeline renders named *tracks* (``frames``: pictures, ``sound``: clips), each with its own
generator, on one timeline: every scene has a start and a duration (``timeline.json``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import storysdk
from storysdk.timeline import timeline_of


class CaptionsMarkdown(storysdk.Composer):
    """A composer written in place: ``story.md`` with each caption, when its scene plays, and a
    link to its picture."""

    name = "captions-md"
    requires = ("image",)

    def compose(self, story: storysdk.Story, out_dir: Path) -> list[Path]:
        frames = story.image_track()  # the first image track: "frames" here
        assert frames is not None  # requires = ("image",): the pipeline skips a story without pictures
        timeline = timeline_of(story)  # story.timeline, or one derived for a story assembled by hand
        lines = ["# Story", ""]
        for cue, _picture in frames.ordered():
            scene, span = story.plan.scene(cue.scene), timeline.scene(cue.scene)
            # the pipeline saved every picture of track T as tracks/T/scene-NNNN.png in the output folder
            lines += [f"![scene {scene.index}](tracks/{frames.name}/scene-{cue.index:04d}.png)", "",
                      f"{scene.caption} ({span.start:.1f}-{span.end:.1f} s)", ""]
        path = Path(out_dir) / "story.md"
        path.write_text("\n".join(lines), encoding="utf-8")
        return [path]


def show_progress(event: storysdk.ProgressEvent) -> None:
    """Print one line per finished scene or component (``step`` events are denoising steps)."""
    if event.stage != "step" and event.done > 0:
        where = f" scene {event.scene_index}" if event.scene_index is not None else ""
        print(f"  {event.stage:<8} {event.component:<16} {event.done}/{event.total}{where}", file=sys.stderr)


def main(out_dir: str = "out/python-api") -> storysdk.Story:
    request = storysdk.StoryRequest(
        characters="[Ada] a young inventor with round glasses and a leather apron",
        script=(
            "[Ada] builds a little copper robot in her workshop #Ada finishes her robot.\n"
            "[NC] the robot's eyes light up, blue sparks in the dark #It wakes up!\n"
            "[Ada] and the robot walk through the city of glass towers #They go out to see the city."
        ),
        width=64,
        height=64,
        duration=3.0,  # seconds of audio, split evenly over the three scenes
        seed=7,
    )
    pipe = storysdk.Pipeline(
        planner="script",  # StoryDiffusion's frame-line syntax: [Name] tags, [NC], #caption
        tracks={  # any number of tracks per modality, each saved under tracks/<name>/
            "frames": {"generator": ("diffusers-image", {"steps": 2})},
            "sound": {"generator": ("diffusers-audio", {"steps": 2}), "text": "{caption}"},  # a clip of each caption
        },
        timing={"mode": "plan"},  # each scene lasts its planned duration (here 1 s of the 3)
        composers=["comic", "soundtrack", CaptionsMarkdown()],
        defaults={"preset": "tiny", "device": "cpu"},  # given to every named component that takes them
    )
    story = pipe.run(request, out_dir=out_dir, overwrite=True, progress=show_progress)
    frames, sound = story.tracks["frames"], story.tracks["sound"]
    print(f"{len(story.plan.scenes)} scenes, {len(frames.assets)} pictures, {len(sound.assets)} clips")
    print(f"timeline: {story.timeline.total:.1f} s, " + ", ".join(
        f"scene {s.index} at {s.start:.1f} s" for s in story.timeline.scenes))
    for composer, paths in story.files.items():
        for path in paths:
            print(f"{composer}: {path}")
    return story


if __name__ == "__main__":
    main(*sys.argv[1:2])
