"""Rendered pixels to the planes the video encoder takes (yuv420p), once per frame.

The conversion is the largest single cost of writing a frame: swscale (PyAV's
``reformat``) takes longer for a 600x400 rgb24 frame than x264 ultrafast takes
to encode it. OpenCV's ``cvtColor(..., COLOR_RGB2YUV_I420)`` does the same
BT.601 limited-range conversion in a fraction of the time
(``benchmarks/bench_convert.py``, figures in ``benchmarks/RESULTS.md``), so it
is used when ``cv2`` can be imported (the ``fast`` extra installs
``opencv-python-headless``), and swscale otherwise. The planes go to x264 as
they are (``VideoFrame.from_numpy_buffer`` over the I420 buffer), with no
second swscale pass.

Both paths write the same colours: BT.601 matrix, limited ("MPEG", 16-235)
range; the video's codec context is tagged with exactly that
(:data:`COLORSPACE`, :data:`COLOR_RANGE`), so players convert back with the
matrix the pixels were made with. The one difference: swscale filters the
chroma of each 2x2 block, OpenCV takes its top-left pixel (Y is within 1);
``tests/test_convert.py`` decodes videos of both against the rendered pixels.

Frames with an odd width or height are padded by repeating the last column
or row (yuv420p needs even sizes); grayscale frames become Y with neutral
chroma.
"""

from __future__ import annotations

import os
from typing import Literal

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

__all__ = ["Converter", "make_converter", "opencv_available", "COLORSPACE", "COLOR_RANGE", "Kind"]

#: What the planes are, tagged on every video stream.
COLORSPACE = int(Colorspace.ITU601)
COLOR_RANGE = int(ColorRange.MPEG)

Kind = Literal["auto", "opencv", "swscale"]

_cv2: object | None = None
_cv2_tried = False


def _load_cv2() -> object | None:
    """``cv2`` if it imports (one thread: the encoder is one process per shard), else None.

    ``RLCAPTURE_CONVERT=swscale`` in the environment turns it off (the
    fallback path, and a way to compare them end to end).
    """
    global _cv2, _cv2_tried
    if not _cv2_tried:
        _cv2_tried = True
        if os.environ.get("RLCAPTURE_CONVERT", "") != "swscale":
            try:
                import cv2
            except ImportError:  # not installed, or a wheel that does not load
                cv2 = None
            if cv2 is not None:
                cv2.setNumThreads(1)
            _cv2 = cv2
    return _cv2


def opencv_available() -> bool:
    """Whether frames are converted by OpenCV (else swscale)."""
    return _load_cv2() is not None


