"""Constants of SEED-Story, each with the spec section it comes from (docs/seed-story.md)."""

from __future__ import annotations

# §1.4 special tokens, resolved by string (never by assumed id).
BOI_TOKEN = "<img>"
EOI_TOKEN = "</img>"
IMG_TOKEN = "<img_{:05d}>"
NUM_IMG_TOKENS = 64  # §1.2 input resampler grid 8 -> 64 tokens; §2 64 image positions
IMG_TOKENS = tuple(IMG_TOKEN.format(i) for i in range(NUM_IMG_TOKENS))
ADDED_TOKENS = (BOI_TOKEN, EOI_TOKEN) + IMG_TOKENS  # §1.4: 66 added tokens, in id order
IMAGE_BLOCK = BOI_TOKEN + "".join(IMG_TOKENS) + EOI_TOKEN  # §2 "IMG_BLOCK"
LLAMA_BASE_VOCAB = 32000  # §1.4
LLM_VOCAB = LLAMA_BASE_VOCAB + len(ADDED_TOKENS)  # §1.3 resize_token_embeddings(32066)
INST = "[INST]"  # §1.4 plain-text segment separator

# §2 story loop
WINDOW_SIZE = 8
MAX_NEW_TOKENS = 500
STORY_LEN = 25  # start frame + 24 generated frames
TAG_RE = r"\s*<[^>]*>\s*"  # §2 text: strip every <...> tag

# §2 attention-sink cache (vis_george_sink.py, cache_mode='img_head_tail')
SINK_TOKENS = 4
HEAD_BEFORE_BOI = 4  # boi-4 ... boi+7
HEAD_AFTER_BOI = 7
TAIL_BEFORE_EOI = 8  # eoi-8 ... eoi+3
TAIL_AFTER_EOI = 3

# §1.3 LoRA
LORA_R = 16
LORA_ALPHA = 32
LORA_SCALE = LORA_ALPHA / LORA_R  # 2.0
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj", "up_proj")
NORMS_TO_SAVE = ("input_layernorm", "post_attention_layernorm", "norm")

# §1.1 preprocessing (bilinear resize to 448x448, CLIP mean/std)
IMAGE_SIZE = 448
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# §1.5 de-tokenizer pipeline defaults
GUIDANCE_SCALE = 7.5
NUM_INFERENCE_STEPS = 50
SDXL_SIZE = 1024
UPSTREAM_SEED = 42
