"""PEFT (0.4.0 naming) LLM weights -> plain Qwen2ForCausalLM weights, LoRA merged (docs/audiostory.md §1.1, §4).

In the released state dict the LLM sits under ``base_model.model.`` (after ``seedx.llm.``):
``...q_proj.weight`` (base) with ``...q_proj.lora_A.default.weight`` (r x in) and
``...q_proj.lora_B.default.weight`` (out x r); norms as ``...original_module.weight`` and
``...modules_to_save.default.weight`` -- the trained copy, which is the one used.
Merging: ``W = W0 + (alpha / r) B A``, in float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storysdk.errors import CheckpointError

if TYPE_CHECKING:
    import torch

__all__ = ["PEFT_PREFIX", "lora_deltas_and_plain"]

PEFT_PREFIX = "base_model.model."


def lora_deltas_and_plain(
    sd: dict[str, torch.Tensor], scale: float
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """Split PEFT keys into (plain weights by our names, LoRA deltas by target weight name, superseded keys)."""
    plain: dict[str, torch.Tensor] = {}
    a: dict[str, torch.Tensor] = {}
    b: dict[str, torch.Tensor] = {}
    superseded: list[str] = []
    bad: list[str] = []
    for key, value in sd.items():
        if not key.startswith(PEFT_PREFIX):
            bad.append(key)
            continue
        name = key[len(PEFT_PREFIX):]
        if ".lora_A." in name:
            a[name.split(".lora_A.")[0] + ".weight"] = value
        elif ".lora_B." in name:
            b[name.split(".lora_B.")[0] + ".weight"] = value
        elif ".original_module." in name:
            superseded.append(key)  # the frozen copy; modules_to_save holds the trained one
        elif ".modules_to_save.default." in name:
            plain[name.replace(".modules_to_save.default.", ".")] = value
        else:
            plain[name] = value
    if bad:
        raise CheckpointError(f"LLM keys outside {PEFT_PREFIX!r} (not a PEFT model)", unexpected=sorted(bad))
    unpaired = sorted(set(a) ^ set(b))
    if unpaired:
        raise CheckpointError("LoRA A/B weights come in pairs; these have only one half", missing=unpaired)
    wrong = [
        f"{k}: lora_A {tuple(a[k].shape)}, lora_B {tuple(b[k].shape)}"
        for k in sorted(a)
        if a[k].dim() != 2 or b[k].dim() != 2 or b[k].shape[1] != a[k].shape[0]
    ]
    if wrong:  # B (out x r) @ A (r x in) needs the same rank r on both sides
        raise CheckpointError(
            f"{len(wrong)} LoRA pair(s) have shapes that do not multiply (B is out x r, A is r x in, "
            "docs/audiostory.md §4): the checkpoint is damaged or not AudioStory's: " + "; ".join(wrong[:10])
            + "; download the release again"
        )
    deltas = {k: (b[k].float() @ a[k].float()) * scale for k in a}
    return plain, deltas, superseded
