"""The encoder's outputs, one sink each (the interface is in :mod:`.base`).

:func:`build_sinks` makes the list the encoder writes through. Its order is
the order of every hook: the mosaic and the PNGs copy a frame before the
video, which frees the slot before it encodes; the manifest comes after the
files, so it sees their fields. A new output is a :class:`Sink` subclass and
a line here, not an edit to the encoder's loop.
"""

from __future__ import annotations

from typing import Any

from .base import Ending, EpisodeStart, OutputWriteError, Sink
from .images import ImageSink
from .manifest import ManifestSink
from .mosaic import MosaicSink
from .video import VideoSink

__all__ = [
    "Sink",
    "EpisodeStart",
    "Ending",
    "OutputWriteError",
    "build_sinks",
    "VideoSink",
    "ImageSink",
    "MosaicSink",
    "ManifestSink",
]


def build_sinks(config: Any) -> list[Sink]:
    """The outputs ``config`` asks for, in the order the encoder calls them.

    ``config`` is the encoder's ``EncoderConfig``; it is not imported here,
    since the encoder imports this package and imports run one way.
    """
    opts = config.outputs
    sinks: list[Sink] = []
    if config.mosaic:
        sinks.append(MosaicSink(config.out_dir, config.mosaic, opts.video, config.prefix))
    if opts.images.enabled:
        sinks.append(ImageSink(config.out_dir, opts.images, alone=not opts.videos))
    if opts.videos:
        sinks.append(VideoSink(config.out_dir, opts.video))
    sinks.append(ManifestSink(config.out_dir, config.manifest, config.keep, config.keep_seed))
    return sinks
