"""The per-episode video as a sink: ``videos/env<E>-episode<K>.mp4`` (:mod:`..video`).

The last sink to take a frame: it frees the ring slot as soon as the frame is
converted (or padded) and encodes after that, so a producer never waits on an
encode.

Codec contexts (:class:`..video.StreamEncoder`) are kept across episodes in a
pool: an episode takes a free one of its frame size and rate, or opens one,
and gives it back when it ends, so an episode costs a new file, not a new
encoder (opening libx264 costs ~5 ms). Every file starts on a forced IDR
frame, so which env's episode a context wrote before does not matter. As
many contexts live as episodes were recorded at once (the most free ones
kept is that peak, so a size no longer recorded is let go): one per env when
every episode is recorded, a few when envs take turns (``every:M``). A
context that could not be kept (a codec that holds frames back) is closed
instead of given back, and all are closed with the sink.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import av
import numpy as np

from ..convert import opencv_available
from ..run_folder import VIDEOS
from ..video import EpisodeVideo, StreamEncoder, VideoOptions
from .base import Ending, EpisodeStart, OutputWriteError, Sink, write_failed

__all__ = ["VideoSink"]


class _Episode:
    __slots__ = ("video", "encoder", "frames", "failed")

    def __init__(self, video: EpisodeVideo, encoder: StreamEncoder) -> None:
        self.video = video
        self.encoder = encoder
        self.frames = 0  # taken, the failing one included (for the message)
        self.failed: OutputWriteError | None = None


class VideoSink(Sink):
    """One MP4 per recorded episode, in ``<out_dir>/videos``.

    Args:
        out_dir: The run's folder (``videos/`` in it exists).
        options: How videos are encoded.
    """

    def __init__(self, out_dir: str, options: VideoOptions) -> None:
        self.out_dir = out_dir
        self.options = options
        self.videos_dir = os.path.join(out_dir, VIDEOS)
        self._free: list[StreamEncoder] = []  # no episode is using them; last given back last
        self._busy: set[StreamEncoder] = set()
        self._peak = 0  # most episodes open at once so far: at most that many are kept free
        #: Codec contexts opened so far (a pool of them is kept; see the module docstring).
        self.opened = 0
        opencv_available()  # import cv2 now, while producers start, not at the first frame

    def _take(self, start: EpisodeStart) -> StreamEncoder:
        for i in range(len(self._free) - 1, -1, -1):  # the most recently used that fits
            if self._free[i].fits(start.shape, start.fps):
                enc = self._free.pop(i)
                break
        else:
            h, w, c = start.shape
            enc = StreamEncoder(w, h, c, start.fps, self.options)
            self.opened += 1
        self._busy.add(enc)
        self._peak = max(self._peak, len(self._busy))
        return enc

    def _give_back(self, enc: StreamEncoder) -> None:
        self._busy.discard(enc)
        if not enc.usable:  # it held frames back: what it holds was the ended file's
            enc.close()
            return
        self._free.append(enc)
        # Bounded by the peak: a size or rate no longer recorded is let go.
        while len(self._free) > self._peak:
            self._free.pop(0).close()

    def begin(self, start: EpisodeStart) -> _Episode:
        h, w, c = start.shape
        path = os.path.join(self.videos_dir, start.name + ".mp4")
        enc = self._take(start)
        try:
            video = EpisodeVideo(path, w, h, c, start.fps, self.options, encoder=enc)
        except BaseException:
            self._give_back(enc)
            raise
        return _Episode(video, enc)

    @property
    def contexts(self) -> list[StreamEncoder]:
        """The codec contexts open now, in use or free."""
        return [*self._busy, *self._free]

    def discard(self, handle: _Episode) -> None:
        try:
            handle.video.close()
        finally:
            self._give_back(handle.encoder)
        os.unlink(handle.video.path)

    def frame(
        self, handle: _Episode, pixels: np.ndarray, step: int, release: Callable[[], None]
    ) -> None:
        handle.frames += 1
        try:
            handle.video.write(pixels, step, release)
        except (OSError, av.error.FFmpegError) as exc:
            handle.failed = self._failed(handle, exc)
            raise handle.failed from exc

    def end(self, handle: _Episode, ending: Ending) -> None:
        ending.fields["video"] = os.path.relpath(handle.video.path, self.out_dir)
        ending.files.append(handle.video.path)
        if handle.failed is not None:  # torn: it decodes up to its last fragment
            ending.fail(handle.failed)
        try:
            handle.video.close()
        except (OSError, av.error.FFmpegError) as exc:
            # The episode still gets its line, saying its video is torn.
            error = self._failed(handle, exc)
            error.__cause__ = exc
            ending.fail(error)
        finally:
            self._give_back(handle.encoder)

    def _failed(self, handle: _Episode, exc: BaseException) -> OutputWriteError:
        video = handle.video
        return write_failed(exc, video.path, handle.frames, video.size, self.out_dir)

    def close(self) -> None:
        for enc in self.contexts:
            enc.close()
        self._busy.clear()
        self._free.clear()

    def abort(self) -> None:
        self.close()
