"""SEED-Story speed and memory (figures and machine in docs/performance.md).

Tiny preset (CPU, always):
  1. the 66-token image block appended in ONE forward pass vs 66 forced single steps
     (upstream's generate with the logits processor), same prefix, same model;
  2. a story step with the KV cache reused across steps (sink mode) vs re-encoding the
     whole windowed prompt every step (the release).
Full size with random weights (``--full``, needs CUDA): Llama-2-7B + ViT-G + resamplers in
fp16, seconds per story step (text + image block + SDXL 1024x1024 at 50 Euler steps with CFG),
and peak GPU memory with the SDXL UNet/VAE offloaded to the CPU between frames (24 GB check).

    python benchmarks/seed_story.py            # tiny ratios
    python benchmarks/seed_story.py --full     # adds the full-size figures on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def block_ratio(lm, feats, repeat: int, prompt_words: int = 40) -> tuple[float, float]:
    from transformers import DynamicCache

    from storysdk_seed_story.constants import IMAGE_BLOCK
    from storysdk_seed_story.decode import decode_step

    prompt = " ".join(["the fox"] * (prompt_words // 2)) + IMAGE_BLOCK
    ids = [lm.ids.bos] + lm.tokenizer.encode(prompt, add_special_tokens=False)
    emb = lm.inject(ids, feats[None])

    def run(block: str) -> None:
        cache = DynamicCache()
        with torch.no_grad():
            _, logits = lm.forward(emb, cache, 0)
            decode_step(lm, cache, logits, len(ids), 500, block, max_text_tokens=0)

    with torch.no_grad():
        prefill = _time(lambda: lm.forward(emb, DynamicCache(), 0), repeat)
    return _time(lambda: run("one-pass"), repeat) - prefill, _time(lambda: run("stepwise"), repeat) - prefill


def story_ratio(lm, feats, steps: int, text_tokens: int) -> tuple[float, float]:
    from storysdk_seed_story.story import PrefillStory, SinkStory

    caption = " ".join(["the fox"] * 20)
    out = {}
    for mode in ("sink", "prefill"):
        with torch.no_grad():
            state = SinkStory.start(lm, caption, feats) if mode == "sink" else PrefillStory.start(caption, feats)
            state.step(lm, 500, "one-pass", text_tokens)  # warm-up step
            t = time.perf_counter()
            for _ in range(steps):
                state.step(lm, 500, "one-pass", text_tokens)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            out[mode] = (time.perf_counter() - t) / steps
    return out["sink"], out["prefill"]


def tiny(args: argparse.Namespace) -> None:
    from storysdk_seed_story.configs import TINY
    from storysdk_seed_story.loading import tiny_mllm, tiny_vit

    torch.set_num_threads(args.threads)
    vit, lm = tiny_vit(TINY), tiny_mllm(TINY)
    with torch.no_grad():
        feats = vit(torch.zeros(1, 3, 448, 448))[0]
    one, step = block_ratio(lm, feats, args.repeat)
    print(f"[tiny] image block: one pass {one * 1e3:.2f} ms, 66 forced steps {step * 1e3:.2f} ms, "
          f"speed-up x{step / one:.1f}")
    sink, pre = story_ratio(lm, feats, args.steps, args.text_tokens)
    print(f"[tiny] story step ({args.text_tokens} text tokens, {args.steps} steps, window 8): "
          f"KV reuse {sink * 1e3:.1f} ms, re-encode {pre * 1e3:.1f} ms, speed-up x{pre / sink:.2f}")


def full(args: argparse.Namespace) -> None:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    from storysdk_seed_story.configs import RELEASED
    from storysdk_seed_story.loading import resamplers
    from storysdk_seed_story.mllm import MLLM, build_llama
    from storysdk_seed_story.perceiver import PerceiverResampler
    from storysdk_seed_story.story import PrefillStory, SinkStory
    from storysdk_seed_story.text import resolve_special_ids, tiny_llama_tokenizer
    from storysdk_seed_story.vit import VisionTransformer

    from storysdk.runtime import seeded

    dev, dt = torch.device("cuda"), torch.float16
    torch.set_default_dtype(dt)
    try:  # random weights, built on the GPU in fp16; the global RNG (CPU and CUDA) is left as it was
        with torch.device(dev), seeded(0, devices=(torch.cuda.current_device(),)):
            vit = VisionTransformer(RELEASED.vit).eval()
            inp, outr = resamplers(RELEASED, 4096)
            llm = build_llama(RELEASED.llm, seed=0)
            perceiver = PerceiverResampler(RELEASED.perceiver).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    tok = tiny_llama_tokenizer(32000)  # Llama-2's 32000 + 66 ids (§1.4); the pieces are fillers
    ids = resolve_special_ids(tok)
    lm = MLLM(llm, inp, outr, tok, ids)
    with torch.no_grad():
        feats = vit(torch.zeros(1, 3, 448, 448, device=dev, dtype=dt))[0]
    print(f"[full] LLM+ViT+resamplers resident: {torch.cuda.memory_allocated() / 2**30:.1f} GiB")
    # SDXL base UNet/VAE from their published configs, random weights, offloaded between frames.
    with seeded(1):
        unet = UNet2DConditionModel(
            sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816).to(dt)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            sample_size=1024, scaling_factor=0.13025, force_upcast=True)
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae, unet=unet, scheduler=sched, text_encoder=None, text_encoder_2=None,
                                     tokenizer=None, tokenizer_2=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_model_cpu_offload()
    with torch.no_grad():
        neg = perceiver(feats[None])
    torch.cuda.reset_peak_memory_stats()
    for mode in ("prefill", "sink"):
        state = (SinkStory.start(lm, "the fox " * 20, feats) if mode == "sink"
                 else PrefillStory.start("the fox " * 20, feats))
        llm_times, sdxl_times = [], []
        for _ in range(args.full_steps):
            t = time.perf_counter()
            with torch.no_grad():
                out = state.step(lm, 500, "one-pass", args.text_tokens)
            torch.cuda.synchronize()
            llm_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            with torch.no_grad():
                prompt, pooled = perceiver(out.features[None].to(dev, dt))
                pipe(prompt_embeds=prompt, pooled_prompt_embeds=pooled, negative_prompt_embeds=neg[0],
                     negative_pooled_prompt_embeds=neg[1], guidance_scale=7.5, num_inference_steps=args.sdxl_steps,
                     height=1024, width=1024, output_type="pil")
            torch.cuda.synchronize()
            sdxl_times.append(time.perf_counter() - t)
        print(f"[full] {mode}: MLLM step {statistics.median(llm_times[1:] or llm_times):.2f} s "
              f"({args.text_tokens} text tokens + image block), de-tokenizer {statistics.median(sdxl_times):.2f} s "
              f"({args.sdxl_steps} Euler steps, CFG, 1024x1024, SDXL offloaded)")
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"[full] peak GPU memory {peak:.1f} GiB -> fits a 24 GB card: {'yes' if peak < 22.3 else 'no'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="story steps timed (tiny)")
    ap.add_argument("--text-tokens", type=int, default=40, help="text tokens per step (forced <img> after them)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--full", action="store_true", help="also run full size with random weights (CUDA)")
    ap.add_argument("--full-steps", type=int, default=3)
    ap.add_argument("--sdxl-steps", type=int, default=50)
    args = ap.parse_args()
    tiny(args)
    if args.full:
        if not torch.cuda.is_available():
            raise SystemExit("--full needs a CUDA GPU")
        full(args)


if __name__ == "__main__":
    main()
