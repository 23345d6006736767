"""``transformers-tts``: any transformers text-to-speech model as a narration generator.

Three families, told apart by the model's ``config.json`` (``model_type``):

- ``vits`` (VITS, every MMS-TTS voice): :class:`~transformers.VitsModel` + :class:`~transformers.VitsTokenizer`;
  multi-speaker checkpoints take ``speaker`` (an id);
- ``speecht5``: :class:`~transformers.SpeechT5ForTextToSpeech` with the :class:`~transformers.SpeechT5HifiGan`
  ``vocoder`` and a speaker embedding (``speaker`` = a ``.npy``/``.pt`` file of the x-vector);
- anything else (Bark, MusicGen, SeamlessM4T, ...): ``transformers.pipeline("text-to-speech")``.

Each cue's text is split into sentences and normalised with :mod:`storysdk_speech.text` (numbers
and abbreviations as words: MMS-TTS voices were trained on text without digits and read "3" as
nothing), each sentence is synthesised on its own and the sentences are joined with
``sentence_silence`` seconds of silence; ``metadata["sentences"]`` says where each one lies in the
clip. The model draws noise (VITS' stochastic duration predictor and prior, SpeechT5's prenet
dropout, Bark's sampling); it is drawn inside :func:`storysdk.runtime.seeded` seeded from
``ctx.scene_seed(cue)``, so a cue sounds the same on every run (byte for byte on CPU) and the
caller's RNG is left as it was. ``preset="tiny"``: the toy VITS of :mod:`storysdk_speech.tiny`.
Torch and transformers load only with the model.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
from storysdk import AudioAsset, ConfigError, Generator, RenderContext
from storysdk.errors import CheckpointError
from storysdk.model import Asset, Scene, StoryPlan
from storysdk.options import DeviceOptions, Field

from .text import normalize, speaker_parts, split_sentences, warn_dropped

__all__ = ["DEFAULT_MODEL", "DEFAULT_VOCODER", "TransformersTTSGenerator"]

DEFAULT_MODEL = "facebook/mms-tts-eng"
DEFAULT_VOCODER = "microsoft/speecht5_hifigan"

Speaker = int | str | None

#: Typographic marks a character vocabulary usually spells in ASCII (MMS-TTS has "'" and "-").
_ASCII_MARKS = {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2013": "-", "\u2014": "-", "\u2010": "-"}


@attrs.define
class _Voice:
    """A loaded model: its family, the parts it needs and what it can say."""

    family: str  # "vits" | "speecht5" | "pipeline"
    sample_rate: int
    device: Any
    model: Any = None
    tokenizer: Any = None
    vocoder: Any = None
    pipe: Any = None
    num_speakers: int = 1
    #: characters the tokenizer knows (``None``: no character vocabulary to check against)
    alphabet: frozenset[str] | None = None
    lower: bool = False
    embeddings: dict[str, Any] = attrs.field(factory=dict)


class TransformersTTSGenerator(Generator):
    """Speaks each cue's text (its prompt: a narration track's ``text = "{narration}"``) with a
    transformers text-to-speech model; one mono clip per cue, as long as the speech.

    Options (:class:`Options`): ``model`` (folder or hub id; None: MMS-TTS English), the shared
    ``preset``/``device``/``dtype``/``offload``/``weights_seed``, ``vocoder`` (SpeechT5), ``speaker``
    (VITS: a speaker id; SpeechT5: a speaker-embedding file) and ``voices`` (a speaker per plan
    character: their "Name:" / "[Name]" lines), ``speaking_rate`` (VITS), ``sentence_silence``,
    ``silence`` (length of a clip for an empty text when the cue has no duration), ``normalize``,
    ``max_new_tokens`` and ``extra`` (pipeline models). Building it loads nothing.
    """

    name: ClassVar[str] = "transformers-tts"
    description: ClassVar[str] = (
        "any transformers text-to-speech model (VITS/MMS-TTS, SpeechT5, Bark, ...), one spoken clip per cue"
    )
    modality = "audio"
    batching: ClassVar[bool] = False
    tiny_preset: ClassVar[bool] = True

    class Options(DeviceOptions):
        model: str | Path | None = Field(
            None, description=f"folder or hub id of a transformers text-to-speech model; None: {DEFAULT_MODEL}"
        )
        vocoder: str | Path | None = Field(
            None, description=f"SpeechT5 only: folder or hub id of its SpeechT5HifiGan vocoder; None: {DEFAULT_VOCODER}"
        )
        speaker: int | str | None = Field(
            None,
            description="the narrator's voice: a speaker id of a multi-speaker VITS model (0..num_speakers-1), "
            "or for SpeechT5 a .npy/.pt file holding its speaker embedding (x-vector); None: the model's only voice",
        )
        voices: dict[str, int | str] | None = Field(
            None,
            description="a speaker (id or SpeechT5 embedding file, as speaker) per plan character, for lines "
            "starting 'Name:' or '[Name]'; the rest is the narrator's (speaker)",
        )
        speaking_rate: float | None = Field(
            None, gt=0, description="VITS: speed of speech (2.0: twice as fast); None: the model's own"
        )
        sentence_silence: float = Field(0.3, ge=0, description="seconds of silence between sentences")
        silence: float = Field(
            1.0, gt=0, description="seconds of the silent clip made for an empty text when the cue has no duration"
        )
        normalize: bool = Field(
            True, description="write numbers and abbreviations out as words before speaking ('3' -> 'three')"
        )
        max_new_tokens: int | None = Field(
            None, ge=1, description="pipeline models (Bark, ...): most tokens generated per sentence; None: the model's"
        )
        extra: dict[str, Any] | None = Field(
            None, description="pipeline models: more keyword arguments for the text-to-speech pipeline call"
        )

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from storysdk.runtime import resolve_weights

        opts = self.options
        for who, value in [("speaker", opts.speaker), *((f"voices[{k!r}]", v) for k, v in (opts.voices or {}).items())]:
            if isinstance(value, int) and value < 0:
                raise ConfigError(f"generator {self.name!r}: {who} = {value} is not a speaker id; use 0 or more")
        if opts.offload is not None and isinstance(opts.device, str) and opts.device.strip().lower().startswith("cpu"):
            raise ConfigError(
                f"generator {self.name!r}: offload={opts.offload!r} needs a CUDA device (got device={opts.device!r}); "
                "drop the offload option on CPU"
            )
        self._model = str(opts.model) if opts.model is not None else DEFAULT_MODEL
        self._weights = resolve_weights(opts.preset, self._model, who=f"generator {self.name!r}")
        self._preset = self._weights.preset
        if self._preset == "full":
            self._model = _check_source(self._model, "model")
        self._vocoder = _check_source(str(opts.vocoder), "vocoder") if opts.vocoder is not None else DEFAULT_VOCODER
        self._voice: _Voice | None = None

    # -- what the pipeline and run.json read -------------------------------------------------
    @property
    def weights(self) -> str:
        """The weights used, as recorded in ``run.json`` (``"tiny"``, ``"tiny (fallback: ...)"`` or the model)."""
        return str(self._weights) if self._preset == "tiny" else self._model

    @property
    def model_name(self) -> str:
        """The model as recorded in asset metadata (``"tiny-vits"`` for the tiny preset)."""
        from .tiny import TINY_MODEL_NAME

        return TINY_MODEL_NAME if self._preset == "tiny" else self._model

    @property
    def sample_rate(self) -> int:
        """The sample rate of the model's speech (loads the model)."""
        return self.load().sample_rate

    def check_plan(self, plan: StoryPlan) -> None:
        unknown = sorted(set(self.options.voices or {}) - {c.name for c in plan.characters})
        if unknown:
            known = ", ".join(repr(c.name) for c in plan.characters) or "(none)"
            raise ConfigError(
                f"generator {self.name!r}: voices names {', '.join(map(repr, unknown))}, which the plan has no "
                f"character of (its characters: {known}); rename the voices entries or drop them"
            )

    # -- loading -------------------------------------------------------------------------------
    def load(self) -> _Voice:
        """Load the model now (otherwise at the first :meth:`generate`) and return it."""
        if self._voice is None:
            self._voice = self._load()
            for who, value in [("speaker", self.options.speaker), *(
                (f"voices[{k!r}]", v) for k, v in (self.options.voices or {}).items()
            )]:
                _check_speaker(self._voice, who, value, self.model_name)
        return self._voice

    def _load(self) -> _Voice:
        from storysdk.runtime import resolve

        opts = self.options
        who = f"generator {self.name!r}"
        r = resolve(who, preset=self._preset, model=self._model, device=opts.device, dtype=opts.dtype)
        if opts.offload is not None and r.device.type != "cuda":
            raise ConfigError(
                f"{who}: offload={opts.offload!r} needs a CUDA device (got {str(r.device)!r}); "
                "drop the offload option on CPU"
            )
        if r.preset == "tiny":
            from .tiny import tiny_vits

            model, tokenizer = tiny_vits(opts.weights_seed)
            net: Any = model
            return self._place(_vits_voice(net.to(dtype=r.dtype), tokenizer, r.device))
        family = _family(self._model)
        if family == "vits":
            return self._place(_load_vits(self._model, r.dtype, r.device))
        if family == "speecht5":
            return self._place(_load_speecht5(self._model, self._vocoder, r.dtype, r.device))
        return _load_pipeline(self._model, r.dtype, r.device, opts.offload)

    def _place(self, voice: _Voice) -> _Voice:
        """Onto the device, or (offload) kept on the CPU and moved in for each call."""
        offload = self.options.offload
        for part in (voice.model, voice.vocoder):
            if part is None:
                continue
            if offload == "sequential":
                from accelerate import cpu_offload

                cpu_offload(part, execution_device=voice.device)
            elif offload is None:
                part.to(voice.device)
        return voice

    # -- rendering -----------------------------------------------------------------------------
    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterable[Asset]:
        """Yield one mono :class:`AudioAsset` per cue: its sentences spoken, ``sentence_silence`` apart."""
        opts = self.options
        voice = self.load()
        rate = voice.sample_rate
        names = [c.name for c in ctx.plan.characters]
        for cue in scenes:
            seed = ctx.scene_seed(cue)
            text = cue.prompt or ""
            lines = self._lines(text, names)
            spoken = self._spoken(voice, lines)
            ctx.report(0, max(len(spoken), 1), cue.index, f"cue {cue.index}")
            clips: list[np.ndarray] = []
            sentences: list[dict[str, Any]] = []
            gap = np.zeros(int(round(opts.sentence_silence * rate)), dtype=np.float32)
            at = 0
            with _on_device(voice, self.options.offload), _seeded(seed, voice.device):
                for k, (shown, said, speaker) in enumerate(spoken):
                    wave = _synthesize(voice, said, speaker, opts)
                    ctx.report(k + 1, len(spoken), cue.index, f"cue {cue.index}: sentence {k + 1} of {len(spoken)}")
                    if wave.size == 0:
                        continue
                    if clips:
                        clips.append(gap)
                        at += gap.size
                    clips.append(wave)
                    sentences.append({"text": shown, "start": at / rate, "end": (at + wave.size) / rate})
                    at += wave.size
            if clips:
                samples = np.concatenate(clips)[None, :]
            else:  # nothing to say: silence as long as the cue (else `silence` seconds)
                seconds = float(cue.duration) if cue.duration else opts.silence
                samples = np.zeros((1, int(round(seconds * rate))), dtype=np.float32)
            metadata: dict[str, Any] = {
                "sentences": sentences,
                "voice": self.model_name,
                "speaker": opts.speaker,
                "model": self.model_name,
                "seed": seed,
                "text": text,
            }
            if opts.voices:
                metadata["voices"] = dict(opts.voices)
            yield AudioAsset(cue.index, samples, sample_rate=rate, made_by=self.name, metadata=metadata)

    def _lines(self, text: str, names: list[str]) -> list[tuple[str, Speaker]]:
        """(sentence as written, speaker) in order: the characters' parts get their voices."""
        narrator = self.options.speaker
        voices = self.options.voices or {}
        parts = speaker_parts(text, names) if voices else [(None, text)]
        out: list[tuple[str, Speaker]] = []
        for who, part in parts:
            speaker = voices.get(who, narrator) if who is not None else narrator
            out.extend((sentence, speaker) for sentence in split_sentences(part))
        return out

    def _spoken(self, voice: _Voice, lines: list[tuple[str, Speaker]]) -> list[tuple[str, str, Speaker]]:
        """(sentence as written, as it is said, speaker); characters the model cannot say dropped with
        one warning naming them (punctuation quietly: VITS vocabularies mostly have none); sentences
        without a letter or digit left are not spoken."""
        opts = self.options
        out = []
        dropped: set[str] = set()
        for shown, speaker in lines:
            said = normalize(shown) if opts.normalize else shown
            if voice.alphabet is not None:
                said = "".join(_ASCII_MARKS.get(c, c) for c in said)
                if voice.lower:
                    said = said.lower()
                kept = []
                for c in said:
                    if c in voice.alphabet:
                        kept.append(c)
                    elif c.isspace():
                        kept.append(" ")
                    elif not unicodedata.category(c).startswith("P"):
                        dropped.add(c)
                said = " ".join("".join(kept).split())
            out.append((shown, said, speaker))
        warn_dropped(dropped, f"model {self.model_name!r}")
        return [line for line in out if any(c.isalnum() for c in line[1])]  # "..." alone is nothing to say


