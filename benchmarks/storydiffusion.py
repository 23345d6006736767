"""StoryDiffusion benchmark: upstream-style vs batched read vs bounded-memory (lockstep) rendering.

Workload: the hosted API's default example (8 frames, 3 id frames of one character, 5 read
frames of which 3 are ``[NC]``), rendered with Consistent Self-Attention in three ways:

- ``upstream``: one write call for the id frames, then one pipeline call per read frame, the
  whole token bank kept (``upstream_mode=True``, plugins/storysdk-storydiffusion/docs/storydiffusion.md §1.5-§1.6);
- ``batched``: the read frames in one UNet batch (``read_batch=8``);
- ``lockstep``: read frames denoised together with the id frames, so the bank holds one step
  (``mode="lockstep"``).

Baselines: a plain diffusers ``StableDiffusionXLPipeline`` on the same components with the same
batches as ``batched`` (no CSA), and our generator with CSA off (``sa32 = sa64 = 0``, processors
installed) on those batches: the difference is our overhead.

Usage::

    python benchmarks/storydiffusion.py                 # tiny preset on CPU (< 2 minutes)
    python benchmarks/storydiffusion.py --full          # full-size SDXL UNet, random weights, 768x768, CUDA

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` per mode; on CPU the token bank's peak
(the part the modes change; process RSS is not resettable between modes).
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def build_pipe(full: bool, device: Any, dtype: Any) -> Any:
    if full:
        from storysdk_storydiffusion.full_size import random_sdxl_pipeline

        return random_sdxl_pipeline(device, dtype)
    from storysdk.tiny import tiny_sdxl_pipeline

    return tiny_sdxl_pipeline(0)  # float32 on the CPU already


def make_plan(size: int) -> Any:
    from storysdk import StoryRequest
    from storysdk.builtins.script import ScriptPlanner
    from storysdk_storydiffusion.hosted import DEFAULT_FIELDS

    request = StoryRequest(
        script=DEFAULT_FIELDS["comic_description"],
        characters=DEFAULT_FIELDS["character_description"],
        style="Japanese Anime",
        width=size,
        height=size,
        seed=42,
    )
    return ScriptPlanner().plan(request)


#: The hosted API's id frames: the first 3 frames, the [NC] one on line 3 included (predict.py).
ID_OPTIONS = {"num_ids": 3, "allow_nc_id_frames": True}


class Meter:
    """Wall time and peak device memory of one block."""

    def __init__(self, device: Any) -> None:
        self.device = device

    def __enter__(self) -> Meter:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.peak = None
        self.seconds = time.perf_counter() - self.start


def run_generator(pipe: Any, plan: Any, device: Any, steps: int, **options: Any) -> tuple[Meter, int]:
    from storysdk import RenderContext
    from storysdk_storydiffusion.generator import StoryDiffusionGenerator

    gen = StoryDiffusionGenerator(pipeline=pipe, steps=steps, device=str(device), freeu=False, **ID_OPTIONS, **options)
    with Meter(device) as m:
        n = sum(1 for _ in gen.generate(plan.scenes, RenderContext(plan=plan, seed=plan.seed)))
    assert n == len(plan.scenes)
    return m, gen.last_state.bank.peak_bytes


def run_plain(pipe: Any, plan: Any, device: Any, steps: int) -> Meter:
    """Plain diffusers, same prompts, noise and batches as the ``batched`` mode (ids, then reads)."""
    import torch

    from storysdk.styles import apply_style
    from storysdk_storydiffusion.generator import StoryDiffusionGenerator
    from storysdk_storydiffusion.loading import make_scheduler
    from storysdk_storydiffusion.render import initial_noise

    pipe.scheduler = make_scheduler(pipe, "ddim")
    pipe.disable_freeu()
    chosen = {s.index for group in StoryDiffusionGenerator(**ID_OPTIONS).id_frames(plan).values() for s in group}
    ids = [s for s in plan.scenes if s.index in chosen]
    reads = [s for s in plan.scenes if s.index not in chosen]
    size = plan.width
    with Meter(device) as m:
        for batch in (ids, reads):
            texts = [apply_style("Japanese Anime", s.prompt, "") for s in batch]
            noise = torch.cat(initial_noise(pipe, len(batch), size, size, plan.seed))
            pipe(
                prompt=[t[0] for t in texts],
                negative_prompt=[t[1] for t in texts],
                latents=noise.to(device=device, dtype=pipe.unet.dtype),
                num_inference_steps=steps,
                guidance_scale=5.0,
                height=size,
                width=size,
                output_type="pil",
            )
    return m


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-size SDXL UNet with random weights (CUDA)")
    parser.add_argument("--size", type=int, default=None, help="frame size in pixels (default 256 tiny, 768 full)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 10 tiny, 25 full)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per mode; the fastest counts (default 2)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.full and not torch.cuda.is_available():
        raise SystemExit("--full needs a CUDA GPU (a full-size SDXL UNet on CPU takes hours); run without --full")
    device = torch.device("cuda" if args.full else "cpu")
    dtype = torch.float16 if args.full else torch.float32
    size = args.size or (768 if args.full else 256)
    steps = args.steps or (25 if args.full else 10)
    pipe = build_pipe(args.full, device, dtype)
    plan = make_plan(size)
    frames = len(plan.scenes)

    run_generator(pipe, make_plan(64 if not args.full else 256), device, 2)  # warm-up (kernels, caches)
    def best(fn: Any, *a: Any, **kw: Any) -> Any:
        runs = [fn(*a, **kw) for _ in range(max(1, args.repeat))]
        return min(runs, key=lambda r: (r[0] if isinstance(r, tuple) else r).seconds)

    plain = best(run_plain, pipe, plan, device, steps)
    off, _ = best(run_generator, pipe, plan, device, steps, sa32=0.0, sa64=0.0, read_batch=8)
    results = {
        "upstream (1 frame/call, full bank)": best(run_generator, pipe, plan, device, steps, upstream_mode=True),
        "batched read": best(run_generator, pipe, plan, device, steps, read_batch=8),
        "lockstep (bounded bank)": best(run_generator, pipe, plan, device, steps, mode="lockstep", read_batch=8),
    }

    what = "full-size SDXL UNet, random weights" if args.full else "tiny preset"
    print(f"StoryDiffusion benchmark: {what}, {device.type}, {size}x{size}, {steps} DDIM steps, "
          f"{frames} frames (3 id frames), torch {torch.__version__}, {args.threads} CPU thread(s), "
          f"best of {max(1, args.repeat)}")
    base_time = results["upstream (1 frame/call, full bank)"][0].seconds
    base_bank = results["upstream (1 frame/call, full bank)"][1]
    base_peak = results["upstream (1 frame/call, full bank)"][0].peak
    head = f"{'mode':38s} {'s/frame':>8s} {'time x':>7s} {'bank MiB':>9s} {'bank x':>7s}"
    if device.type == "cuda":
        head += f" {'peak MiB':>9s} {'peak x':>7s}"
    print(head)
    for name, (m, bank) in results.items():
        line = (f"{name:38s} {m.seconds / frames:8.3f} {m.seconds / base_time:7.2f} "
                f"{bank / 2**20:9.2f} {bank / base_bank:7.2f}")
        if device.type == "cuda":
            line += f" {m.peak / 2**20:9.0f} {m.peak / base_peak:7.2f}"
        print(line)
    print(f"{'diffusers SDXL pipeline, no CSA':38s} {plain.seconds / frames:8.3f} {plain.seconds / base_time:7.2f}")
    print(f"{'ours, CSA off (sa32 = sa64 = 0)':38s} {off.seconds / frames:8.3f} {off.seconds / base_time:7.2f}")
    print(f"overhead of ours with CSA off vs plain diffusers (same batches): "
          f"{100 * (off.seconds - plain.seconds) / plain.seconds:+.1f} %")


if __name__ == "__main__":
    main()
