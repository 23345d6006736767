"""StoryDiffusion frames + an AudioStory soundtrack -> one MP4 (cookbook recipe A).

    python examples/cookbook/frames_audiostory_video.py OUT_DIR                  # tiny preset, CPU, < 1 min
    python examples/cookbook/frames_audiostory_video.py OUT_DIR --preset auto --device cuda \\
        --size 768 --steps 50 --audio-steps 50 --audiostory /w/AudioStory \\
        --vae /w/oobleck --flan-t5 /w/flan-t5-large                           # real weights, GPU

Three stages, each with its own output folder, so each one resumes on its own:

1. ``OUT_DIR/frames``: the ``script`` planner and the ``storydiffusion`` generator draw the
   frames (character id frames first, then the others with Consistent Self-Attention).
2. ``OUT_DIR/soundtrack``: the whole AudioStory path: its LLM (planner ``audiostory``) splits
   the story, told by the frame captions, into timed sound events; the ``audiostory-bridge``
   tokenizer turns its query states into DiT conditioning; the ``audiostory`` generator renders
   the clips; the ``soundtrack`` composer joins them with AudioStory's 3 s crossfades.
3. ``OUT_DIR``: the frames are laid over the joined soundtrack (each frame gets the share of
   the track its planned duration asks for) and the ``video`` composer writes ``story.mp4``
   (H.264 + AAC + the captions as subtitles) and ``video.json``.

``--events frames`` (default) teacher-forces one event per frame (the frame's caption, for
the frame's duration) through the planner's ``response`` option, so sounds change with the
pictures. It is the only choice on the tiny preset, whose random LLM writes no event grammar.
``--events free`` lets AudioStory's LLM write its own events (real weights only); stage 3
works for any number of events.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np

import storysdk
from storysdk.builtins.soundtrack import AUDIOSTORY_CROSSFADE, join_clips

STORY = storysdk.StoryRequest(
    characters="[Ada] an old sailor with a grey beard and a yellow raincoat",
    script=(
        "[Ada] rows a small boat out of the harbour at dawn #Ada rows out before sunrise, gulls crying.\n"
        "[NC] waves crash against black rocks under a grey sky #The sea turns rough; waves crash on the rocks.\n"
        "[Ada] pulls a glowing bottle from the water #Something glows in the water: a bottle.\n"
        "[Ada] reads a letter by the fire in her cabin #Back home, by the crackling fire, she reads."
    ),
    style="Comic book",
    duration=12.0,  # seconds in all; the script planner gives each frame an equal share
    seed=7,
)


def given(**options: object) -> dict[str, object]:
    """The options that were given (not None), so components keep their own defaults."""
    return {k: v for k, v in options.items() if v is not None}


def draw_frames(request: storysdk.StoryRequest, out_dir: Path, args: argparse.Namespace) -> storysdk.Story:
    """Stage 1: StoryDiffusion's character-consistent frames."""
    pipe = storysdk.Pipeline(
        planner="script",
        generators=[(
            "storydiffusion",
            {"steps": args.steps, "width": args.size, "height": args.size, "seed_mode": args.seed_mode,
             "num_ids": args.num_ids, **given(model=args.sd_model)},
        )],
        composers=["frames"],
        defaults={"preset": args.preset, "device": args.device},
    )
    return pipe.run(request, out_dir=out_dir, overwrite=args.overwrite)


def events_response(frames: storysdk.StoryPlan) -> str:
    """An AudioStory assistant response with one event per frame: its caption, its duration."""
    from storysdk_audiostory.streams import response_text

    events = [(scene.caption, float(scene.duration or 0.0)) for scene in frames.scenes]  # checked by the caller
    return response_text(f"One sound event for each of the {len(events)} pictures.", events)


def make_soundtrack(frames: storysdk.StoryPlan, request: storysdk.StoryRequest, out_dir: Path,
                    args: argparse.Namespace) -> storysdk.Story:
    """Stage 2: AudioStory (LLM events -> bridge -> DiT + VAE -> crossfaded soundtrack)."""
    if any(s.duration is None for s in frames.scenes):
        raise storysdk.ConfigError(
            "the frames have no durations: set duration (total seconds) in the story's [story] table"
        )
    total = sum(float(s.duration) for s in frames.scenes)  # type: ignore[arg-type]
    weights = given(checkpoint=args.audiostory)  # the AudioStory release folder, for all three parts
    planner_options = {**weights, **given(base_llm=args.qwen)}
    if args.events == "frames":
        planner_options["response"] = events_response(frames)
    pipe = storysdk.Pipeline(
        planner=("audiostory", planner_options),
        tokenizers=[("audiostory-bridge", weights)],
        generators=[(
            "audiostory", {"steps": args.audio_steps, **weights, **given(vae=args.vae, text_encoder=args.flan_t5)},
        )],
        # AudioStory's 3 s crossfade (§1.7), the padding its generator adds to every clip but the last;
        # given explicitly, so a resumed run (clips loaded from the folder) joins them the same way
        composers=[("soundtrack", {"crossfade": AUDIOSTORY_CROSSFADE})],
        defaults={"preset": args.preset, "device": args.device},
    )
    audio_request = storysdk.StoryRequest(
        prompt=" ".join(s.caption for s in frames.scenes), duration=total, seed=request.seed
    )
    return pipe.run(audio_request, out_dir=out_dir, overwrite=args.overwrite)