# -- helpers ---------------------------------------------------------------------------------------


def _check_source(source: str, option: str) -> str:
    """``source`` when it is an existing path or looks like a hub id; else a clear error."""
    from storysdk.runtime import resolve_weights

    expanded = os.path.expanduser(source)
    if os.path.exists(expanded):
        return expanded
    try:  # resolve_weights refuses a path that does not exist (and takes a hub id as one to fetch)
        resolve_weights("auto", source, warn=False, who="generator 'transformers-tts'", option=option)
    except ConfigError:
        raise ConfigError(
            f"generator 'transformers-tts': the {option} folder {source!r} does not exist; give an existing "
            f"folder (save_pretrained layout) or a hub id like "
            + (f"{DEFAULT_VOCODER!r} (a SpeechT5HifiGan)" if option == "vocoder" else f"{DEFAULT_MODEL!r}, or preset='tiny' for toy weights")
        ) from None
    return source


def _family(model: str) -> str:
    """``"vits"``, ``"speecht5"`` or ``"pipeline"``, from the model's config.json (``model_type``)."""
    from storysdk.runtime import read_json_config

    if os.path.isdir(model):
        config = read_json_config(Path(model) / "config.json", what=f"model {model!r} config")
        kind = str(config.get("model_type", ""))
    else:
        try:
            from transformers import AutoConfig

            kind = str(AutoConfig.from_pretrained(model).model_type)
        except Exception as exc:  # noqa: BLE001 - offline, unknown repo, gated repo, ...
            raise ConfigError(
                f"could not fetch the config of model {model!r} ({type(exc).__name__}); give a local folder "
                "(save_pretrained layout), a hub id reachable from here (or already in the local cache), "
                "or preset='tiny' for toy weights"
            ) from None
    return kind if kind in ("vits", "speecht5") else "pipeline"


