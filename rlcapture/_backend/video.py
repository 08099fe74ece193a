"""One episode's video: a PyAV stream written as fragmented MP4.

Fragmented MP4 (``frag_keyframe+empty_moov``) with a keyframe about every
second means a file is playable up to its last whole fragment even if the run
is killed; ``close`` flushes the encoder and writes the index, so a file that
was closed is complete. ``pts`` is the env step, so dropped frames leave a gap
in time instead of speeding the video up.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

__all__ = ["VideoOptions", "EpisodeVideo", "CRF_CODECS", "check_codec", "probe_encoder"]

#: Codecs that take ``crf`` (and, for the x26x family, ``preset``).
CRF_CODECS = {"libx264", "libx264rgb", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1"}
_PRESET_CODECS = {"libx264", "libx264rgb", "libx265", "libsvtav1"}


@dataclass(frozen=True)
class VideoOptions:
    """How videos are encoded. Defaults play everywhere (H.264, yuv420p).

    Attributes:
        codec: An FFmpeg encoder name.
        crf: Constant rate factor (quality; lower is better), where the codec has one.
        preset: Speed preset of the x264/x265/SVT-AV1 family.
        pix_fmt: Pixel format of the stream.
        fps: Frames per second; None takes each env's ``render_fps``, else 30.
        gop: Frames between keyframes (and fragments); None means about a second.
        extra: More codec options, passed to FFmpeg as they are.
    """

    codec: str = "libx264"
    crf: int = 23
    preset: str = "ultrafast"
    pix_fmt: str = "yuv420p"
    fps: float | None = None
    gop: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def codec_options(self) -> dict[str, str]:
        opts: dict[str, str] = {}
        if self.codec in CRF_CODECS:
            opts["crf"] = str(self.crf)
        if self.codec in _PRESET_CODECS:
            opts["preset"] = self.preset
        if self.codec.startswith("libx26"):
            opts["threads"] = "1"
        opts.update(self.extra)
        return opts


def check_codec(codec: str, pix_fmt: str) -> None:
    """Raise ValueError with advice if FFmpeg cannot encode ``codec``/``pix_fmt``."""
    try:
        c = av.codec.Codec(codec, "w")
    except Exception as exc:
        raise ValueError(
            f"FFmpeg has no encoder {codec!r}; try 'libx264' (H.264, plays everywhere)"
        ) from exc
    if c.type != "video":
        raise ValueError(f"{codec!r} is not a video encoder; try 'libx264'")
    formats = [f.name for f in (c.video_formats or [])]
    if formats and pix_fmt not in formats:
        raise ValueError(
            f"encoder {codec!r} does not take pixel format {pix_fmt!r}; "
            f"it takes {', '.join(formats[:8])}"
        )


#: Encoders that need their hardware and its driver (an encoder that exists may still not open).
_HARDWARE = {
    "nvenc": "an NVIDIA GPU and its driver",
    "qsv": "an Intel GPU with Quick Sync and its driver",
    "vaapi": "a VA-API device (/dev/dri) and its driver",
    "amf": "an AMD GPU and its driver",
    "videotoolbox": "macOS",
    "v4l2m2m": "a V4L2 memory-to-memory encoder device",
}


def probe_encoder(options: VideoOptions, width: int = 256, height: int = 256) -> None:
    """Open (and close) an encoder as the run will, before the run, to learn that it opens.

    FFmpeg lists a hardware encoder (``h264_nvenc``) wherever it was built
    with it; only opening it tells whether the GPU is there. Opening libx264
    takes about 5 ms.

    Raises:
        ValueError: Naming the codec, why it did not open, and what to use.
    """
    rate = Fraction(options.fps or 30).limit_denominator(1001)
    try:
        ctx = av.CodecContext.create(options.codec, "w")
        ctx.width = width
        ctx.height = height
        ctx.pix_fmt = options.pix_fmt
        ctx.time_base = 1 / rate
        ctx.framerate = rate
        ctx.thread_count = 1
        probe_options = options.codec_options()
        if options.codec == "libx265":
            probe_options.setdefault("x265-params", "log-level=none")
        ctx.options = probe_options
        ctx.open()
    except Exception as exc:  # noqa: BLE001 - FFmpeg's reasons vary (EPERM, EINVAL, ENOSYS)
        needs = next((what for key, what in _HARDWARE.items() if key in options.codec), None)
        why = f"it needs {needs}, " if needs else ""
        reason = " ".join(str(exc).split())
        raise ValueError(
            f"encoder {options.codec!r} cannot open here ({reason}); {why}"
            "use --codec libx264 (codec='libx264'), which runs on the CPU"
        ) from None
    del ctx  # closed when freed


class _File(io.FileIO):
    """The video's file, remembering the first error a write raised.

    PyAV re-raises a failed write from ``mux``, but a write that fails while
    the container is finished (flush, trailer) comes back as an opaque
    ``PyAVCallbackError``; ``EpisodeVideo.close`` then raises the real
    ``OSError`` (``[Errno 28] No space left on device``) kept here.
    """

    error: OSError | None = None

    def write(self, data: Any) -> int | None:
        try:
            return super().write(data)
        except OSError as exc:
            if self.error is None:
                self.error = exc
            raise


class EpisodeVideo:
    """Writes the frames of one (env, episode) to ``path``.

    Args:
        path: The file to create; it must not exist (nothing is overwritten).
        width: Frame width as rendered.
        height: Frame height as rendered.
        channels: 3 for RGB, 1 for grayscale.
        fps: Frames per second (the time base is ``1/fps``, ``pts`` the step).
        options: Encoding options.
    """

    def __init__(
        self, path: str, width: int, height: int, channels: int, fps: float, options: VideoOptions
    ) -> None:
        self.path = path
        self.frames = 0
        self.width = width
        self.height = height
        self.channels = channels
        self._src_format = "rgb24" if channels == 3 else "gray"
        self._out_w = width + (width & 1)
        self._out_h = height + (height & 1)
        self._pad: np.ndarray | None = None
        if (self._out_w, self._out_h) != (width, height):
            self._pad = np.empty((self._out_h, self._out_w, channels), np.uint8)
        self._pix_fmt = options.pix_fmt
        self._reformatter = VideoReformatter()
        self._last_pts = -1
        rate = Fraction(fps).limit_denominator(1001)
        # O_EXCL: an existing file is never overwritten; 0o600: other users
        # cannot read what an agent did (the umask can only narrow it further).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._file = _File(fd, "wb")  # unbuffered, like open(fd, "wb", buffering=0)
        try:
            self._container = av.open(
                self._file,
                "w",
                format="mp4",
                options={
                    "movflags": "frag_keyframe+empty_moov+default_base_moof",
                    "flush_packets": "1",
                },
            )
            stream = self._container.add_stream(options.codec, rate=rate, options=options.codec_options())
            stream.width = self._out_w
            stream.height = self._out_h
            stream.pix_fmt = options.pix_fmt
            stream.time_base = 1 / rate
            ctx = stream.codec_context
            ctx.thread_count = 1
            ctx.gop_size = options.gop or max(1, round(fps))
            self._stream = stream
        except BaseException:
            self._file.close()
            raise

    def write(self, pixels: np.ndarray, step: int, release: Callable[[], None]) -> None:
        """Encode one frame; ``release`` is called once the pixels are no longer read.

        Args:
            pixels: (H, W, C) uint8, usually a view into a ring slot.
            step: The env step; it becomes the frame's ``pts``.
            release: Frees the ring slot, called as soon as the frame is copied.
        """
        if self._pad is not None:
            pad = self._pad
            h, w = self.height, self.width
            pad[:h, :w] = pixels
            if self._out_w != w:
                pad[:h, w] = pixels[:, w - 1]
            if self._out_h != h:
                pad[h] = pad[h - 1]
            src = pad
            release()
            released = True
        else:
            src = pixels
            released = False
        plane = src if self.channels == 3 else src[:, :, 0]
        frame = av.VideoFrame.from_numpy_buffer(plane, format=self._src_format)
        out = self._reformatter.reformat(frame, format=self._pix_fmt, threads=1)
        if out is frame and not released:
            out = av.VideoFrame.from_ndarray(np.array(plane), format=self._src_format)
        if not released:
            release()
        if step <= self._last_pts:  # a producer restarted the count; keep pts increasing
            step = self._last_pts + 1
        out.pts = self._last_pts = step
        self._container.mux(self._stream.encode(out))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent).

        Raises:
            OSError: The file could not be written (a full disk, a file size
                limit); the file is closed anyway and keeps what reached it.
        """
        container, self._container = getattr(self, "_container", None), None
        try:
            if container is not None:
                try:
                    if self._file.error is None:  # after a failed write, only tidy up
                        container.mux(self._stream.encode(None))
                finally:
                    container.close()
        except av.error.FFmpegError as exc:
            if self._file.error is not None:
                raise self._file.error from exc
            raise
        finally:
            if not self._file.closed:
                self._file.close()

    @property
    def size(self) -> int:
        """Bytes on disk so far (of the open file, even if its folder was removed)."""
        try:
            if not self._file.closed:
                return os.fstat(self._file.fileno()).st_size
            return os.path.getsize(self.path)
        except OSError:
            return 0
