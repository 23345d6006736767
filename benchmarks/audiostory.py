"""AudioStory plugin benchmark: one-pass query blocks vs forced single steps (planner), and
batched vs one-clip-at-a-time DiT sampling (generator), as ratios in one run.

    python benchmarks/audiostory.py            # tiny preset, CPU
    python benchmarks/audiostory.py --full     # released sizes, random weights (needs CUDA)

The planner LLM is scripted to write a fixed event stream (random weights cannot write one):
its logits get +100 on the next token of that stream, so both decoding modes make the same
choices while every hidden state is the model's own. Reports decode wall time and forward
passes, then DiT+VAE seconds of audio per second and peak memory (CUDA: max allocated;
CPU: process peak RSS, which only grows).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from storysdk.interfaces import RenderContext
from storysdk.model import Scene, StoryPlan, Tokens
from storysdk_audiostory import constants as C
from storysdk_audiostory.decoding import greedy_decode
from storysdk_audiostory.generators import AudioStoryGenerator
from storysdk_audiostory.grammar import SpecialIds
from storysdk_audiostory.planner import chatml_prompt, expand_query_blocks
from storysdk_audiostory.presets import FULL, TINY, build_dit, build_llm, build_t5, build_vae
from storysdk_audiostory.qwen_tokenizer import tiny_qwen_tokenizer
from storysdk_audiostory.runtime import AudioRuntime
from storysdk_audiostory.streams import response_text


class Scripted:
    """Wraps a causal LM so that greedy decoding follows ``script`` (ids after the prompt)."""

    def __init__(self, llm, prompt_len, script):
        self.llm, self.config, self.script, self.prompt_len, self.fed = llm, llm.config, script, prompt_len, 0
        outer = self

        class _M(torch.nn.Module):
            def forward(self, input_ids, **kw):
                outer.fed += input_ids.shape[1]
                return llm.model(input_ids=input_ids, **kw)

        self.model = _M()

    def parameters(self):
        return self.llm.parameters()

    def lm_head(self, h):
        logits = self.llm.lm_head(h)
        i = self.fed - self.prompt_len
        if 0 <= i < len(self.script):
            logits = logits.clone()
            logits[..., self.script[i]] += 100.0
        return logits


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_planner(sizes, device, dtype, events):
    tok = tiny_qwen_tokenizer()  # the vocabulary size is what matters for cost; ids resolved by string
    special = SpecialIds.from_tokenizer(tok)
    vocab = sizes.get("llm_vocab", len(tok))
    llm = build_llm(sizes["llm"], max(vocab, len(tok)), 0).to(device, dtype)
    prompt = tok.encode(chatml_prompt("Develop a comprehensive audio of a rainy night. The total duration is 50.0 seconds."),
                        add_special_tokens=False)
    script = expand_query_blocks(tok.encode(response_text("plan", events), add_special_tokens=False), special)
    out = {}
    for mode in (True, False):
        lm = Scripted(llm, len(prompt), script)
        greedy_decode(Scripted(llm, len(prompt), script), prompt, special, max_new_tokens=8, one_pass=mode)  # warm-up
        sync(device)
        t = time.perf_counter()
        res = greedy_decode(lm, prompt, special, max_new_tokens=C.MAX_NEW_TOKENS, one_pass=mode)
        sync(device)
        out[mode] = (time.perf_counter() - t, res.forward_passes, len(res.ids))
    return out


def bench_dit(sizes, device, dtype, durations, steps):
    from storysdk.tiny import t5_tokenizer

    ttok = t5_tokenizer(1000, 512)
    rt = AudioRuntime(dit=build_dit(sizes["dit"], 0).to(device, dtype), vae=build_vae(sizes["vae"], 0).to(device),
                      t5_tokenizer=ttok, t5=build_t5(sizes["t5"], max(len(ttok), sizes["t5_vocab"]), 0).to(device, dtype),
                      device=device, dtype=dtype)
    width = sizes["dit"]["text_dim"]
    g = torch.Generator().manual_seed(0)
    scenes = [Scene(i, prompt="x", duration=d, tokens={"tangoflux-cond": Tokens(
        "tangoflux-cond", "bench", {"cond": torch.randn(64, width, generator=g)})}) for i, d in enumerate(durations)]
    plan = StoryPlan(scenes=scenes)
    out = {}
    for label, batch in (("batched", None), ("sequential", 1)):  # dit_batch: None = all at once, 1 = the default
        gen = AudioStoryGenerator(preset="tiny", steps=steps, dit_batch=batch)
        gen._rt = rt
        list(gen.generate(scenes[:1], RenderContext(plan=plan)))  # warm-up (also caches the uncond branch)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        t = time.perf_counter()
        assets = list(gen.generate(scenes, RenderContext(plan=plan, seed=1)))
        sync(device)
        wall = time.perf_counter() - t
        audio = sum(a.metadata["generated_seconds"] for a in assets)
        out[label] = (wall, audio / wall, peak_mb(device))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="released sizes, random weights (CUDA)")
    ap.add_argument("--steps", type=int, default=None, help="DiT steps (default: 50 full, 10 tiny)")
    args = ap.parse_args()
    if args.full and not torch.cuda.is_available():
        raise SystemExit("--full needs a CUDA GPU")
    device = torch.device("cuda" if args.full else "cpu")
    dtype = torch.float16 if args.full else torch.float32
    sizes = FULL if args.full else TINY
    steps = args.steps or (C.AUDIOSTORY_STEPS if args.full else 10)
    events = [(f"event {i}: rain and distant thunder", 8.0) for i in range(6)]
    print(f"device={device} dtype={dtype} preset={'full (random weights)' if args.full else 'tiny'} "
          f"events={len(events)} steps={steps}")
    p = bench_planner(sizes, device, dtype, events)
    (t1, f1, n1), (t0, f0, n0) = p[True], p[False]
    print(f"planner: {n1} generated tokens; one-pass {t1:.3f} s / {f1} passes; single-step {t0:.3f} s / {f0} passes; "
          f"speed-up x{t0 / t1:.2f}")
    durations = [d + (C.CROSSFADE_SECONDS if i < len(events) - 1 else 0.0) for i, (_, d) in enumerate(events)]
    d = bench_dit(sizes, device, dtype, [d for _, d in events], steps)
    for label, (wall, rate, mem) in d.items():
        print(f"DiT+VAE {label}: {wall:.3f} s for {sum(durations):.1f} s of audio = {rate:.2f} audio-s/s, peak {mem:.0f} MB")
    print(f"batched vs sequential: x{d['batched'][1] / d['sequential'][1]:.2f} audio-s/s")


if __name__ == "__main__":
    main()