def lay_soundtrack(frames: storysdk.StoryPlan, soundtrack: storysdk.Story) -> dict[int, storysdk.AudioAsset]:
    """Cut the joined soundtrack into one piece per frame, each as long as its share of the plan.

    Frame k's piece spans ``[T * D_k / D, T * D_{k+1} / D)`` of the track (``T`` its length,
    ``D_k`` the planned durations before frame k, ``D`` their sum), so the pieces joined back
    with hard cuts are the soundtrack sample for sample, whatever the number of events.
    """
    clips = [clip for _, clip in soundtrack.ordered_audio()]
    track = join_clips(clips, crossfade=AUDIOSTORY_CROSSFADE)  # the soundtrack composer's join
    durations = [float(s.duration) if s.duration else 1.0 for s in frames.scenes]
    edges = np.concatenate([[0.0], np.cumsum(durations)]) / sum(durations)
    cuts = np.round(edges * track.frames).astype(int)
    return {
        scene.index: storysdk.AudioAsset(
            scene.index, track.samples[:, cuts[k] : cuts[k + 1]], sample_rate=track.sample_rate,
            made_by="audiostory", metadata={"soundtrack_start": int(cuts[k]), "soundtrack_end": int(cuts[k + 1])},
        )
        for k, scene in enumerate(frames.scenes)
    }


def make_video(frames: storysdk.Story, soundtrack: storysdk.Story, out_dir: Path,
               args: argparse.Namespace) -> list[Path]:
    """Stage 3: the ``video`` composer on the frames and their pieces of the soundtrack."""
    story = storysdk.Story(plan=frames.plan, images=dict(frames.images),
                           audio=lay_soundtrack(frames.plan, soundtrack), out_dir=out_dir)
    video = storysdk.get_registry().get("composer", "video").create(
        fps=args.fps, transition=args.transition, crossfade=0.0,  # the pieces already hold the crossfades
    )
    return video.compose(story, out_dir)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", nargs="?", default="out/cookbook/video", help="output folder")
    parser.add_argument("--story", help="a story file whose [story] table replaces the built-in story")
    parser.add_argument("--preset", default="tiny", help="tiny (default), auto or full")
    parser.add_argument("--device", default="auto", help="cpu, cuda, auto")
    parser.add_argument("--size", type=int, help="frame width and height (multiple of 32; tiny: 64, else 768)")
    parser.add_argument("--steps", type=int, help="StoryDiffusion denoising steps (tiny: 2, else 50)")
    parser.add_argument("--audio-steps", type=int, help="AudioStory DiT steps (tiny: 2, else 50)")
    parser.add_argument("--num-ids", type=int, default=1, help="id frames per character (StoryDiffusion's id_length)")
    parser.add_argument("--seed-mode", choices=("upstream", "per_scene"), default="upstream",
                        help="upstream: every frame starts from the same noise; per_scene: each its own")
    parser.add_argument("--events", choices=("frames", "free"), default="frames",
                        help="frames: one sound event per frame (teacher-forced); free: AudioStory's LLM decides")
    parser.add_argument("--fps", type=float, default=24.0, help="video frames per second")
    parser.add_argument("--transition", type=float, default=0.5, help="seconds of dissolve between pictures")
    parser.add_argument("--seed", type=int, help="replaces the story's seed")
    weights = parser.add_argument_group("real weights (local folders; see the plugins' READMEs)")
    weights.add_argument("--sd-model", help="StoryDiffusion's SDXL model: a name (Unstable, ...), folder or .safetensors")
    weights.add_argument("--audiostory", help="the AudioStory release folder (config.yaml, pytorch_model.bin)")
    weights.add_argument("--qwen", help="the Qwen2.5-3B-Instruct folder (default: from the release's config)")
    weights.add_argument("--vae", help="the Oobleck VAE folder (config.json, model.safetensors)")
    weights.add_argument("--flan-t5", help="the flan-t5-large folder")
    parser.add_argument("--overwrite", action="store_true", help="replace output folders holding another story")
    args = parser.parse_args(argv)
    tiny = args.preset == "tiny"
    args.size = args.size or (64 if tiny else 768)
    args.steps = args.steps or (2 if tiny else 50)
    args.audio_steps = args.audio_steps or (2 if tiny else 50)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, storysdk.Story]:
    args = parse_args(argv)
    out = Path(args.out_dir)
    request = storysdk.load_story_file(args.story).request if args.story else STORY
    if args.seed is not None:
        request = attrs.evolve(request, seed=args.seed)
    frames = draw_frames(request, out / "frames", args)
    soundtrack = make_soundtrack(frames.plan, request, out / "soundtrack", args)
    paths = make_video(frames, soundtrack, out, args)
    for path in [*soundtrack.files.get("soundtrack", []), *paths]:
        print(path)
    return {"frames": frames, "soundtrack": soundtrack}


if __name__ == "__main__":
    main(sys.argv[1:])
