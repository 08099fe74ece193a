"""The per-episode video as a sink: ``videos/env<E>-episode<K>.mp4`` (:mod:`..video`).

The last sink to take a frame: it frees the ring slot as soon as the frame is
converted (or padded) and encodes after that, so a producer never waits on an
encode.

Each env keeps one codec context across its episodes
(:class:`..video.StreamEncoder`): an episode costs a new file, not a new
encoder. An env's encoder is replaced when its frame size or rate changes or
when it could not be kept (a codec that holds frames back), and all are
closed with the sink.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import av
import numpy as np

from ..convert import opencv_available
from ..video import EpisodeVideo, StreamEncoder, VideoOptions
from .base import Ending, EpisodeStart, OutputWriteError, Sink, write_failed

__all__ = ["VideoSink"]


class _Episode:
    __slots__ = ("video", "frames", "failed")

    def __init__(self, video: EpisodeVideo) -> None:
        self.video = video
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
        self.videos_dir = os.path.join(out_dir, "videos")
        self.encoders: dict[int, StreamEncoder] = {}  # env -> its codec context
        opencv_available()  # import cv2 now, while producers start, not at the first frame

    def _encoder(self, start: EpisodeStart) -> StreamEncoder:
        enc = self.encoders.get(start.env)
        if enc is not None and enc.fits(start.shape, start.fps):
            return enc
        if enc is not None:
            enc.close()
            del self.encoders[start.env]
        h, w, c = start.shape
        enc = self.encoders[start.env] = StreamEncoder(w, h, c, start.fps, self.options)
        return enc

    def begin(self, start: EpisodeStart) -> _Episode:
        h, w, c = start.shape
        path = os.path.join(self.videos_dir, start.name + ".mp4")
        enc = self._encoder(start)
        return _Episode(EpisodeVideo(path, w, h, c, start.fps, self.options, encoder=enc))

    def discard(self, handle: _Episode) -> None:
        handle.video.close()
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

    def _failed(self, handle: _Episode, exc: BaseException) -> OutputWriteError:
        video = handle.video
        return write_failed(exc, video.path, handle.frames, video.size, self.out_dir)

    def close(self) -> None:
        for enc in self.encoders.values():
            enc.close()
        self.encoders.clear()

    def abort(self) -> None:
        self.close()
