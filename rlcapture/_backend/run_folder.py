"""The run folder: everything a recording and its tools write in ``out``, its lock, and ``run.json``.

One owner for the folder's layout, so that refusing, overwriting and reading
a recording agree on what belongs to it. Before it, the Recorder and the Ray
driver each had their own lock and their own idea of "a recording" (the
driver refused an empty manifest, the Recorder did not), ``--overwrite``
removed only the manifest, ``videos/`` and ``frames/`` (an old
``report.html``, ``report_files/``, ``learning_curve.png`` or ``wandb/``
stayed and described the old run over the new videos), and ``--seeds`` runs
left an earlier plain recording's top-level manifest in place, which report
and plot then read instead of the seeds.

What a folder holds, by name (:data:`FILES`, :data:`FOLDERS`, and the
patterns in :meth:`RunFolder.is_ours`):

- the recording: the manifest (:data:`.manifest.MANIFEST`), ``videos/``,
  ``frames/``, ``[prefix]mosaic.mp4``, ``run.json`` (what ran, for replay);
- what tools derive from it: ``summary.json``, ``report.html`` and
  ``report_files/``, ``learning_curve.png``/``.svg``, ``replays/``, the
  default folders of local trackers (``wandb/``, ``tensorboard/``, ``mlruns/``);
- sub-recordings: ``seed-S/`` (``record --seeds``, listed in ``seeds.json``)
  and ``step-T/`` (rounds of :class:`~rlcapture.sb3.RecordCallback`);
- the lock (``.rlcapture.lock``) and the Ray driver's staging folder.

``overwrite`` removes all of that and only that: anything else (a user's
notes, a model file) is kept and named in a :class:`KeptFilesWarning`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, OutputError, OutputExistsError
from .manifest import MANIFEST

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CURVE",
    "FILES",
    "FOLDERS",
    "FRAMES",
    "LOCK",
    "LOG",
    "MANIFEST",
    "MOSAIC",
    "REPORT",
    "REPORT_ASSETS",
    "RUN_FILE",
    "STAGING",
    "SUMMARY",
    "VIDEOS",
    "KeptFilesWarning",
    "Part",
    "RunFolder",
    "describe_seeds",
]

VIDEOS = "videos"
FRAMES = "frames"
#: The overview video: ``<prefix>mosaic.mp4`` (``.N.mp4`` when taken).
MOSAIC = "mosaic"
SUMMARY = "summary.json"
RUN_FILE = "run.json"
#: Written by ``record --seeds`` at the top: the seeds of the last recording.
SEEDS_INDEX = "seeds.json"
#: The command line's log: the full tracebacks and warnings its one-line errors leave out.
LOG = "rlcapture.log"
REPORT = "report.html"
REPORT_ASSETS = "report_files"
#: ``rlcapture plot``'s default file, without its suffix (.png, .svg).
CURVE = "learning_curve"
CURVE_SUFFIXES = (".png", ".svg")
REPLAYS = "replays"
#: The folders local trackers write into by default, by tracker kind.
TRACKER_FOLDERS = {"wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlruns"}
#: The Ray driver's staging folder (task folders on shared storage).
STAGING = ".rlcapture-ray"
LOCK = ".rlcapture.lock"
SEED_PREFIX = "seed-"
ROUND_PREFIX = "step-"

#: Files of a run folder, by name.
FILES = (MANIFEST, SUMMARY, RUN_FILE, SEEDS_INDEX, LOG, REPORT, *(CURVE + s for s in CURVE_SUFFIXES))
#: Folders of a run folder, by name.
FOLDERS = (VIDEOS, FRAMES, REPORT_ASSETS, REPLAYS, *TRACKER_FOLDERS.values(), STAGING)
# Temporary files written beside them (renamed over the real one): ``.run.json.PID``,
# ``summary.json.tmp``, the write probe.
_TEMPORARY = (f".{RUN_FILE}.*", "*.tmp", ".rlcapture-probe-*")
# What marks a seed-S/ or step-T/ folder as a recording's (else it is the user's).
_MARKS = (MANIFEST, LOCK, RUN_FILE, SUMMARY)


class KeptFilesWarning(UserWarning):
    """``overwrite`` replaced a recording and kept files that rlcapture does not write."""


@dataclass(frozen=True)
class Part:
    """One manifest of a recording: the folder itself, a ``seed-S/`` or a ``step-T/`` round."""

    folder: Path
    seed: int | None = None
    timestep: int | None = None

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST


def describe_seeds(seeds: Any) -> Any:
    """A seed plan in JSON: ``{"start", "stop", "step"}`` for a range, else the list."""
    if seeds is None:
        return None
    if isinstance(seeds, range):
        return {"start": seeds.start, "stop": seeds.stop, "step": seeds.step}
    return [int(s) for s in seeds]


class RunFolder:
    """A recording's folder: the names in it, its lock, refuse/overwrite, its parts, ``run.json``.

    Args:
        path: The folder (need not exist until :meth:`open`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_fd = -1

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- names -------------------------------------------------------------------------
    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def videos(self) -> Path:
        return self.path / VIDEOS

    @property
    def frames(self) -> Path:
        return self.path / FRAMES

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def seeds_index(self) -> Path:
        return self.path / SEEDS_INDEX

    @property
    def report(self) -> Path:
        return self.path / REPORT

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def report_assets(self) -> Path:
        return self.path / REPORT_ASSETS

    @property
    def replays(self) -> Path:
        return self.path / REPLAYS

    @property
    def staging(self) -> Path:
        return self.path / STAGING

    def curve(self, suffix: str = ".png") -> Path:
        """``learning_curve.png`` (or ``.svg``)."""
        return self.path / (CURVE + suffix)

    def tracker_folder(self, kind: str) -> Path:
        """Where a local tracker of ``kind`` ("wandb", "tensorboard", "mlflow") writes by default."""
        return self.path / TRACKER_FOLDERS[kind]

    def seed(self, seed: int) -> Path:
        """The folder of seed ``seed`` of a ``record --seeds`` run."""
        return self.path / f"{SEED_PREFIX}{seed}"

    def round(self, timestep: int) -> Path:
        """The folder of the :class:`~rlcapture.sb3.RecordCallback` round at ``timestep``."""
        return self.path / f"{ROUND_PREFIX}{timestep}"

    def mosaics(self) -> list[Path]:
        """The overview videos in the folder, by name."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if _is_mosaic(p.name) and p.is_file())

    # -- what belongs to a recording ------------------------------------------------------
    def is_ours(self, entry: Path) -> bool:
        """Whether ``entry`` (in this folder) is something a recording or its tools write."""
        name = entry.name
        if name == LOCK:
            return True
        if entry.is_symlink():
            return False  # never followed, never removed: someone put it there
        if entry.is_dir():
            if name in FOLDERS:
                return True
            number = _numbered(name)
            return number is not None and any((entry / m).exists() for m in _MARKS)
        return (
            name in FILES
            or _is_mosaic(name)
            or any(fnmatch.fnmatchcase(name, p) for p in _TEMPORARY)
        )

    def owned(self) -> list[Path]:
        """The entries a recording or its tools wrote (the lock aside), by name."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if p.name != LOCK and self.is_ours(p))

    def foreign(self) -> list[Path]:
        """The entries rlcapture does not write: ``overwrite`` keeps them."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if not self.is_ours(p))

    def recording(self) -> list[str]:
        """What makes the folder hold a recording, in words (empty: it holds none).

        An empty manifest is what a run that failed before its first episode
        ended leaves (a bad policy, an encoder that cannot open): no recording.
        """
        found = []
        if self.manifest.is_file() and self.manifest.stat().st_size > 0:
            found.append(MANIFEST)
        files = sum(len(list(d.iterdir())) for d in (self.videos, self.frames) if d.is_dir())
        if files:
            found.append(f"{files} files in {VIDEOS}/ and {FRAMES}/")
        found.extend(p.name for p in self.mosaics())
        if self.seeds_index.is_file():
            found.append(SEEDS_INDEX)
        for folder in self._numbered_folders():
            if RunFolder(folder).recording():
                found.append(f"{folder.name}/")
        return found

    def _numbered_folders(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return sorted(
            p for p in self.path.iterdir()
            if _numbered(p.name) is not None and p.is_dir() and not p.is_symlink()
        )  # fmt: skip

    # -- lock, refuse, overwrite ------------------------------------------------------------
    def open(self, overwrite: bool = False, *, folders: Iterable[str] = (VIDEOS,)) -> None:
        """Create the folder, take its lock, refuse or clear an earlier recording.

        Args:
            overwrite: Replace a recording already there: everything a
                recording and its tools wrote is removed, anything else kept
                (named in a :class:`KeptFilesWarning`).
            folders: Sub-folders to create (``videos``, ``frames``).

        Raises:
            OutputExistsError: The folder holds a recording and ``overwrite`` is False.
            OutputError: The folder cannot be created or written, or another
                run holds its lock.
        """
        out = self.path
        try:
            out.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise OutputError(
                f"cannot use output folder {str(out)!r}: {exc.strerror}; "
                "choose a folder you can write to"
            ) from None
        try:
            self._lock()
            found = self.recording()
            if found and not overwrite:
                raise OutputExistsError(
                    f"{str(out)!r} already holds a recording ({', '.join(found)}); pass "
                    "overwrite=True (--overwrite) to replace it, or choose another folder"
                )
            if overwrite:
                self.clear()
            self._prepare(folders)
        except BaseException:
            self.release()
            raise

    def _lock(self) -> None:
        if fcntl is None:
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(
                f"another rlcapture run is writing to {str(self.path)!r}; "
                "wait for it or choose another folder"
            ) from None

    def _prepare(self, folders: Iterable[str]) -> None:
        try:
            for name in folders:
                (self.path / name).mkdir(mode=0o700, exist_ok=True)
            probe = self.path / f".rlcapture-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise OutputError(
                f"cannot write in {str(self.path)!r}: {exc.strerror}; choose a folder you can write to"
            ) from None

    def clear(self) -> list[Path]:
        """Remove everything a recording and its tools wrote; returns what was kept.

        What is kept (not rlcapture's) is named in a :class:`KeptFilesWarning`
        when anything was removed.
        """
        owned = self.owned()
        for entry in owned:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        kept = [p for p in self.foreign() if p.name != LOCK]
        if owned and kept:
            names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in kept[:10])
            more = f" and {len(kept) - 10} more" if len(kept) > 10 else ""
            warnings.warn(
                f"overwrite replaced the recording in {str(self.path)!r} and kept what rlcapture "
                f"does not write there: {names}{more}",
                KeptFilesWarning,
                stacklevel=3,
            )
        return kept

    def forget_if_empty(self) -> None:
        """After a run that wrote no episode: remove its empty manifest and ``videos/``.

        So that a rerun is not refused and nothing suggests a recording.
        """
        try:
            if self.manifest.stat().st_size == 0:
                self.manifest.unlink()
        except OSError:
            pass
        try:
            self.videos.rmdir()
        except OSError:
            pass

    @property
    def locked(self) -> bool:
        """Whether this object holds the folder's lock."""
        return self._lock_fd >= 0

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)

    # -- reading a recording -------------------------------------------------------------
    def seed_folders(self) -> dict[int, Path]:
        """The ``seed-S/`` folders holding a manifest, by seed.

        With a ``seeds.json`` index (written by ``record --seeds``), exactly
        the seeds it lists; without one (a folder from before it), every
        ``seed-S/`` there.
        """
        listed = self._indexed_seeds()
        found = self._numbered(SEED_PREFIX)
        if listed is not None:
            found = {s: f for s, f in found.items() if s in listed}
        return found

    def round_folders(self) -> dict[int, Path]:
        """The ``step-T/`` folders of :class:`~rlcapture.sb3.RecordCallback` rounds holding a manifest, by T."""
        return self._numbered(ROUND_PREFIX)

    def _numbered(self, prefix: str) -> dict[int, Path]:
        found: dict[int, Path] = {}
        for child in self._numbered_folders():
            if child.name.startswith(prefix) and (child / MANIFEST).is_file():
                found[int(child.name[len(prefix) :])] = child
        return dict(sorted(found.items()))

    def parts(self) -> list[Part]:
        """The manifests that make up the recording, in the order to read them.

        The seeds of the last ``record --seeds`` (its index) if it wrote one;
        else the folder's own manifest; else its ``seed-S/`` folders; else its
        ``step-T/`` rounds. Empty: no recording here.
        """
        if self._indexed_seeds() is not None:
            return [Part(f, seed=s) for s, f in self.seed_folders().items()]
        if self.manifest.is_file():
            return [Part(self.path)]
        seeds = self.seed_folders()
        if seeds:
            return [Part(f, seed=s) for s, f in seeds.items()]
        return [Part(f, timestep=t) for t, f in self.round_folders().items()]

    def write_seeds_index(self, seeds: Iterable[int]) -> None:
        """Say which ``seed-S/`` folders the recording being made consists of."""
        _write_json(self.seeds_index, {"seeds": [int(s) for s in seeds]})

    def _indexed_seeds(self) -> set[int] | None:
        try:
            data = json.loads(self.seeds_index.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        seeds = data.get("seeds") if isinstance(data, dict) else None
        if not isinstance(seeds, list):
            return None
        return {s for s in seeds if isinstance(s, int) and not isinstance(s, bool)}

    # -- run.json ----------------------------------------------------------------------------
    def write_run_file(self, info: dict[str, Any], *, version: str) -> Path:
        """Write ``run.json`` (whole or not at all), stamped with the rlcapture ``version``."""
        tmp = self.path / f".{RUN_FILE}.{os.getpid()}"
        body = {"rlcapture": version, **info}
        tmp.write_text(json.dumps(body, indent=2, default=repr) + "\n")
        os.replace(tmp, self.run_file)
        return self.run_file

    def read_run_file(self) -> dict[str, Any] | None:
        """``run.json`` as a dict, or None if the run wrote none.

        Raises:
            ConfigError: The file is there but is not a JSON object.
        """
        path = self.run_file
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            info = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{str(path)!r} is not valid JSON ({exc}); remove it or fix it"
            ) from None
        if not isinstance(info, dict):
            raise ConfigError(f"{str(path)!r} does not hold a JSON object")
        return info


def _numbered(name: str) -> int | None:
    """S of ``seed-S``, T of ``step-T``; None for any other name."""
    for prefix in (SEED_PREFIX, ROUND_PREFIX):
        number = name[len(prefix) :]
        if name.startswith(prefix) and number.isdigit():
            return int(number)
    return None


def _is_mosaic(name: str) -> bool:
    return fnmatch.fnmatchcase(name, f"*{MOSAIC}*.mp4")


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
