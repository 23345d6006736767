"""Constants of AudioStory / TangoFlux inference, each with the spec section it comes from.

Pure data: importing this module imports nothing heavy.
"""

from __future__ import annotations

# --- special tokens (docs/audiostory.md §1.2) -------------------------------------------------
T5_OPEN = "<t5>"
T5_CLOSE = "</t5>"
T5_QUERY = "<t5_{:05d}>"
AUD_OPEN = "<aud>"
AUD_CLOSE = "</aud>"
AUD_QUERY = "<aud_{:05d}>"
GEN_OPEN = "<|gen|>"
GEN_CLOSE = "<|/gen|>"
THINK_OPEN = "<|think|>"
THINK_CLOSE = "<|/think|>"
TS_OPEN = "<timestamp>"
TS_CLOSE = "</timestamp>"
VIDEO_PAD = "<video_padding>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ENDOFTEXT = "<|endoftext|>"

T5_QUERY_VOCAB = 100  # <t5_00000> ... <t5_00099>, docs/audiostory.md §1.2
AUD_QUERY_VOCAB = 501  # <aud_00000> ... <aud_00500>, docs/audiostory.md §1.2
NUM_ADDED_TOKENS = 612  # docs/audiostory.md §1.2
QWEN25_BASE_VOCAB = 151_665  # Qwen2.5 tokenizer length before the added tokens, docs/audiostory.md §1.2
RELEASED_VOCAB = 152_277  # = 151,665 + 612, the LLM config's vocab_size, docs/audiostory.md §1.1/§1.2


def added_tokens() -> list[str]:
    """The 612 added tokens in the order of ``tokenizer/added_tokens.json`` (docs/audiostory.md §1.2)."""
    tokens = [T5_CLOSE, VIDEO_PAD, TS_OPEN, TS_CLOSE, T5_OPEN]
    tokens += [T5_QUERY.format(k) for k in range(T5_QUERY_VOCAB)]
    tokens += [AUD_OPEN, AUD_CLOSE]
    tokens += [AUD_QUERY.format(k) for k in range(AUD_QUERY_VOCAB)]
    tokens += [GEN_OPEN, GEN_CLOSE, THINK_OPEN, THINK_CLOSE]
    assert len(tokens) == NUM_ADDED_TOKENS
    return tokens


# --- query blocks (docs/audiostory.md §1.4) ---------------------------------------------------
NUM_T5_TOKENS = 64  # N, semantic / bridging queries
NUM_AUD_TOKENS = 8  # M, residual / consistency queries
MAX_NEW_TOKENS = 1600

# --- prompt (docs/audiostory.md §1.3; strings of evaluate/inference.py) ------------------------
SYSTEM_MESSAGE = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
USER_TURN = "<|im_start|>user\n{instruction}<|im_end|>\n"
ASSISTANT_OPEN = "<|im_start|>assistant\n<|think|>"
TOTAL_DURATION_SENTENCE = " The total duration is {total} seconds."
GEN_PROMPT_ALL: tuple[str, ...] = (
    "Create a long-form audio composition that explores ",
    "I'd like an extended audio track with rich details of ",
    "Craft an immersive soundscape that slowly unfolds ",
    "Please produce a comprehensive recording capturing every aspect of ",
    "Generate a detailed, drawn-out audio that brings to life ",
    "Let's design a textured audio piece highlighting the nuances of ",
    "Kindly fashion a lengthy audio journey through ",
    "Devise a long-form audio narrative of ",
    "Develop a gradually developing audio with meticulous attention to ",
    "Imagine and produce a vivid audio experience of ",
    "Construct a detailed soundscape that tells the story of ",
    "Please generate a sustained audio track filled with ",
    "Produce an in-depth, multi-layered audio that portrays ",
    "Design a descriptive audio capturing the essence of ",
    "Create a nuanced, extended audio that conveys ",
    "I'd like to commission a long-form audio depicting ",
    "Fashion a richly detailed audio recording of ",
    "Propose a detailed, immersive audio that showcases ",
    "Generate an elaborate audio piece focusing on ",
    "Develop a comprehensive audio that fully represents ",
)

# --- bridge (docs/audiostory.md §1.5, §9) -------------------------------------------------------
T5_FEATURE_SCALE = 10.0
BRIDGE_DIM = 1024
FUSER_HEADS = 8

# --- DiT and sampling (docs/audiostory.md §1.6, §2) ---------------------------------------------
AUDIO_SEQ_LEN = 645
MAX_DURATION = 30.0
AUDIOSTORY_STEPS = 50
AUDIOSTORY_GUIDANCE = 4.0  # --guidance of evaluate/inference.py at HEAD 899d4f9 (§1.6)
TANGOFLUX_STEPS = 25  # TangoFluxInference.generate default (§2)
TANGOFLUX_GUIDANCE = 4.5  # §2
TANGOFLUX_DEFAULT_DURATION = 10.0  # §2
T5_MAX_TEXT_TOKENS = 64  # encode_text cap (§2)
DURATION_FOURIER_DIM = 256  # 128 learned frequencies, Linear(257 -> dim) (§2)

# --- VAE, trim, join (docs/audiostory.md §1.7, §3) ----------------------------------------------
VAE_SAMPLE_RATE = 44_100
TARGET_SAMPLE_RATE = 32_000
CROSSFADE_SECONDS = 3.0

# --- LoRA (docs/audiostory.md §1.1) ----------------------------------------------------------------
LORA_R = 32
LORA_ALPHA = 32
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MODULES_TO_SAVE = ("input_layernorm", "post_attention_layernorm", "norm")
