"""Build and run a storysdk pipeline in code, on the tiny presets (offline, CPU, a few seconds).

    python examples/python_api.py [OUT_DIR]

Components are given by registered name (with options) or as instances; here the planner
and the generators are named, and one composer is a class defined in this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import storysdk


class CaptionsMarkdown(storysdk.Composer):
    """A composer written in place: ``story.md`` with each caption and a link to its picture."""

    name = "captions-md"
    requires = ("image",)

    def compose(self, story: storysdk.Story, out_dir: Path) -> list[Path]:
        lines = ["# Story", ""]
        for scene, _ in story.ordered_images():
            # the pipeline saved every picture as images/scene-NNNN.png in the output folder
            lines += [f"![scene {scene.index}](images/scene-{scene.index:04d}.png)", "", scene.caption, ""]
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
        generators=[
            ("diffusers-image", {"steps": 2}),
            ("diffusers-audio", {"steps": 2}),
        ],
        composers=["comic", "soundtrack", CaptionsMarkdown()],
        defaults={"preset": "tiny", "device": "cpu"},  # given to every named component that takes them
    )
    story = pipe.run(request, out_dir=out_dir, overwrite=True, progress=show_progress)
    print(f"{len(story.plan.scenes)} scenes, {len(story.images)} pictures, {len(story.audio)} clips")
    for composer, paths in story.files.items():
        for path in paths:
            print(f"{composer}: {path}")
    return story


if __name__ == "__main__":
    main(*sys.argv[1:2])
