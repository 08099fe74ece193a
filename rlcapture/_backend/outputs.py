"""What each recorded episode writes, and the name all of its files share.

Each output is a sink of the encoder (:mod:`.sinks`); an episode's video,
PNG sequence and keyframes share one stem, so when a name is taken (a file
left by an earlier run) the next free suffix is used for all of them together,
and a discarded episode's files can be found and deleted as one.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from .images import ImageOptions
from .video import VideoOptions

__all__ = ["OutputOptions", "episode_stem", "delete_paths"]


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
