"""PNG images of an episode: a frame sequence, and keyframes next to its video.

Both are written by the encoder process, off the envs' path like the video.
PNG is lossless: the file's pixels are the rendered pixels (odd sizes are not
padded, grey stays grey). Pillow's PNG encoder costs ~3.5 ms for a 600x400
frame, several times an H.264 frame, but it releases the GIL, so the files are
written by a small pool of threads while the encoder's own thread goes on
encoding video; the pixels are copied out of the ring first (``fromarray``, the
copy Pillow makes anyway), so a slot is never held for a PNG.

Files are created with ``O_EXCL`` and mode ``0600`` like the videos: nothing is
overwritten, and other users cannot read them.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["ImageOptions", "ImageWriter", "EpisodeImages"]

#: PNGs being written at once, beyond which the encoder waits for the oldest;
#: bounds memory to this many frame copies.
_IN_FLIGHT = 8


@dataclass(frozen=True)
class ImageOptions:
    """Which frames become PNG files.

    Attributes:
        every: Write the frame of every ``every``-th step (0, k, 2k, ...) to
            ``frames/env<E>-episode<K>/<step>.png``; None writes no sequence.
        keyframes: Write the first and last frame (and, if ``keyframe_every``
            is set, every that many steps) next to the video.
        keyframe_every: Steps between keyframes besides the first and last.
        compress_level: zlib level 0-9 (1: fast; PNG is lossless at any level).
    """

    every: int | None = None
    keyframes: bool = False
    keyframe_every: int | None = None
    compress_level: int = 1

    @property
    def enabled(self) -> bool:
        return self.every is not None or self.keyframes


class ImageWriter:
    """A small thread pool writing PNGs; errors come back with the file's name."""

    def __init__(self, threads: int = 2, compress_level: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="rlcapture-png")
        self._pending: list[Future[None]] = []
        self.level = compress_level

    def submit(self, pixels: np.ndarray, path: str) -> Future[None]:
        """Copy ``pixels`` now and write them to ``path`` in the background."""
        plane = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
        image = Image.fromarray(plane)  # copies: the ring slot may be reused at once
        self._pending = [f for f in self._pending if not f.done()]
        while len(self._pending) >= _IN_FLIGHT:
            self._pending.pop(0).exception()  # waits; its episode reports any error
        future = self._pool.submit(_write_png, image, path, self.level)
        self._pending.append(future)
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _write_png(image: Image.Image, path: str, level: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as f:
            image.save(f, format="PNG", compress_level=level)
    except OSError as exc:
        if exc.filename is None:
            exc.filename = path
        raise


class EpisodeImages:
    """The PNGs of one (env, episode): its frame sequence and its keyframes.

    Args:
        writer: The encoder's shared :class:`ImageWriter`.
        options: Which frames to write.
        frames_dir: The sequence's folder (created here, must not exist), or
            None when ``options.every`` is None.
        key_stem: Keyframes are ``<key_stem>-step<S>.png``.
        shape: (H, W, C) of the frames, for the last-frame buffer.
    """

    def __init__(
        self,
        writer: ImageWriter,
        options: ImageOptions,
        frames_dir: str | None,
        key_stem: str,
        shape: tuple[int, int, int],
    ) -> None:
        self.writer = writer
        self.options = options
        self.frames_dir = frames_dir
        self.key_stem = key_stem
        self.sequence = 0
        self.keyframes: list[str] = []
        self._futures: list[Future[None]] = []
        # The latest frame, kept so the last one can become a keyframe once
        # the episode's end says which it was: one buffer, however long the episode.
        self._last = np.empty(shape, np.uint8) if options.keyframes else None
        self._last_step = -1
        self._last_saved = False
        if frames_dir is not None:
            os.mkdir(frames_dir, 0o700)

    def write(self, pixels: np.ndarray, step: int, first: bool) -> None:
        """Take the frame of ``step`` (``first``: the episode's first frame)."""
        opts = self.options
        if opts.every is not None and step % opts.every == 0:
            assert self.frames_dir is not None
            path = os.path.join(self.frames_dir, f"{step:06d}.png")
            self._futures.append(self.writer.submit(pixels, path))
            self.sequence += 1
        if self._last is not None:
            key = first or (opts.keyframe_every is not None and step % opts.keyframe_every == 0)
            if key:
                self._keyframe(pixels, step)
            else:
                np.copyto(self._last, pixels)
            self._last_step = step
            self._last_saved = key

    def _keyframe(self, pixels: np.ndarray, step: int) -> None:
        path = f"{self.key_stem}-step{step:06d}.png"
        self._futures.append(self.writer.submit(pixels, path))
        self.keyframes.append(path)

    def close(self) -> None:
        """Write the last keyframe and wait for this episode's files.

        Raises:
            OSError: A PNG could not be written (its ``filename`` says which).
        """
        if self._last is not None and self._last_step >= 0 and not self._last_saved:
            self._keyframe(self._last, self._last_step)
            self._last_saved = True
        futures, self._futures = self._futures, []
        error: BaseException | None = None
        for future in futures:
            exc = future.exception()
            if exc is not None and error is None:
                error = exc
        if error is not None:
            raise error

    def paths(self) -> list[str]:
        """Every file and folder this episode wrote (to delete a discarded episode)."""
        out: list[str] = list(self.keyframes)
        if self.frames_dir is not None:
            out.append(self.frames_dir)
        return out

    def fields(self, rel: Any) -> dict[str, Any]:
        """The manifest fields naming these files (``rel`` makes paths relative)."""
        fields: dict[str, Any] = {}
        if self.frames_dir is not None:
            fields["images"] = rel(self.frames_dir)
            fields["image_count"] = self.sequence
        if self.options.keyframes:
            fields["keyframes"] = [rel(p) for p in self.keyframes]
        return fields