class Converter:
    """Turns (H, W, C) uint8 frames of one size into yuv420p ``av.VideoFrame``s.

    Args:
        channels: 3 (RGB) or 1 (grayscale).
        width: Frame width as rendered.
        height: Frame height as rendered.
        pix_fmt: The stream's pixel format; only ``yuv420p`` has the fast path.
        kind: ``auto`` (OpenCV if installed), ``opencv`` or ``swscale``.

    ``frame`` returns a frame with its own memory (an encoder that holds
    frames back may keep it), never a view of the pixels it was given.
    """

    def __init__(
        self, channels: int, width: int, height: int, pix_fmt: str = "yuv420p", kind: Kind = "auto"
    ) -> None:
        self.channels = channels
        self.width = width
        self.height = height
        self.out_w = width + (width & 1)
        self.out_h = height + (height & 1)
        self.pix_fmt = pix_fmt
        cv2 = _load_cv2() if kind in ("auto", "opencv") else None
        if kind == "opencv" and cv2 is None:
            raise ImportError("OpenCV is not installed: pip install 'rlcapture[fast]'")
        self._cv2 = cv2 if pix_fmt == "yuv420p" else None
        self.kind = "opencv" if self._cv2 is not None else "swscale"
        #: Whether the output is Y'CbCr, so the stream is tagged BT.601 limited range.
        self.yuv = pix_fmt.startswith(("yuv", "nv", "gray"))
        self._pad: np.ndarray | None = None
        if (self.out_w, self.out_h) != (width, height):
            self._pad = np.empty((self.out_h, self.out_w, channels), np.uint8)
        if self._cv2 is not None:
            if channels == 1:
                # Y = 16 + 219 g / 255 (what swscale does for gray), chroma neutral.
                self._lut = np.round(16 + np.arange(256) * (219 / 255)).astype(np.uint8)
        else:
            self._reformatter = VideoReformatter()
            self._src_format = "rgb24" if channels == 3 else "gray"

    def padded(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels`` at an even size: a copy into the padding buffer, or ``pixels`` itself."""
        pad = self._pad
        if pad is None:
            return pixels
        h, w = self.height, self.width
        pad[:h, :w] = pixels
        if self.out_w != w:
            pad[:h, w] = pixels[:, w - 1]
        if self.out_h != h:
            pad[h] = pad[h - 1]
        return pad

    def frame(self, pixels: np.ndarray) -> av.VideoFrame:
        """Convert one frame; once this returns, ``pixels`` (a ring slot) may be freed."""
        src = self.padded(pixels)
        if self._cv2 is not None:
            cv2 = self._cv2
            h = self.out_h
            # A new buffer each frame (the allocator hands back the same
            # memory): a codec that holds frames back keeps a reference to it.
            out = np.empty((h * 3 // 2, self.out_w), np.uint8)
            if self.channels == 3:
                cv2.cvtColor(src, cv2.COLOR_RGB2YUV_I420, dst=out)  # type: ignore[attr-defined]
            else:
                cv2.LUT(src[:, :, 0], self._lut, dst=out[:h])  # type: ignore[attr-defined]
                out[h:] = 128
            if h % 4 == 0:
                frame = av.VideoFrame.from_numpy_buffer(out, format="yuv420p")
            else:  # PyAV takes the buffer's height as a multiple of 4: copy the planes
                frame = _planes_frame(out, self.out_w, h)
            frame.colorspace = COLORSPACE
            frame.color_range = COLOR_RANGE
            return frame
        plane = src if self.channels == 3 else src[:, :, 0]
        if plane.strides[1] != plane.shape[2] if plane.ndim == 3 else plane.strides[1] != 1:
            plane = np.ascontiguousarray(plane)  # not a ring slot: a strided view
        frame = av.VideoFrame.from_numpy_buffer(plane, format=self._src_format)
        if not self.yuv:  # an RGB stream (libx264rgb): no matrix to apply
            out = self._reformatter.reformat(frame, format=self.pix_fmt, threads=1)
        else:
            out = self._reformatter.reformat(
                frame,
                format=self.pix_fmt,
                threads=1,
                dst_colorspace=COLORSPACE,
                dst_color_range=COLOR_RANGE,
            )
        if out is frame:  # already in the stream's format: it reads the pixels, copy them
            out = av.VideoFrame.from_ndarray(np.array(plane), format=self._src_format)
        return out


def _planes_frame(i420: np.ndarray, width: int, height: int) -> av.VideoFrame:
    """A yuv420p frame of its own memory holding the I420 buffer ``i420``."""
    frame = av.VideoFrame(width, height, "yuv420p")
    flat = i420.reshape(-1)
    offset = 0
    for plane, (w, h) in zip(frame.planes, ((width, height), (width // 2, height // 2), (width // 2, height // 2))):
        dst = np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)
        dst[:, :w] = flat[offset : offset + w * h].reshape(h, w)
        offset += w * h
    return frame


def make_converter(
    channels: int, width: int, height: int, pix_fmt: str = "yuv420p", kind: Kind = "auto"
) -> Converter:
    """A :class:`Converter` for frames of this size (see its arguments)."""
    return Converter(channels, width, height, pix_fmt, kind)
