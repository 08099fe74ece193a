"""PNG frames and keyframes as a sink (:mod:`..images`).

``frames/env<E>-episode<K>/<step>.png`` for every ``every``-th step, and
keyframes ``videos/env<E>-episode<K>-step<S>.png`` next to the video. The
pixels are copied out of the ring during ``frame`` and written by the
:class:`ImageWriter`'s threads; their errors come back at the episode's end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import numpy as np

from ..images import EpisodeImages, ImageOptions, ImageWriter
from ..run_folder import FRAMES, VIDEOS
from .base import Ending, EpisodeStart, Sink, write_failed

__all__ = ["ImageSink"]


class _Episode:
    __slots__ = ("images", "frames", "path")

    def __init__(self, images: EpisodeImages, path: str) -> None:
        self.images = images
        self.frames = 0
        self.path = path  # the folder of the sequence, or the keyframes' stem


class ImageSink(Sink):
    """The PNG images of every recorded episode.

    Args:
        out_dir: The run's folder (``videos/`` and, with a sequence,
            ``frames/`` in it exist).
        options: Which frames become PNGs.
        alone: No video is written: the keyframes' names are then the
            episode's claim on its stem, so one left by an earlier run moves
            the episode to the next free name.
        threads: Threads writing PNGs.
    """

    def __init__(self, out_dir: str, options: ImageOptions, alone: bool, threads: int = 2) -> None:
        self.out_dir = out_dir
        self.options = options
        self.alone = alone
        self.writer = ImageWriter(threads, options.compress_level)

    def begin(self, start: EpisodeStart) -> _Episode:
        opts = self.options
        base = os.path.join(self.out_dir, VIDEOS, start.name)
        frames_dir = os.path.join(self.out_dir, FRAMES, start.name) if opts.every is not None else None
        if self.alone and opts.keyframes and os.path.lexists(base + "-step000000.png"):
            raise FileExistsError(base)
        images = EpisodeImages(self.writer, opts, frames_dir, base, start.shape)
        return _Episode(images, frames_dir or base)

    def discard(self, handle: _Episode) -> None:
        if handle.images.frames_dir is not None:  # nothing is in it yet
            shutil.rmtree(handle.images.frames_dir, ignore_errors=True)

    def frame(
        self, handle: _Episode, pixels: np.ndarray, step: int, release: Callable[[], None]
    ) -> None:
        handle.frames += 1
        handle.images.write(pixels, step, handle.frames == 1)  # copies what it keeps

    def end(self, handle: _Episode, ending: Ending) -> None:
        try:
            handle.images.close()
        except OSError as exc:
            error = write_failed(exc, handle.path, handle.frames, 0, self.out_dir)
            error.__cause__ = exc
            ending.fail(error)
        finally:  # named even when torn: the line accounts for every file
            ending.fields.update(handle.images.fields(lambda p: os.path.relpath(p, self.out_dir)))
            ending.files.extend(handle.images.paths())

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.close()
