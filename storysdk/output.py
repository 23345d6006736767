"""The output folder of a run: a lock, the plan, each asset as soon as it exists, and resume.

Layout::

    run.json                      fingerprint of the request and pipeline (resume guard), digest of plan.json
    plan.json                     the plan (``storysdk run --plan`` renders an edited copy)
    tokens/scene-0003.<kind>.safetensors   tokens a planner attached to a scene
    timeline.json                 every scene's and cue's start and duration (storysdk.timeline)
    tracks/<name>/scene-0003.png  a picture of track <name> (lossless, so a resume is bit-exact)
    tracks/<name>/scene-0003.json its metadata, and the size and SHA-256 of the PNG
    tracks/<name>/scene-0003.wav  a clip of an audio track (float32 WAV, so a resume is bit-exact)
    tracks/<name>/cue-0007.wav    a cue of a track with a track planner (AudioStory's events)
    tracks/<name>/cues.json       that track's cues, with its tokens in tracks/<name>/tokens/
    .storysdk.lock                the folder's lock (an empty file; the OS lock on it is what counts)
    .storysdk.lock.json           who holds the lock (pid, host, since when); removed on release
    ...                           whatever the composers write

**One writer at a time.** :meth:`OutputFolder.check_or_claim` first takes an OS file lock
(``filelock``: ``flock`` on POSIX, ``LockFileEx`` on Windows) on ``.storysdk.lock`` without
waiting, and only then reads or writes ``run.json``, so two runs started at the same instant
cannot both claim the folder: the second is refused with an :class:`OutputFolderError` naming
the holder. The lock is held until :meth:`OutputFolder.release` (the pipeline releases it when
the run ends, also on errors). The OS drops the lock of a process that dies, even by
``kill -9``: the next run takes the folder over (:attr:`OutputFolder.took_over` says from whom)
and removes the temporary files the killed run left.

**Atomic files.** Every file is written to a temporary name and renamed into place, so an
interrupted run never leaves a half-written asset that a resume would take as finished.

**Verified resume.** Each asset's sidecar records the size and SHA-256 of the file written;
:meth:`OutputFolder.load_image` and :meth:`OutputFolder.load_audio` check that the file is
still that file and decodes (a PNG of the recorded size, a WAV of the recorded length), and
hand a damaged one to a callback (the pipeline renders it again) or refuse it. ``run.json``
records the SHA-256 of ``plan.json``: a plan changed behind the run's back is refused on
resume, because the assets already in the folder were made from the other one.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import socket
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .atomic import atomic_path, atomic_write, is_temp_name
from .audio import as_samples, encode_audio
from .errors import OutputFolderError, StorySDKError
from .model import AudioAsset, ImageAsset, Scene, StoryPlan, Tokens

__all__ = ["DamagedCallback", "OutputFolder", "TrackFolder", "atomic_path", "atomic_write", "fingerprint"]

RUN_FILE = "run.json"
PLAN_FILE = "plan.json"
FILES_FILE = "files.json"
TIMELINE_FILE = "timeline.json"
TRACKS_DIR = "tracks"
CUES_FILE = "cues.json"
#: The folder's lock file (kept, empty: waiters must lock the same file) and its holder's record.
LOCK_FILE = ".storysdk.lock"
OWNER_FILE = ".storysdk.lock.json"
#: The one metadata key of a token file: sorted JSON of kind, made_by, metadata and format.
TOKENS_META_KEY = "storysdk"
#: The key of an asset sidecar that records the file written (not part of the asset's metadata).
FILE_RECORD_KEY = "storysdk.file"
#: Keys of run.json: the SHA-256 of plan.json as last written, and of the one before it
#: (accepted too: a run killed between writing run.json and plan.json left that one).
PLAN_DIGEST_KEY = "plan_sha256"
PREVIOUS_PLAN_DIGEST_KEY = "plan_sha256_previous"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"

#: ``damaged(path, problem)``: told about a damaged asset file (already removed) instead of an error.
DamagedCallback = Callable[[Path, str], None]


def fingerprint(data: Mapping[str, Any]) -> str:
    """A stable hash of JSON-able data (keys sorted)."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _holder(info: Mapping[str, Any] | None) -> str:
    """``pid 123 on host h, since 2025-01-01 10:00:00 UTC`` from an owner record ('' if unknown)."""
    if not info:
        return ""
    parts = [f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"]
    if info.get("since"):
        parts.append(f"since {info['since']}")
    return ", ".join(parts)


class OutputFolder:
    """Reads and writes the files of one run in ``root``.

    Use it as a context manager (``with OutputFolder(root) as folder:``) or call
    :meth:`check_or_claim` and :meth:`release`: the folder is locked from the claim until the
    release. Reading (``load_plan``, ``load_image``, ...) needs no lock.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock: Any = None  # a filelock lock while this object holds the folder
        #: The owner record (pid, host, since) of a run that died holding this folder's lock,
        #: when :meth:`lock` took it over; ``None`` otherwise.
        self.took_over: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"OutputFolder({str(self.root)!r}{', locked' if self.locked else ''})"

    @property
    def _run_root(self) -> Path:
        """The run's output folder (a track's folder says its parent's)."""
        parent = getattr(self, "parent", None)
        return parent.root if isinstance(parent, OutputFolder) else self.root

    # -- the lock ----------------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        """Whether this object holds the folder's lock."""
        return self._lock is not None

    def __enter__(self) -> OutputFolder:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def lock(self) -> None:
        """Take the folder's lock, without waiting; create the folder if it is missing.

        A folder another live process (or another :class:`OutputFolder` in this one) holds is
        refused with an :class:`OutputFolderError` naming the holder. A lock left by a process
        that died is taken over: :attr:`took_over` records whose it was, and the temporary
        files that process left are removed.
        """
        if self._lock is not None:
            return
        from filelock import FileLock, Timeout

        self._make_root()
        lock = FileLock(str(self.root / LOCK_FILE), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            who = _holder(self._read_owner())
            raise OutputFolderError(
                f"{self.root} is being written by another storysdk run right now"
                f"{f' ({who})' if who else ''}; wait for it to finish, or choose another --out folder "
                "(the lock of a run that was killed is taken over by the next run on its own)"
            ) from None
        except OSError as exc:  # a read-only folder, a file system without locks
            raise OutputFolderError(
                f"cannot lock the output folder {self.root} ({exc.strerror or exc}); "
                "choose a folder you can write to, on a local file system, with --out"
            ) from exc
        self._lock = lock
        try:
            previous = self._read_owner()
            mine = {"pid": os.getpid(), "host": socket.gethostname()}
            if previous is not None and {k: previous.get(k) for k in mine} != mine:
                self.took_over = previous
            since = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            self._write(self.root / OWNER_FILE, json.dumps({**mine, "since": since}, sort_keys=True).encode() + b"\n")
            self._remove_temp_files()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Give the folder's lock back (a no-op when this object does not hold it)."""
        lock, self._lock = self._lock, None
        if lock is None:
            return
        try:
            (self.root / OWNER_FILE).unlink(missing_ok=True)
        except OSError:
            pass  # the folder was removed or made read-only meanwhile: the OS lock still goes
        finally:
            lock.release()

    def _make_root(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise OutputFolderError(
                f"the output folder {self.root} is a file, not a folder; give a folder path with --out "
                "(it is created when missing)"
            )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputFolderError(
                f"cannot create the output folder {self.root} ({exc.strerror or exc}); "
                "choose a folder you can write to with --out"
            ) from exc

    def _read_owner(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.root / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _remove_temp_files(self) -> None:
        """Remove the temporary files a killed run left (only while holding the lock)."""
        for top, _dirs, files in os.walk(self.root):  # symbolic links to folders are not followed
            for name in files:
                path = Path(top) / name
                if is_temp_name(name) and not path.is_symlink():
                    path.unlink(missing_ok=True)

    def _write(self, path: Path, data: bytes) -> Path:
        """Write ``data`` to ``path`` atomically; a failure is an OutputFolderError naming the file."""
        try:
            with atomic_write(path, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise OutputFolderError(
                f"cannot write {path} ({exc.strerror or exc}); the finished assets are kept in {self._run_root}: "
                "free some space (or make the folder writable) and run the same command again to resume"
            ) from exc
        return path

    # -- run guard ---------------------------------------------------------------------------
    def check_or_claim(self, run_info: Mapping[str, Any], *, overwrite: bool = False) -> bool:
        """Lock the folder and claim it for this run; return True when it resumes an earlier run.

        A folder that holds another story (a different fingerprint) is refused unless
        ``overwrite`` is set, in which case the earlier run's plan, tokens, assets and the files
        its composers listed in ``files.json`` are removed. The lock stays held (call
        :meth:`release`); a refusal releases a lock this call took.
        """
        took = not self.locked
        if took:
            self._make_root()
            # refused before locking, so that no lock file is left in a folder that is not ours. A run
            # creates the lock file before anything else and never removes it: files seen with no lock
            # file there *after* the look are not a storysdk run's (the check under the lock decides)
            if (not overwrite and self._foreign() and not (self.root / LOCK_FILE).exists()
                    and not (self.root / RUN_FILE).exists()):
                raise self._foreign_error()
            self.lock()
        try:
            return self._claim(run_info, overwrite)
        except BaseException:
            if took:
                self.release()
            raise

    def _claim(self, run_info: Mapping[str, Any], overwrite: bool) -> bool:
        run_file = self.root / RUN_FILE
        if run_file.is_file():
            old = self._read_run()
            if old is None and not overwrite:
                raise OutputFolderError(
                    f"{run_file} is damaged (not a JSON object), so it cannot tell which story {self.root} holds; "
                    "pass --overwrite (overwrite=True) to start the folder over, or choose another --out folder"
                )
            if old is not None and old.get("fingerprint") == run_info["fingerprint"] and not overwrite:
                return True
            if not overwrite and not self._holds_nothing_yet():
                assert old is not None
                raise OutputFolderError(
                    f"{self.root} holds the output of a different story or pipeline "
                    f"(fingerprint {str(old.get('fingerprint'))[:12]} != {run_info['fingerprint'][:12]}); "
                    "choose another --out folder, or pass --overwrite (overwrite=True) to replace it"
                )
            self.clear()
        elif self._foreign() and not overwrite:
            raise self._foreign_error()
        self._write_run(dict(run_info))
        return False

    def _holds_nothing_yet(self) -> bool:
        """Whether an earlier run here stopped before it wrote anything but ``run.json`` (a story
        refused by its limits or its checks): such a folder is free for another story."""
        if (self.root / PLAN_FILE).exists() or (self.root / TRACKS_DIR).exists():
            return False
        return not any(
            f.is_file() for sub in ("tokens", "images", "audio") if (self.root / sub).is_dir()
            for f in (self.root / sub).iterdir()
        )

    def _foreign(self) -> bool:
        """Whether the folder holds anything besides our lock files."""
        return self.root.is_dir() and any(p.name not in (LOCK_FILE, OWNER_FILE) for p in self.root.iterdir())

    def _foreign_error(self) -> OutputFolderError:
        return OutputFolderError(
            f"{self.root} is not empty and was not written by storysdk; "
            "choose another --out folder, or pass --overwrite (overwrite=True) to write into it"
        )

    def _read_run(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.root / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write_run(self, info: Mapping[str, Any]) -> None:
        text = json.dumps(dict(info), indent=2, sort_keys=True, default=str) + "\n"
        self._write(self.root / RUN_FILE, text.encode("utf-8"))

    def update_run_info(self, fields: Mapping[str, Any]) -> None:
        """Add ``fields`` to ``run.json`` (for example which weights a run used); keys sorted, so
        the same fields give the same bytes. Only a claimed folder has a ``run.json`` to update."""
        info = self._read_run()
        if info is None:
            raise OutputFolderError(f"{self.root} has no readable {RUN_FILE}; claim the folder first (check_or_claim)")
        info.update(fields)
        self._write_run(info)

    def clear(self) -> None:
        """Remove what an earlier run wrote here: plan, run record, tokens, assets, and the files
        its composers listed in ``files.json``; other files stay."""
        base = self.root.resolve()
        for rel in self._listed_files():
            path = self.root / rel
            if not path.parent.resolve().is_relative_to(base):
                continue  # reached through a link that leads out of the folder: not ours to remove
            path.unlink(missing_ok=True)
            for parent in path.parents:  # folders a composer made and nothing else uses
                if parent == self.root or not parent.is_relative_to(self.root):
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break
        for name in (PLAN_FILE, FILES_FILE, RUN_FILE, TIMELINE_FILE):
            (self.root / name).unlink(missing_ok=True)
        tracks = self.root / TRACKS_DIR
        if tracks.is_dir() and not tracks.is_symlink():
            for top, _dirs, files in os.walk(tracks, topdown=False):
                for name in files:
                    (Path(top) / name).unlink(missing_ok=True)
                try:
                    Path(top).rmdir()
                except OSError:
                    pass
        for sub in ("tokens", "images", "audio"):
            folder = self.root / sub
            if folder.is_dir():
                for f in folder.iterdir():
                    if f.is_file():
                        f.unlink()

    def _listed_files(self) -> list[str]:
        """The relative paths inside the folder that ``files.json`` lists (others are ignored)."""
        try:
            manifest = json.loads((self.root / FILES_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        if not isinstance(manifest, dict):
            return []
        out = []
        for paths in manifest.values():
            for rel in paths if isinstance(paths, list) else []:
                if not isinstance(rel, str) or not rel or os.path.isabs(rel):
                    continue
                parts = Path(rel).parts
                if ".." in parts or parts[0] in (LOCK_FILE, OWNER_FILE, RUN_FILE):
                    continue
                out.append(rel)
        return out

    # -- plan and tokens -------------------------------------------------------------------
    @property
    def plan_path(self) -> Path:
        return self.root / PLAN_FILE

    def save_plan(self, plan: StoryPlan) -> Path:
        """Write ``plan.json`` (tokens are saved separately with :meth:`save_tokens`).

        In a claimed folder ``run.json`` records its SHA-256 first, so that :meth:`load_plan`
        can tell the plan this run wrote from one edited since.
        """
        data = (plan.to_json() + "\n").encode("utf-8")
        digest = _sha256(data)
        info = self._read_run()
        if info is not None:
            try:
                on_disk: str | None = _sha256(self.plan_path.read_bytes())
            except OSError:
                on_disk = None
            if info.get(PLAN_DIGEST_KEY) == digest and on_disk == digest:
                return self.plan_path  # unchanged (a resume saves the plan it loaded)
            info[PLAN_DIGEST_KEY] = digest
            info.pop(PREVIOUS_PLAN_DIGEST_KEY, None)
            if on_disk is not None and on_disk != digest:
                info[PREVIOUS_PLAN_DIGEST_KEY] = on_disk
            self._write_run(info)
        return self._write(self.plan_path, data)

    def load_plan(self) -> StoryPlan | None:
        """The plan in ``plan.json`` with its saved tokens, or ``None`` when there is none.

        A plan that does not match the digest in ``run.json`` (edited, or damaged, since this
        run wrote it) is refused with an :class:`OutputFolderError`, and so is a token file
        that does not load.
        """
        try:
            data = self.plan_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OutputFolderError(f"cannot read {self.plan_path} ({exc.strerror or exc})") from exc
        info = self._read_run() or {}
        accepted = {info.get(PLAN_DIGEST_KEY), info.get(PREVIOUS_PLAN_DIGEST_KEY)} - {None}
        if accepted and _sha256(data) not in accepted:
            raise OutputFolderError(
                f"{self.plan_path} was changed after this run wrote it (it no longer matches the SHA-256 in "
                f"{RUN_FILE}), so the pictures and clips in {self.root} were made from another plan. To render an "
                "edited plan, copy it out of the folder and run it with `storysdk run --plan FILE` "
                "(Pipeline.run(plan=...)) into another --out folder; pass --overwrite to start this folder over; "
                "or put the original plan.json back to resume"
            )
        try:
            plan = StoryPlan.from_json(data.decode("utf-8"), source=str(self.plan_path))
        except UnicodeDecodeError as exc:
            raise OutputFolderError(
                f"{self.plan_path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                "pass --overwrite to plan the story again"
            ) from exc
        for scene in plan.scenes:
            self.load_tokens(scene)
        return plan

    #: The stem of the files of a scene (``scene-0003.png``); a :class:`TrackFolder` of cues uses ``cue``.
    prefix = "scene"

    def _token_path(self, scene: Scene, kind: str) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in kind)
        return self.root / "tokens" / f"{self.prefix}-{scene.index:04d}.{safe}.safetensors"

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
            try:
                if numpy:
                    from safetensors.numpy import save_file as save_np

                    with atomic_path(path) as tmp:
                        save_np({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=meta)
                else:
                    from safetensors.torch import save_file as save_pt

                    with atomic_path(path) as tmp:
                        save_pt({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)
            except OSError as exc:
                raise OutputFolderError(
                    f"cannot write {path} ({exc.strerror or exc}); free some space (or make the folder "
                    "writable) and run the same command again to resume"
                ) from exc

    def load_tokens(self, scene: Scene) -> None:
        """Restore the scene's saved tokens; a token file that does not load is an OutputFolderError."""
        folder = self.root / "tokens"
        if not folder.is_dir():
            return
        for path in sorted(folder.glob(f"{self.prefix}-{scene.index:04d}.*.safetensors")):
            try:
                kind, tok = self._read_tokens(path)
            except StorySDKError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever safetensors or json says, the file is bad
                raise OutputFolderError(
                    f"the token file {path} is damaged ({type(exc).__name__}: {exc}); a planner's tokens cannot "
                    "be made again without planning the story anew: pass --overwrite to start the folder over"
                ) from exc
            scene.tokens[kind] = tok

    def _read_tokens(self, path: Path) -> tuple[str, Tokens]:
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
        return kind, Tokens(
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

    def track(self, name: str, *, cues: bool = False) -> TrackFolder:
        """The files of track ``name`` (``tracks/<name>/``); ``cues``: the track has a track planner,
        so its files are named after cues (``cue-0007.wav``) and it keeps ``cues.json``. A name
        that is not a track's (:func:`storysdk.tracks.check_track_name`) is a ConfigError."""
        from .tracks import check_track_name

        return TrackFolder(self, check_track_name(name), prefix="cue" if cues else "scene")

    def save_timeline(self, timeline: Any) -> Path:
        """Write ``timeline.json`` (a :class:`storysdk.timeline.Timeline`)."""
        return self._write(self.root / TIMELINE_FILE, timeline.to_json().encode("utf-8"))

    def _meta_path(self, asset_path: Path) -> Path:
        return asset_path.with_suffix(".json")

    def _save_metadata(self, asset_path: Path, metadata: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        # written before the asset: an asset on disk always has its metadata (a resumed
        # AudioStory clip keeps its declared crossfade padding, for example) and the record
        # of the very bytes it holds
        meta: dict[str, Any] = {k: v for k, v in metadata.items() if k not in ("resumed", FILE_RECORD_KEY)}
        meta[FILE_RECORD_KEY] = dict(record)
        text = json.dumps(meta, sort_keys=True, default=str, ensure_ascii=False) + "\n"
        self._write(self._meta_path(asset_path), text.encode("utf-8"))

    def _read_sidecar(self, asset_path: Path) -> dict[str, Any] | None:
        try:
            loaded = json.loads(self._meta_path(asset_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def save_asset(self, asset: ImageAsset | AudioAsset) -> Path:
        """Save a picture (PNG) or a clip (float32 WAV) with its sidecar; returns the asset's path."""
        record: dict[str, Any]
        if isinstance(asset, ImageAsset):
            path = self.image_path(asset.scene_index)
            buf = io.BytesIO()
            asset.image.save(buf, format="PNG")
            data = buf.getvalue()
            record = {"width": asset.image.width, "height": asset.image.height}
        else:
            path = self.audio_path(asset.scene_index)
            # float32 WAV without libsndfile's time-stamped PEAK chunk: exact and byte-stable
            data = encode_audio(asset.samples, asset.sample_rate, "wav", "FLOAT")
            channels, frames = as_samples(asset.samples).shape
            record = {"sample_rate": int(asset.sample_rate), "channels": int(channels), "frames": int(frames)}
        record.update(bytes=len(data), sha256=_sha256(data))
        self._save_metadata(path, asset.metadata, record)
        return self._write(path, data)

    def load_image(
        self,
        index: int,
        made_by: str = "",
        *,
        size: tuple[int, int] | None = None,
        damaged: DamagedCallback | None = None,
    ) -> ImageAsset | None:
        """The saved picture of scene ``index``, verified, or ``None`` when there is none.

        The PNG must decode, be the file its sidecar recorded (byte count and SHA-256) and have
        the recorded size; for a file saved without a record, ``size`` (``(width, height)``,
        the plan's) when given. A damaged file is removed and reported to ``damaged(path,
        problem)``, which makes this return ``None`` (the scene is rendered again); without
        ``damaged`` it is an :class:`OutputFolderError`.
        """
        path = self.image_path(index)
        if not path.is_file():
            return None
        problem, image, meta = self._verify(path, size)
        if image is None:
            return self._damaged(path, problem, damaged)
        return ImageAsset(index, image, made_by=made_by, metadata=meta)

    def load_audio(self, index: int, made_by: str = "", *, damaged: DamagedCallback | None = None) -> AudioAsset | None:
        """The saved clip of scene ``index``, verified, or ``None`` when there is none.

        The WAV must be whole (every RIFF chunk complete), decode, be the file its sidecar
        recorded (byte count and SHA-256) and have the recorded sample rate, channels and
        length. A damaged file is handled as in :meth:`load_image`.
        """
        path = self.audio_path(index)
        if not path.is_file():
            return None
        problem, clip, meta = self._verify(path, None)
        if clip is None:
            return self._damaged(path, problem, damaged)
        samples, sr = clip
        return AudioAsset(index, samples, sample_rate=sr, made_by=made_by, metadata=meta)

    def _damaged(self, path: Path, problem: str, damaged: DamagedCallback | None) -> None:
        if damaged is None:
            raise OutputFolderError(
                f"{path} is damaged ({problem}); delete it (and {self._meta_path(path).name}) to have the scene "
                "rendered again, or run the pipeline again on this folder, which does so"
            )
        for p in (path, self._meta_path(path)):
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass  # the new file replaces it atomically anyway
        damaged(path, problem)
        return None

    def _verify(self, path: Path, size: tuple[int, int] | None) -> tuple[str, Any, dict[str, Any]]:
        """``("", decoded, metadata)`` for a sound asset file, ``(problem, None, {})`` for a damaged one."""
        sidecar = self._read_sidecar(path)
        if sidecar is None:
            state = "missing" if not self._meta_path(path).exists() else "damaged"
            return f"its metadata file {self._meta_path(path).name} is {state}", None, {}
        record = sidecar.pop(FILE_RECORD_KEY, None)
        record = record if isinstance(record, dict) else {}
        try:
            data = path.read_bytes()
        except OSError as exc:
            return f"cannot be read: {exc.strerror or exc}", None, {}
        saved = record.get("bytes")
        if isinstance(saved, int) and len(data) != saved:
            how = "truncated" if len(data) < saved else "longer than saved"
            return f"{how}: {len(data)} bytes, {saved} were written", None, {}
        if isinstance(record.get("sha256"), str) and _sha256(data) != record["sha256"]:
            return "its bytes changed since it was written (SHA-256 differs)", None, {}
        problem, decoded = _decode_png(data, record, size) if path.suffix == ".png" else _decode_wav(data, record)
        if problem:
            return problem, None, {}
        return "", decoded, {**sidecar, "resumed": True}


def _decode_png(data: bytes, record: Mapping[str, Any], size: tuple[int, int] | None) -> tuple[str, Any]:
    if not data.startswith(_PNG_SIGNATURE):
        return "not a PNG file", None
    if not data.endswith(_PNG_END):
        return "truncated: the PNG has no end chunk", None
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
            im.load()
            image = im.copy()
    except Exception as exc:  # noqa: BLE001 - any decoder error (or a decompression bomb): damaged
        return f"does not decode as PNG: {type(exc).__name__}: {exc}", None
    want = (record.get("width"), record.get("height")) if "width" in record else size
    if want is not None and tuple(image.size) != tuple(want):
        return f"is {image.width}x{image.height} pixels, the run's picture is {want[0]}x{want[1]}", None
    return "", image


def _wav_problem(data: bytes) -> str:
    """Why ``data`` is not a whole RIFF/WAVE file ('' when every chunk is complete)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return "not a WAV file"
    declared = int.from_bytes(data[4:8], "little") + 8
    if declared > len(data):
        return f"truncated: {len(data)} bytes, the WAV header declares {declared}"
    pos, seen = 12, set()
    while pos + 8 <= declared:
        cid, n = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if pos + 8 + n > declared:
            return f"truncated: its {cid.decode('latin-1')!r} chunk is cut short"
        seen.add(cid)
        pos += 8 + n + (n & 1)
    if b"fmt " not in seen or b"data" not in seen:
        return "not a complete WAV file (no fmt or data chunk)"
    return ""


def _decode_wav(data: bytes, record: Mapping[str, Any]) -> tuple[str, Any]:
    import soundfile as sf

    problem = _wav_problem(data)
    if problem:
        return problem, None
    try:
        samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, zlib.error, ValueError) as exc:
        return f"does not decode as WAV: {exc}", None
    channels, frames = samples.shape[1], samples.shape[0]
    for key, have in (("sample_rate", sr), ("channels", channels), ("frames", frames)):
        if isinstance(record.get(key), int) and record[key] != have:
            return f"has {key.replace('_', ' ')} {have}, the run's clip has {record[key]}", None
    return "", (np.ascontiguousarray(samples.T), int(sr))


class TrackFolder(OutputFolder):
    """The files of one track: ``tracks/<name>/`` in the output folder (see the module docstring).

    The same asset API as :class:`OutputFolder` (:meth:`save_asset`, :meth:`load_image`,
    :meth:`load_audio`, with verified resume), files named ``<prefix>-NNNN.*``. A track with a
    track planner also keeps its cues (:meth:`save_cues`, :meth:`load_cues`) and their tokens.
    It takes no lock of its own: the output folder's lock covers it.
    """

    def __init__(self, parent: OutputFolder, name: str, *, prefix: str = "scene") -> None:
        super().__init__(parent.root / TRACKS_DIR / name)
        self.parent = parent
        self.name = name
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"TrackFolder({str(self.root)!r})"

    def image_path(self, index: int) -> Path:
        return self.root / f"{self.prefix}-{index:04d}.png"

    def audio_path(self, index: int) -> Path:
        return self.root / f"{self.prefix}-{index:04d}.wav"

    @property
    def cues_path(self) -> Path:
        return self.root / CUES_FILE

    def save_cues(self, cues: list[Any], *, planner: str = "") -> Path:
        """Write ``cues.json`` (the track planner's cues) and the cues' tokens.

        Cues are saved when the track is planned anew, so whatever an earlier planning of the
        track left here (cue assets, their sidecars and tokens: made for other cues) is removed
        first; a resume then never takes an old cue's clip for a new cue of the same index.
        """
        self._remove_cue_files()
        for cue in cues:
            self.save_tokens(cue)
        data = {"format": 1, "track": self.name, "planner": planner, "cues": [c.to_dict() for c in cues]}
        return self._write(self.cues_path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

    def _remove_cue_files(self) -> None:
        if not self.root.is_dir() or self.root.is_symlink():
            return
        for folder in (self.root, self.root / "tokens"):
            if not folder.is_dir() or folder.is_symlink():
                continue
            for path in folder.glob(f"{self.prefix}-[0-9]*"):
                if path.is_file() or path.is_symlink():
                    path.unlink(missing_ok=True)

    def load_cues(self) -> list[Any] | None:
        """The saved cues with their tokens, or ``None`` when there are none; a damaged file is an
        :class:`OutputFolderError`."""
        from .model import Cue

        try:
            text = self.cues_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise OutputFolderError(f"cannot read {self.cues_path} ({exc}); pass --overwrite to start the folder over") from exc
        try:
            data = json.loads(text)
            cues = [Cue.from_dict(c, where=f"{CUES_FILE} cue {i}") for i, c in enumerate(data["cues"])]
        except (ValueError, KeyError, TypeError, StorySDKError) as exc:
            raise OutputFolderError(
                f"{self.cues_path} is damaged ({exc}); delete it to have track {self.name!r} planned again, "
                "or pass --overwrite to start the folder over"
            ) from exc
        for cue in cues:
            self.load_tokens(cue)
        return cues
