"""The manifest, ``episodes.jsonl``: one JSON line per finished episode, appended, never rewritten.

This module is the format's one home: its file name (:data:`MANIFEST`), the
writer (:class:`ManifestWriter`), the reader (:func:`read_manifest`, over
:func:`parse_lines`, the one place a torn last line is handled), the follower
(:class:`ManifestFollower`, complete lines as the file grows, for the
uploader and the Ray actors) and the fields that name files
(:data:`FILE_FIELDS`, :func:`file_names`, :func:`rename_files`,
:func:`forget_files`).

Each line is written with a single ``write`` on a file opened for appending,
so a line is on disk (in the page cache) before the next episode is handled
and a crash cannot leave earlier lines half-written. A write that fails
part-way (a full disk, a file size limit) is taken back, so the file never
ends in half a line.

Several encoder processes (``Recorder(encoders=k)``) append to one manifest,
each through its own descriptor. ``O_APPEND`` alone keeps whole-line writes
from interleaving, but taking back a torn line (truncating to the size seen
before the write) could cut off a line another encoder appended meanwhile, and
the rest of a short write could land after someone else's line. So each line
is written under an exclusive ``flock`` of the manifest, held only for that
line's write (and its take-back): the size seen before the write is then
still the file's size when it is truncated. Readers take no lock; they never
see half a line except for the moment a line is being written.

Each episode's line with a ``length`` also gets ``step``, right after the
fixed fields: the env steps of the manifest's episodes up to and including
it, in the manifest's order (the x-axis the trackers plot against). It is worked out under the same lock: from this
writer's last line when no one else wrote since, else from the last episode
line in the file (another shard's), so it is exact with several encoders.
"""

from __future__ import annotations

import errno
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one writer only
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FIELDS",
    "FILE_FIELDS",
    "MANIFEST",
    "ManifestFollower",
    "ManifestWriter",
    "file_names",
    "fold_updates",
    "forget_files",
    "parse_lines",
    "read_manifest",
    "rename_files",
]

#: The manifest's file name in a run folder (named nowhere else).
MANIFEST = "episodes.jsonl"

#: Field order of a line; fields beyond these follow in the order given.
FIELDS = ("env", "episode", "seed", "return", "length", "time", "video", "frames", "dropped", "end")

#: The fields that name an episode's files, relative to the run folder: ``video``
#: (one file), ``images`` (a folder of PNGs), ``keyframes`` (a list of files).
FILE_FIELDS = ("video", "images", "keyframes")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ManifestWriter:
    """Appends episode records to a manifest (see the module for the locking)."""

    def __init__(self, path: str) -> None:
        self.path = path
        # Read too: the step of another writer's last line is read back (see the module).
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(self._fd)
        self._identity = (st.st_dev, st.st_ino)
        self.lines = 0
        self._steps = 0  # the step of this writer's last episode line
        self._size = -1  # the file's size after this writer's last line (-1: none yet)

    def write(self, record: dict[str, Any], update: bool = False) -> None:
        """Append one line; on failure nothing of it stays in the file.

        Args:
            record: An episode's fields.
            update: The line changes an episode written before (a kept
                episode discarded later): it holds only ``env``, ``episode``,
                ``"update": true`` and the fields that change.

        Raises:
            OSError: The line could not be written (``ENOSPC``, ``EFBIG``...).
        """
        if update:
            ordered = {"env": record["env"], "episode": record["episode"], "update": True}
        else:
            ordered = {k: _clean(record.get(k)) for k in FIELDS}
        ordered.update({k: _clean(v) for k, v in record.items() if k not in ordered})
        with self._locked():  # other encoders of the same recorder wait meanwhile
            before = os.fstat(self._fd).st_size
            steps = self._steps
            length = ordered.get("length")
            if (
                not update
                and "step" not in record
                and isinstance(length, int)
                and not isinstance(length, bool)
            ):
                if before != self._size:  # someone else wrote last (or this is our first line)
                    steps = self._step_before(before)
                steps += max(0, length)
                # After the fixed fields, before the ones sinks add (kept, why...).
                items = list(ordered.items())
                ordered = dict([*items[: len(FIELDS)], ("step", steps), *items[len(FIELDS) :]])
            line = json.dumps(ordered, separators=(", ", ": ")) + "\n"
            data = memoryview(line.encode())
            size = before + len(data)
            try:
                while data:
                    written = os.write(self._fd, data)
                    if written <= 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    # A short write (the disk or the size limit reached): try the
                    # rest, which raises the real error if there is no room left.
                    data = data[written:]
            except OSError:
                try:  # take back the part of the line that was written
                    if os.fstat(self._fd).st_size != before:
                        os.ftruncate(self._fd, before)
                except OSError:
                    pass
                raise
            self._steps, self._size = steps, size
        self.lines += 1

    def _step_before(self, size: int) -> int:
        """The ``step`` of the last episode line in the first ``size`` bytes (0: none)."""
        end, head = size, b""
        while end > 0:
            start = max(0, end - 8192)
            lines = (os.pread(self._fd, end - start, start) + head).split(b"\n")
            head = lines.pop(0) if start > 0 else b""  # maybe part of a line: wait for the rest
            for raw in reversed(lines):
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue  # empty, or a line being taken back
                if isinstance(record, dict) and record.get("update") is not True:
                    step = record.get("step")
                    return step if isinstance(step, int) and not isinstance(step, bool) else 0
            end = start
        return 0

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the manifest's ``flock`` (shared by every writer of this file)."""
        if fcntl is None:
            yield
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def moved(self) -> bool:
        """Whether the file at ``path`` is gone or is another file (its folder removed)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        except OSError:
            return False  # cannot tell (permissions): writes will say
        return (st.st_dev, st.st_ino) != self._identity

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The records of the complete lines in ``data`` and the bytes they take.

    The one place a torn line is handled: bytes after the last newline are a
    line still being written (or being taken back by its writer), so they
    are left for a later read. A complete line that is not a JSON object
    (a file edited by hand) is skipped rather than stopping every reader.
    """
    end = data.rfind(b"\n") + 1
    records: list[dict[str, Any]] = []
    for line in data[:end].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records, end