def _tokenizer(cls: Any, source: str, what: str) -> Any:
    try:
        return cls.from_pretrained(source)
    except (ConfigError, CheckpointError):
        raise
    except ImportError as exc:
        if "sentencepiece" in str(exc).lower():  # SpeechT5Tokenizer (spm_char.model); not among our dependencies
            raise ConfigError(
                f"{what} needs the sentencepiece package, which is not installed; pip install sentencepiece and retry"
            ) from None
        raise ConfigError(f"{what} needs a package that is not installed ({exc}); install it and retry") from None
    except Exception as exc:  # noqa: BLE001 - tokenizers raise OSError, ValueError, JSONDecodeError, ...
        raise CheckpointError(
            f"could not load {what} from {source!r} ({type(exc).__name__}: {exc}); check that the folder is "
            "complete (its tokenizer/vocabulary files) or download it again"
        ) from None


def _vits_voice(model: Any, tokenizer: Any, device: Any, where: str = "the tiny preset") -> _Voice:
    ids = [int(i) for i in tokenizer.encoder.values()]
    if ids and max(ids) >= int(model.config.vocab_size):
        raise CheckpointError(
            f"VITS model in {where!r}: its tokenizer has symbol ids up to {max(ids)} but the model's config.json "
            f"has vocab_size {model.config.vocab_size}: the tokenizer and the weights are of different voices; "
            "download the folder again"
        )
    plain = bool(tokenizer.normalize) and not tokenizer.phonemize and not getattr(tokenizer, "is_uroman", False)
    alphabet = frozenset(k for k in tokenizer.encoder if len(k) == 1) if plain else None
    return _Voice(
        "vits",
        int(model.config.sampling_rate),
        device,
        model=model,
        tokenizer=tokenizer,
        num_speakers=int(model.config.num_speakers),
        alphabet=alphabet,
        lower=plain,
    )


