"""The tiled overview video as a sink: ``mosaic.mp4`` (:mod:`..mosaic`).

One video for the whole run, opened when the first episode of a shown env
begins (its frame rate is that episode's); an episode's end dims its env's
tile. A frame is shrunk into its tile (a copy) before the slot is freed.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import av
import numpy as np

from ..mosaic import Mosaic
from ..run_folder import MOSAIC
from ..video import VideoOptions
from .base import Ending, EpisodeStart, OutputWriteError, Sink, write_failed

__all__ = ["MosaicSink"]


class MosaicSink(Sink):
    """Composes the first ``tiles`` envs into ``<prefix>mosaic.mp4``.

    Args:
        out_dir: The run's folder.
        tiles: Number of env tiles (envs ``0 .. tiles-1`` are shown).
        options: Encoding options (those of the per-episode videos).
        prefix: The run's name prefix.
    """

    def __init__(self, out_dir: str, tiles: int, options: VideoOptions, prefix: str = "") -> None:
        self.out_dir = out_dir
        self.tiles = tiles
        self.options = options
        self.prefix = prefix
        self.mosaic: Mosaic | None = None

    def begin(self, start: EpisodeStart) -> EpisodeStart | None:
        if not 0 <= start.env < self.tiles:
            return None
        if self.mosaic is None:
            name = f"{self.prefix}{MOSAIC}"
            for attempt in range(1000):
                path = os.path.join(self.out_dir, f"{name}.mp4" if not attempt else f"{name}.{attempt}.mp4")
                if not os.path.lexists(path):
                    break
            self.mosaic = Mosaic(path, self.tiles, start.fps, self.options)
        return start

    def frame(
        self, handle: EpisodeStart, pixels: np.ndarray, step: int, release: Callable[[], None]
    ) -> None:
        assert self.mosaic is not None
        try:
            self.mosaic.put(handle.env, handle.episode, pixels)
        except (OSError, av.error.FFmpegError) as exc:
            raise self._failed(exc) from exc

    def end(self, handle: EpisodeStart, ending: Ending) -> None:
        if ending.aborting or self.mosaic is None:
            return  # an error of the mosaic is not the episode's
        try:
            self.mosaic.end(handle.env)
        except (OSError, av.error.FFmpegError) as exc:
            raise self._failed(exc) from exc

    def close(self) -> None:
        if self.mosaic is not None:
            try:
                self.mosaic.close()
            except (OSError, av.error.FFmpegError) as exc:
                raise self._failed(exc) from exc

    def abort(self) -> None:
        try:
            if self.mosaic is not None:
                self.mosaic.close()
        except Exception:  # noqa: BLE001 - best effort on the way down
            pass

    def _failed(self, exc: BaseException) -> OutputWriteError:
        mosaic = self.mosaic
        assert mosaic is not None
        return write_failed(exc, mosaic.path, mosaic.frames, mosaic.size, self.out_dir)
