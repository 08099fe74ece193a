"""Everything one recorded (env, episode) writes: its video, PNG sequence and keyframes.

The encoder opens one :class:`EpisodeOutputs` at an episode's first frame and
closes it at the episode's end. All of an episode's files share one stem, so
when a name is taken (a file left by an earlier run) the next free suffix is
used for all of them together, and a discarded episode's files can be found
and deleted as one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .images import EpisodeImages, ImageOptions, ImageWriter
from .video import EpisodeVideo, VideoOptions

__all__ = ["OutputOptions", "EpisodeOutputs", "episode_stem"]


@dataclass(frozen=True)
class OutputOptions:
    """What each recorded episode writes.

    Attributes:
        video: Encoding options of the per-episode video.
        videos: Write a video per episode (False: images only).
        images: PNG sequence and keyframes.
    """

    video: VideoOptions = field(default_factory=VideoOptions)
    videos: bool = True
    images: ImageOptions = field(default_factory=ImageOptions)


def episode_stem(prefix: str, env: int, episode: int) -> str:
    """``env<E>-episode<K>`` with the run's name prefix."""
    return f"{prefix}env{env}-episode{episode}"


class EpisodeOutputs:
    """The open files of one episode; see the module's docstring."""

    def __init__(
        self,
        out_dir: str,
        stem: str,
        shape: tuple[int, int, int],
        fps: float,
        options: OutputOptions,
        writer: ImageWriter | None,
    ) -> None:
        h, w, c = shape
        self.frames = 0
        self.video: EpisodeVideo | None = None
        self.images: EpisodeImages | None = None
        videos_dir = os.path.join(out_dir, "videos")
        for attempt in range(1000):
            name = stem if attempt == 0 else f"{stem}.{attempt}"
            base = os.path.join(videos_dir, name)
            self.path = base + ".mp4" if options.videos else base
            try:
                if options.videos:
                    self.video = EpisodeVideo(base + ".mp4", w, h, c, fps, options.video)
                if options.images.enabled:
                    assert writer is not None
                    every = options.images.every
                    frames_dir = os.path.join(out_dir, "frames", name) if every is not None else None
                    if not options.videos and options.images.keyframes and os.path.lexists(base + "-step000000.png"):
                        raise FileExistsError(base)
                    self.images = EpisodeImages(writer, options.images, frames_dir, base, shape)
                    if not options.videos:
                        self.path = frames_dir or base
                return
            except FileExistsError:
                if self.video is not None:  # its video was new but its images' name was not
                    self.video.close()
                    os.unlink(self.video.path)
                    self.video = None
        raise FileExistsError(f"{stem} and 999 alternatives exist already in {videos_dir}")

    def write(self, pixels: np.ndarray, step: int, release: Callable[[], None]) -> None:
        """Take one frame; ``release`` frees its ring slot once nothing reads it.

        Raises:
            OSError: A file could not be written (``filename`` names it, for PNGs).
        """
        first = self.frames == 0
        self.frames += 1
        if self.images is not None:
            self.images.write(pixels, step, first)  # copies what it keeps
        if self.video is not None:
            self.video.write(pixels, step, release)
        else:
            release()

    def close(self) -> None:
        """Finish every file (each is closed even if another fails).

        Raises:
            OSError: The first file that could not be written.
        """
        error: BaseException | None = None
        for part in (self.images, self.video):
            if part is None:
                continue
            try:
                part.close()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the rest close
                error = error or exc
        if error is not None:
            raise error

    def fields(self, rel: Callable[[str], str]) -> dict[str, Any]:
        """Manifest fields naming the files (``rel`` makes a path relative to the run)."""
        fields: dict[str, Any] = {"video": rel(self.video.path) if self.video else None, "frames": self.frames}
        if self.images is not None:
            fields.update(self.images.fields(rel))
        return fields

    def paths(self) -> list[str]:
        """Every file and folder written for this episode."""
        out = [self.video.path] if self.video is not None else []
        if self.images is not None:
            out.extend(self.images.paths())
        return out

    @property
    def size(self) -> int:
        """Bytes of the video so far (0 without a video)."""
        return self.video.size if self.video is not None else 0


def delete_paths(paths: list[str]) -> list[str]:
    """Delete files and folders of a discarded episode; returns those that could not be."""
    failed = []
    for path in paths:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            failed.append(path)
    return failed