def _load_vits(model: str, dtype: Any, device: Any) -> _Voice:
    from storysdk.runtime import load_pretrained
    from transformers import VitsModel, VitsTokenizer

    net = load_pretrained(VitsModel, model, what=f"VITS model {model!r}", dtype=dtype).eval()
    tokenizer = _tokenizer(VitsTokenizer, model, f"the VITS tokenizer of {model!r}")
    return _vits_voice(net, tokenizer, device, model)


def _load_speecht5(model: str, vocoder: str, dtype: Any, device: Any) -> _Voice:
    from storysdk.runtime import load_pretrained
    from transformers import AutoTokenizer, SpeechT5ForTextToSpeech, SpeechT5HifiGan

    net = load_pretrained(SpeechT5ForTextToSpeech, model, what=f"SpeechT5 model {model!r}", dtype=dtype).eval()
    voc = load_pretrained(SpeechT5HifiGan, vocoder, what=f"SpeechT5 vocoder {vocoder!r}", dtype=dtype).eval()
    if int(voc.config.model_in_dim) != int(net.config.num_mel_bins):
        raise CheckpointError(
            f"SpeechT5 vocoder {vocoder!r} takes {voc.config.model_in_dim} mel bins but model {model!r} makes "
            f"{net.config.num_mel_bins}: they do not belong together; pass the vocoder trained with this model"
        )
    # only the text side of SpeechT5Processor is used (its feature extractor reads speech, and a
    # checkpoint folder need not ship its preprocessor_config.json): the model's own tokenizer class
    tokenizer = _tokenizer(AutoTokenizer, model, f"the SpeechT5 tokenizer of {model!r}")
    return _Voice("speecht5", int(voc.config.sampling_rate), device, model=net, tokenizer=tokenizer, vocoder=voc)