def read_manifest(
    path: str | os.PathLike[str], raw: bool = False, *, missing_ok: bool = False
) -> list[dict[str, Any]]:
    """Read every complete line of a manifest (a torn last line is skipped).

    Args:
        path: The manifest file.
        raw: Return the lines as written. By default an update line (an
            episode discarded after it was first kept) is folded into its
            episode's record: one record per episode, as it stands now.
        missing_ok: No file reads as no lines (else ``FileNotFoundError``).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise
    lines, _ = parse_lines(data)
    return lines if raw else fold_updates(lines)


def fold_updates(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per episode: each update line applied to the episode it names."""
    records: list[dict[str, Any]] = []
    where: dict[tuple[Any, Any], dict[str, Any]] = {}
    for record in lines:
        key = (record.get("env"), record.get("episode"))
        if record.get("update") is True and key in where:
            _fold(where[key], record)
            continue
        records.append(record)
        where[key] = record
    return records


class ManifestFollower:
    """Reads a manifest as it grows: each :meth:`read` gives the complete lines added since.

    A line being written is left where it is and read whole next time; a
    manifest not created yet reads as nothing.

    Args:
        path: The manifest file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.offset = 0  # where the first line not read yet starts

    def read(self) -> list[dict[str, Any]]:
        """The complete lines (as written: update lines too) appended since the last read."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        records, used = parse_lines(data)
        self.offset += used
        return records


def _fold(record: dict[str, Any], update: dict[str, Any]) -> None:
    """Apply an update line; a discarded episode's files are gone, so are their names."""
    record.update({k: v for k, v in update.items() if k not in ("env", "episode", "update")})
    if update.get("kept") is False:
        forget_files(record)


def file_names(record: dict[str, Any]) -> list[str]:
    """The paths (relative to the run folder) a record names, in :data:`FILE_FIELDS` order.

    ``images`` is a folder; the others are files.
    """
    names: list[str] = []
    for field in FILE_FIELDS:
        value = record.get(field)
        if isinstance(value, str) and value:
            names.append(value)
        elif isinstance(value, list):
            names.extend(v for v in value if isinstance(v, str) and v)
    return names


def rename_files(record: dict[str, Any], names: dict[str, str]) -> None:
    """Replace each path a record names by ``names[path]`` (paths not in ``names`` stay)."""
    for field in FILE_FIELDS:
        value = record.get(field)
        if isinstance(value, str):
            record[field] = names.get(value, value)
        elif isinstance(value, list):
            record[field] = [names.get(v, v) if isinstance(v, str) else v for v in value]


def forget_files(record: dict[str, Any]) -> None:
    """Drop the names of a discarded episode's files from its record; counts stay."""
    for field in FILE_FIELDS:
        value = record.get(field)
        if isinstance(value, list):
            if value:
                record[field] = []
        elif value is not None:
            record[field] = None
