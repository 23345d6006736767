"""The output folder of a run: the plan, each asset as soon as it exists, and resume.

Layout::

    run.json                      fingerprint of the request and pipeline (resume guard)
    plan.json                     the plan (editable; ``storysdk run --plan`` renders it again)
    tokens/scene-0003.<kind>.safetensors   tokens a planner attached to a scene
    images/scene-0003.png         one picture per scene (lossless, so a resume is bit-exact)
    audio/scene-0003.wav          one clip per scene (float32 WAV, so a resume is bit-exact)
    ...                           whatever the composers write

Every file is written to a temporary name and renamed into place, so an interrupted run
never leaves a half-written asset that a resume would take as finished.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .atomic import atomic_path, atomic_write
from .audio import read_audio, write_audio
from .errors import OutputFolderError
from .model import AudioAsset, ImageAsset, Scene, StoryPlan, Tokens

__all__ = ["OutputFolder", "atomic_path", "atomic_write", "fingerprint"]

RUN_FILE = "run.json"
#: The one metadata key of a token file: sorted JSON of kind, made_by, metadata and format.
TOKENS_META_KEY = "storysdk"
PLAN_FILE = "plan.json"


def fingerprint(data: Mapping[str, Any]) -> str:
    """A stable hash of JSON-able data (keys sorted)."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class OutputFolder:
    """Reads and writes the files of one run in ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- run guard ---------------------------------------------------------------------------
    def check_or_claim(self, run_info: Mapping[str, Any], *, overwrite: bool = False) -> bool:
        """Claim the folder for this run; return True when it resumes an earlier run.

        A folder that holds another story (a different fingerprint) is refused unless
        ``overwrite`` is set, in which case the earlier run's plan, tokens and assets are removed.
        """
        run_file = self.root / RUN_FILE
        if run_file.is_file():
            try:
                old = json.loads(run_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = {}
            if old.get("fingerprint") == run_info["fingerprint"] and not overwrite:
                return True
            if not overwrite:
                raise OutputFolderError(
                    f"{self.root} holds the output of a different story or pipeline "
                    f"(fingerprint {str(old.get('fingerprint'))[:12]} != {run_info['fingerprint'][:12]}); "
                    "choose another --out folder, or pass --overwrite (overwrite=True) to replace it"
                )
            self.clear()
        elif self.root.exists() and any(self.root.iterdir()) and not overwrite:
            raise OutputFolderError(
                f"{self.root} is not empty and was not written by storysdk; "
                "choose another --out folder, or pass --overwrite (overwrite=True) to write into it"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_write(run_file, "w") as fh:
            json.dump(dict(run_info), fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
        return False

    def clear(self) -> None:
        """Remove what an earlier run wrote here (plan, tokens, assets); other files stay."""
        for name in (PLAN_FILE, RUN_FILE):
            (self.root / name).unlink(missing_ok=True)
        for sub in ("tokens", "images", "audio"):
            folder = self.root / sub
            if folder.is_dir():
                for f in folder.iterdir():
                    if f.is_file():
                        f.unlink()

    # -- plan and tokens -------------------------------------------------------------------
    @property
    def plan_path(self) -> Path:
        return self.root / PLAN_FILE

    def save_plan(self, plan: StoryPlan) -> Path:
        """Write ``plan.json`` (tokens are saved separately with :meth:`save_tokens`)."""
        with atomic_write(self.plan_path, "w") as fh:
            fh.write(plan.to_json() + "\n")
        return self.plan_path

    def load_plan(self) -> StoryPlan | None:
        if not self.plan_path.is_file():
            return None
        plan = StoryPlan.load(self.plan_path)
        for scene in plan.scenes:
            self.load_tokens(scene)
        return plan

    def _token_path(self, scene: Scene, kind: str) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in kind)
        return self.root / "tokens" / f"scene-{scene.index:04d}.{safe}.safetensors"

    def save_tokens(self, scene: Scene) -> None:
        """Save the tokens a scene holds now (the pipeline calls it before tokenizers run, so
        only the planner's own tokens are stored: those cannot be made again without re-planning)."""
        for kind, tok in scene.tokens.items():
            path = self._token_path(scene, kind)
            if path.is_file():
                continue
            tensors = dict(tok.tensors)
            numpy = bool(tensors) and all(isinstance(t, np.ndarray) for t in tensors.values())
            # one metadata entry: safetensors writes several in hash order, which differs from
            # run to run, so the same tokens would give files that differ byte for byte
            info = {"kind": tok.kind, "made_by": tok.made_by, "metadata": tok.metadata,
                    "format": "numpy" if numpy else "torch"}
            meta = {TOKENS_META_KEY: json.dumps(info, sort_keys=True, default=str)}
            if numpy:
                from safetensors.numpy import save_file as save_np

                with atomic_path(path) as tmp:
                    save_np({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=meta)
            else:
                from safetensors.torch import save_file as save_pt

                with atomic_path(path) as tmp:
                    save_pt({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)

    def load_tokens(self, scene: Scene) -> None:
        folder = self.root / "tokens"
        if not folder.is_dir():
            return
        for path in sorted(folder.glob(f"scene-{scene.index:04d}.*.safetensors")):
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as fh:
                meta = fh.metadata() or {}
            if TOKENS_META_KEY in meta:
                info = json.loads(meta[TOKENS_META_KEY])
                meta = {**info, "metadata": json.dumps(info.get("metadata", {}))}
            if meta.get("format") == "numpy":
                from safetensors.numpy import load_file as load_np

                tensors: dict[str, Any] = dict(load_np(str(path)))
            else:
                from safetensors.torch import load_file as load_pt

                tensors = dict(load_pt(str(path)))
            kind = meta.get("kind", path.name.split(".")[1])
            scene.tokens[kind] = Tokens(
                kind=kind,
                made_by=meta.get("made_by", ""),
                tensors=tensors,
                metadata=json.loads(meta.get("metadata", "{}")),
            )

    # -- assets ----------------------------------------------------------------------------
    def image_path(self, index: int) -> Path:
        return self.root / "images" / f"scene-{index:04d}.png"

    def audio_path(self, index: int) -> Path:
        return self.root / "audio" / f"scene-{index:04d}.wav"

    def _meta_path(self, asset_path: Path) -> Path:
        return asset_path.with_suffix(".json")

    def _save_metadata(self, asset_path: Path, metadata: Mapping[str, Any]) -> None:
        # written before the asset: an asset on disk always has its metadata (a resumed
        # AudioStory clip keeps its declared crossfade padding, for example)
        meta = {k: v for k, v in metadata.items() if k != "resumed"}
        with atomic_write(self._meta_path(asset_path), "w") as fh:
            fh.write(json.dumps(meta, sort_keys=True, default=str, ensure_ascii=False) + "\n")

    def _load_metadata(self, asset_path: Path) -> dict[str, Any]:
        path = self._meta_path(asset_path)
        meta: dict[str, Any] = {}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                loaded = None
            if isinstance(loaded, dict):
                meta.update(loaded)
        meta["resumed"] = True
        return meta

    def save_asset(self, asset: ImageAsset | AudioAsset) -> Path:
        path = self.image_path(asset.scene_index) if isinstance(asset, ImageAsset) else self.audio_path(asset.scene_index)
        self._save_metadata(path, asset.metadata)
        if isinstance(asset, ImageAsset):
            path = self.image_path(asset.scene_index)
            with atomic_write(path) as fh:
                asset.image.save(fh, format="PNG")
            return path
        # float32 WAV without libsndfile's time-stamped PEAK chunk: exact and byte-stable
        return write_audio(self.audio_path(asset.scene_index), asset.samples, asset.sample_rate, "wav", "FLOAT")

    def load_image(self, index: int, made_by: str = "") -> ImageAsset | None:
        path = self.image_path(index)
        if not path.is_file():
            return None
        with Image.open(path) as im:
            im.load()
            image = im.copy()
        return ImageAsset(index, image, made_by=made_by, metadata=self._load_metadata(path))

    def load_audio(self, index: int, made_by: str = "") -> AudioAsset | None:
        path = self.audio_path(index)
        if not path.is_file():
            return None
        samples, sr = read_audio(path)
        return AudioAsset(index, samples, sample_rate=sr, made_by=made_by, metadata=self._load_metadata(path))