def _load_pipeline(model: str, dtype: Any, device: Any, offload: str | None) -> _Voice:
    from transformers import pipeline as make_pipeline

    factory: Any = make_pipeline
    kwargs: dict[str, Any] = {"dtype": dtype}
    if offload is None:
        kwargs["device"] = device
    else:
        kwargs["device_map"] = "auto" if offload == "sequential" else str(device)
    try:
        pipe = factory("text-to-speech", model=model, **kwargs)
    except ImportError as exc:
        raise ConfigError(f"model {model!r} needs a package that is not installed ({exc}); install it and retry") from None
    except Exception as exc:  # noqa: BLE001 - the pipeline factory raises many error types
        from storysdk.runtime import find_broken_file

        broken = find_broken_file(model) if os.path.isdir(model) else None
        if broken is not None:
            raise broken from None
        raise CheckpointError(
            f"could not load model {model!r} as a transformers text-to-speech pipeline ({type(exc).__name__}: "
            f"{exc}); give a text-to-speech model (VITS, SpeechT5, Bark, ...) or download it again"
        ) from None
    return _Voice("pipeline", int(pipe.sampling_rate), device, pipe=pipe)


def _check_speaker(voice: _Voice, who: str, value: Speaker, model: str) -> None:
    if value is None:
        if voice.family == "speecht5" and who == "speaker":
            raise ConfigError(
                f"generator 'transformers-tts': SpeechT5 model {model!r} needs a speaker embedding; pass "
                f"speaker = a .npy or .pt file holding a {voice.model.config.speaker_embedding_dim}-value x-vector"
            )
        return
    if voice.family == "vits":
        if not isinstance(value, int):
            raise ConfigError(f"generator 'transformers-tts': {who} = {value!r}: a VITS voice takes a speaker id (int)")
        if value >= voice.num_speakers:
            raise ConfigError(
                f"generator 'transformers-tts': {who} = {value} is out of range: model {model!r} has "
                f"{voice.num_speakers} speaker(s), ids 0..{voice.num_speakers - 1}; pass one of those"
            )
    elif voice.family == "speecht5":
        if not isinstance(value, str):
            raise ConfigError(
                f"generator 'transformers-tts': {who} = {value!r}: SpeechT5 takes a speaker embedding; pass "
                f"the path of a .npy or .pt file holding a {voice.model.config.speaker_embedding_dim}-value x-vector"
            )
        voice.embeddings[value] = _embedding(value, who, voice)
    else:
        raise ConfigError(
            f"generator 'transformers-tts': {who}: model {model!r} runs through the text-to-speech pipeline, "
            "which takes no speaker option; drop it (pass the model's own voice settings through extra)"
        )


