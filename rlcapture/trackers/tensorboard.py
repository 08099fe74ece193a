"""TensorBoard: event files written with the ``tensorboard`` package alone.

Statistics are scalars (``rlcapture/return``, ...) at their step. TensorBoard
has no video type (``add_video`` writes an animated GIF through moviepy,
which moviepy 2 broke), so each kept video becomes an image summary holding a
small animated GIF made here with PyAV and Pillow (at most
:data:`PREVIEW_FRAMES` frames, :data:`PREVIEW_WIDTH` pixels wide, at the
video's pace), plus a text summary with the MP4's path, which stays the
video of record. No TensorFlow and no torch: the summaries are the protocol
buffers TensorBoard itself ships, written by its ``EventFileWriter``.
"""

from __future__ import annotations

import io
import os
from typing import Any

import av
from PIL import Image
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from .._backend.run_folder import RunFolder
from .._backend.uploads import TrackerSpec
from .base import RunInfo, Tracker, caption, episode_metrics

__all__ = ["TensorBoardTracker", "gif_preview", "PREVIEW_FRAMES", "PREVIEW_WIDTH"]

#: The most frames of a preview (longer videos are sampled evenly).
PREVIEW_FRAMES = 60
#: The most pixels across of a preview.
PREVIEW_WIDTH = 160


def gif_preview(
    path: str, frames: int = PREVIEW_FRAMES, width: int = PREVIEW_WIDTH, total: int | None = None
) -> tuple[bytes, int, int]:
    """A small looping GIF of the video at ``path``; returns (bytes, height, width).

    Every k-th frame is kept so that at most ``frames`` remain, each shown
    k frame-times: the preview lasts as long as the video. Frames are
    shrunk as they are decoded, so a long episode never sits in memory at
    full size. ``total`` (the manifest's frame count) picks k up front;
    without it, k doubles whenever twice ``frames`` have been kept.
    """
    every = max(1, -(-total // frames)) if total else 1
    kept: list[Image.Image] = []
    size: tuple[int, int] | None = None
    with av.open(path) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 30)
        for i, frame in enumerate(container.decode(stream)):
            if i % every:
                continue
            image = frame.to_image()
            if size is None:
                w, h = image.size
                scale = min(1.0, width / w)
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
            kept.append(image.resize(size, Image.Resampling.BILINEAR))
            if len(kept) >= 2 * frames:
                kept, every = kept[::2], every * 2
    if not kept or size is None:
        raise ValueError(f"{path} holds no frames")
    while len(kept) > frames:
        kept, every = kept[::2], every * 2
    buf = io.BytesIO()
    kept[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=kept[1:],
        duration=max(20, round(1000 * every / rate)),
        loop=0,
    )
    return buf.getvalue(), size[1], size[0]


class TensorBoardTracker(Tracker):
    """Event files in ``spec.target`` (default ``OUT/tensorboard``)."""

    def __init__(self, spec: TrackerSpec, run: RunInfo) -> None:
        self.logdir = spec.target or str(RunFolder(run.out_dir).tracker_folder("tensorboard"))
        os.makedirs(self.logdir, exist_ok=True)
        self.writer = EventFileWriter(self.logdir)

    def _add(self, step: int, *values: summary_pb2.Summary.Value) -> None:
        self.writer.add_event(Event(step=step, summary=summary_pb2.Summary(value=list(values))))

    def _text(self, tag: str, text: str, description: str) -> summary_pb2.Summary.Value:
        tensor = tensor_pb2.TensorProto(
            dtype=7,  # DT_STRING
            string_val=[text.encode()],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        )
        meta = text_metadata.create_summary_metadata(tag, description)
        return summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=meta)

    def log_episode(self, record: dict[str, Any], step: int) -> None:
        # Scalars are float32 in TensorBoard: a 32-bit seed would be rounded,
        # so the seed, env and episode go in a line of text instead.
        metrics = episode_metrics(record)
        self._add(
            step,
            *(
                summary_pb2.Summary.Value(tag=f"rlcapture/{k}", simple_value=float(metrics[k]))
                for k in ("return", "length")
                if k in metrics
            ),
            self._text("rlcapture/episode", caption(record), "which episode, its seed and end"),
        )
        self.writer.flush()

    def log_video(self, record: dict[str, Any], path: str, step: int) -> None:
        frames = record.get("frames")
        gif, height, width = gif_preview(path, total=frames if isinstance(frames, int) else None)
        image = summary_pb2.Summary.Image(
            height=height, width=width, colorspace=3, encoded_image_string=gif
        )
        self._add(
            step,
            summary_pb2.Summary.Value(tag="rlcapture/video", image=image),
            self._text(
                "rlcapture/video_path",
                f"{os.path.abspath(path)}\n\n{caption(record)}",
                "the MP4 of record",
            ),
        )
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
