"""The interface between the encoder's event loop and what it writes.

The loop (:mod:`..encoder`) knows producers, rings and episodes; a sink knows
one kind of output: the per-episode video, the PNG frames, the mosaic, the
manifest. The loop calls, in the order of its list of sinks:

- ``begin(start)`` at an episode's first frame; what it returns is that
  sink's handle for the episode (None: nothing to do for it);
- ``frame(handle, pixels, step, release)`` for every frame of the episode;
- ``end(handle, ending)`` at the episode's end: finish its files, add their
  manifest fields to ``ending.fields`` and their paths to ``ending.files``;
- ``record(ending)`` once the episode's line is complete, for every episode,
  recorded or not (the manifest writes it; keep rules judge it);
- ``check()`` about once a second, ``close()`` at the end of the run, and
  ``abort()`` on the way down after an error.

A sink is an ordinary object with no socket or process behind it, so it can be
tested by handing it numpy arrays. Every hook is optional: the base class does
nothing, and the loop never calls ``frame`` on a sink that does not override it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Sink",
    "EpisodeStart",
    "Ending",
    "OutputWriteError",
    "write_failed",
    "reason",
    "keep_slot",
]

Key = tuple[int, int]  # (env, episode)


class OutputWriteError(OSError):
    """A video or the manifest could not be written; the message says what was kept."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def reason(exc: BaseException) -> str:
    """``[Errno 27] File too large`` (the file is named elsewhere in the message)."""
    if isinstance(exc, OSError) and exc.errno and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def _amount(nbytes: int) -> str:
    if nbytes < 10_000:
        return f"{nbytes} bytes"
    if nbytes < 10_000_000:
        return f"{nbytes / 1000:.0f} kB"
    return f"{nbytes / 1e6:.0f} MB"


def write_failed(exc: BaseException, path: str, frames: int, size: int, out_dir: str) -> OutputWriteError:
    """The error for an output that could not be written: its name, what it kept.

    Args:
        exc: What the write raised; its ``filename``, if any, names the file.
        path: The output's main file (its size is what was kept of it).
        frames: Frames the output had taken, the failing one included.
        size: Bytes of ``path`` so far.
        out_dir: The run's folder (names in the message are relative to it).
    """
    where = getattr(exc, "filename", None) or path
    kept = f"{_amount(size)} kept" if where == path else f"{frames} frames kept"
    return OutputWriteError(
        exc.errno if isinstance(exc, OSError) else None,
        f"writing {os.path.relpath(where, out_dir)} failed after {frames} frames ({kept}): {reason(exc)}",
    )


@dataclass(frozen=True)
class EpisodeStart:
    """What a sink learns when an episode's first frame arrives.

    Attributes:
        env: The env index.
        episode: The episode index (numbering continued across producers).
        name: The stem every file of the episode is named after
            (``env3-episode7``, or ``env3-episode7.1`` when a file of an earlier
            run holds the name); all sinks get the same one.
        shape: (height, width, channels) of the frames.
        fps: Frames per second of the episode's video.
    """

    env: int
    episode: int
    name: str
    shape: tuple[int, int, int]
    fps: float

    @property
    def key(self) -> Key:
        return (self.env, self.episode)


@dataclass(eq=False)
class Ending:
    """An episode's end, as it passes through the sinks.

    Attributes:
        key: (env, episode).
        record: The manifest line. During ``end`` it is what the producer
            sent; by ``record`` it holds every sink's fields too, and sinks may
            add more (the keep rules add ``kept`` and ``why``).
        fields: Filled by ``end``: the fields naming the episode's files.
        files: Filled by ``end``: every file and folder the episode wrote, so
            that a discarded episode's files can be deleted as one.
        recorded: Whether any frame came (else no sink began the episode).
        aborting: The encoder is going down after an error: close, keep what
            was written, judge nothing.
        error: The first write error of the episode (its line says so).
    """

    key: Key
    record: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    recorded: bool = True
    aborting: bool = False
    error: OutputWriteError | None = None

    def fail(self, error: OutputWriteError) -> None:
        """Note a write error; the first one is the one reported."""
        if self.error is None:
            self.error = error


def keep_slot() -> None:
    """The ``release`` handed to every sink but the last that takes frames: the slot stays."""


class Sink:
    """One kind of output of the encoder; see the module's docstring.

    Subclasses override the hooks they need. Errors writing a file are raised
    as :class:`OutputWriteError` (``frame``, ``check``, ``close``) or noted
    with :meth:`Ending.fail` (``end``, after the files are closed anyway).
    """

    def begin(self, start: EpisodeStart) -> Any:
        """Open this sink's files of an episode; returns its handle (None: none).

        Raises:
            FileExistsError: A file named after ``start.name`` exists already;
                the encoder tries the next name with every sink (it calls
                :meth:`discard` on the handles already made).
            OSError: A file could not be created (``filename`` names it).
        """
        return None

    def discard(self, handle: Any) -> None:
        """Undo ``begin``: close and delete what it created (another sink failed)."""

    def frame(
        self, handle: Any, pixels: np.ndarray, step: int, release: Callable[[], None]
    ) -> None:
        """Take one frame of the episode of ``handle``.

        ``pixels`` is a view of a ring slot: it is valid until ``release()``
        is called, and is never to be kept past this call (copy what is
        kept). The last sink of the list that takes frames gets the real
        ``release`` and may call it as soon as it has its copy, so the
        producer gets its slot back sooner (the video does, before encoding);
        the others get :func:`keep_slot`. The encoder frees the slot after the
        last sink anyway.
        """

    def end(self, handle: Any, ending: Ending) -> None:
        """Finish this sink's files of an episode; add their fields and paths to ``ending``.

        A file of the episode that could not be written is noted with
        :meth:`Ending.fail` (its line says so, then the run stops). An error
        of a file shared by the run (the mosaic) is raised instead: the
        episode's line is written without it, then the run stops.
        """

    def record(self, ending: Ending) -> None:
        """The episode's manifest line is complete (every episode, recorded or not)."""

    def check(self) -> None:
        """Called about once a second: raise if the output can no longer be written."""

    def close(self) -> None:
        """The run is over: finish every file."""

    def abort(self) -> None:
        """After an error: close what can be closed, keep what was written, raise nothing."""