def _embedding(path: str, who: str, voice: _Voice) -> Any:
    import torch
    from storysdk.runtime import load_torch_file

    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise ConfigError(f"generator 'transformers-tts': {who}: speaker embedding file {path!r} does not exist; pass an existing .npy or .pt file")
    if file.suffix == ".npy":
        try:
            data = torch.from_numpy(np.load(file, allow_pickle=False).astype(np.float32))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"speaker embedding {path!r} is not a readable .npy file ({exc}); restore or re-export it") from None
    else:
        data = torch.as_tensor(load_torch_file(file, what="speaker embedding"), dtype=torch.float32)
    size = int(voice.model.config.speaker_embedding_dim)
    if data.numel() != size:
        raise ConfigError(
            f"generator 'transformers-tts': {who}: speaker embedding {path!r} holds {data.numel()} values, the model "
            f"takes {size}; pass an x-vector of {size} values"
        )
    return data.reshape(1, size)


class _on_device:
    """offload='model': the model's parts on the device while a cue is spoken, on the CPU after."""

    def __init__(self, voice: _Voice, offload: str | None) -> None:
        self.parts = [p for p in (voice.model, voice.vocoder) if p is not None] if offload == "model" else []
        self.device = voice.device

    def __enter__(self) -> None:
        for p in self.parts:
            p.to(self.device)

    def __exit__(self, *exc: object) -> None:
        for p in self.parts:
            p.to("cpu")


def _seeded(seed: int, device: Any) -> Any:
    from storysdk.runtime import seeded

    return seeded(seed, devices=(device,) if getattr(device, "type", "") == "cuda" else ())


def _synthesize(voice: _Voice, text: str, speaker: Speaker, opts: Any) -> np.ndarray:
    """One sentence as float32 mono samples (inside the caller's seeded block)."""
    import torch

    with torch.inference_mode():
        if voice.family == "vits":
            # a checked character vocabulary: the text is lower-cased and filtered already
            plain = {"normalize": False} if voice.alphabet is not None else {}
            enc = voice.tokenizer(text, return_tensors="pt", **plain)
            kwargs: dict[str, Any] = {}
            if voice.num_speakers > 1:
                kwargs["speaker_id"] = int(speaker or 0)
            if opts.speaking_rate is not None:
                kwargs["speaking_rate"] = opts.speaking_rate
            out = voice.model(
                input_ids=enc.input_ids.to(voice.device), attention_mask=enc.attention_mask.to(voice.device), **kwargs
            )
            wave = out.waveform[0]
        elif voice.family == "speecht5":
            enc = voice.tokenizer(text=text, return_tensors="pt")
            emb = voice.embeddings[str(speaker)].to(device=voice.device, dtype=voice.model.dtype)
            wave = voice.model.generate_speech(enc.input_ids.to(voice.device), emb, vocoder=voice.vocoder)
        else:
            params: dict[str, Any] = dict(opts.extra or {})
            if opts.max_new_tokens is not None:
                params["generate_kwargs"] = {**params.get("generate_kwargs", {}), "max_new_tokens": opts.max_new_tokens}
            wave = voice.pipe(text, **params)["audio"]
    arr = wave.detach().float().cpu().numpy() if hasattr(wave, "detach") else np.asarray(wave, dtype=np.float32)
    if arr.ndim > 1:  # (channels, n): mono for narration
        arr = arr.reshape(-1, arr.shape[-1]).mean(axis=0)
    return np.ascontiguousarray(arr, dtype=np.float32)
