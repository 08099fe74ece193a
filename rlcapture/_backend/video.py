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
from av.video.frame import PictureType

from .convert import COLOR_RANGE, COLORSPACE, Converter

__all__ = ["VideoOptions", "EpisodeVideo", "StreamEncoder", "CRF_CODECS", "check_codec", "probe_encoder"]

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
        if self.codec in ("libx264", "libx264rgb"):
            # No frame held back (no lookahead, no B-frames): each frame's
            # packet comes out at once, so an env's encoder is kept across its
            # episodes (StreamEncoder); forced keyframes are IDR frames.
            opts["tune"] = "zerolatency"
            opts["forced-idr"] = "1"
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


class StreamEncoder:
    """One codec context, kept across the episodes of an env.

    Opening libx264 and its first container cost about 10 ms, as much as
    encoding a dozen frames; an env of short episodes paid it per episode.
    This encoder is opened once per env (per frame size and rate) and each
    episode's file gets a stream copied from it
    (``add_stream_from_template``: same codec parameters and headers); its
    packets are muxed into whichever file is open. Each file starts on a
    forced keyframe (an IDR frame), so it decodes from its first frame on its
    own. Encoder timestamps keep increasing across episodes (``base`` of each
    file); the packets get the file's own (the env step) when muxed.

    It is reused only while nothing is held inside it: libx264 with
    ``tune=zerolatency`` (the default) gives each frame's packet at once.
    A codec or preset that delays frames (B-frames, lookahead) is drained
    into the episode's file at its end and then cannot take more frames
    (:attr:`usable` turns False; the sink opens a new one).

    Args:
        width: Frame width as rendered.
        height: Frame height as rendered.
        channels: 3 for RGB, 1 for grayscale.
        fps: Frames per second (the time base is ``1/fps``).
        options: Encoding options.
    """

    def __init__(
        self, width: int, height: int, channels: int, fps: float, options: VideoOptions
    ) -> None:
        self.shape = (height, width, channels)
        self.fps = fps
        self.converter = Converter(channels, width, height, options.pix_fmt)
        self.rate = Fraction(fps).limit_denominator(1001)
        self.next_pts = 0  # encoder timestamps so far: every file's base is above them
        self.pending = 0  # frames given minus packets received
        self.usable = True
        # The stream is opened in a container that is never written to a file:
        # it holds the codec context and is the template of every file's stream.
        self._holder = av.open(io.BytesIO(), "w", format="mp4")
        try:
            stream = self._holder.add_stream(
                options.codec, rate=self.rate, options=options.codec_options()
            )
            stream.width = self.converter.out_w
            stream.height = self.converter.out_h
            stream.pix_fmt = options.pix_fmt
            stream.time_base = 1 / self.rate
            ctx = stream.codec_context
            ctx.thread_count = 1
            ctx.gop_size = options.gop or max(1, round(fps))
            if self.converter.yuv:  # what the planes are made with (convert.py)
                ctx.colorspace = COLORSPACE
                ctx.color_range = COLOR_RANGE
            self._holder.start_encoding()
        except BaseException:
            self._holder.close()
            raise
        self.template = stream
        self.ctx = stream.codec_context

    def fits(self, shape: tuple[int, int, int], fps: float) -> bool:
        """Whether an episode of frames ``shape`` at ``fps`` can use this encoder."""
        return self.usable and shape == self.shape and fps == self.fps

    def close(self) -> None:
        """Free the codec context (idempotent)."""
        self.usable = False
        holder, self._holder = getattr(self, "_holder", None), None
        if holder is not None:
            try:
                holder.close()
            except av.error.FFmpegError:
                pass  # nothing of the run is in it


class EpisodeVideo:
    """Writes the frames of one (env, episode) to ``path``.

    Args:
        path: The file to create; it must not exist (nothing is overwritten).
        width: Frame width as rendered.
        height: Frame height as rendered.
        channels: 3 for RGB, 1 for grayscale.
        fps: Frames per second (the time base is ``1/fps``, ``pts`` the step).
        options: Encoding options.
        encoder: The env's :class:`StreamEncoder` to write with (it must
            :meth:`~StreamEncoder.fits` the frames); None opens one for this
            file alone, closed with it.
    """

    def __init__(
        self,
        path: str,
        width: int,
        height: int,
        channels: int,
        fps: float,
        options: VideoOptions,
        encoder: StreamEncoder | None = None,
    ) -> None:
        self.path = path
        self.frames = 0
        self.width = width
        self.height = height
        self.channels = channels
        self._last_pts = -1
        self._base = 0
        # O_EXCL: an existing file is never overwritten; 0o600: other users
        # cannot read what an agent did (the umask can only narrow it further).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._file = _File(fd, "wb")  # unbuffered, like open(fd, "wb", buffering=0)
        self._owns = encoder is None
        try:
            if encoder is None:
                encoder = StreamEncoder(width, height, channels, fps, options)
            self._encoder: StreamEncoder | None = encoder
            self._container = av.open(
                self._file,
                "w",
                format="mp4",
                options={
                    "movflags": "frag_keyframe+empty_moov+default_base_moof",
                    "flush_packets": "1",
                },
            )
            self._stream = self._container.add_stream_from_template(encoder.template)
        except BaseException:
            if self._owns and encoder is not None:
                encoder.close()
            self._file.close()
            raise

    def write(self, pixels: np.ndarray, step: int, release: Callable[[], None]) -> None:
        """Encode one frame; ``release`` is called once the pixels are no longer read.

        Args:
            pixels: (H, W, C) uint8, usually a view into a ring slot.
            step: The env step; it becomes the frame's ``pts``.
            release: Frees the ring slot, called as soon as the frame is copied.
        """
        enc = self._encoder
        assert enc is not None, "write after close"
        frame = enc.converter.frame(pixels)
        release()
        if step <= self._last_pts:  # a producer restarted the count; keep pts increasing
            step = self._last_pts + 1
        if self.frames == 0:
            frame.pict_type = PictureType.I  # every file starts on its own keyframe
            self._base = enc.next_pts
        self._last_pts = step
        frame.pts = self._base + step
        enc.next_pts = frame.pts + 1
        enc.pending += 1
        try:
            self._mux(enc, self._container, enc.ctx.encode(frame))
        except BaseException:
            enc.usable = False  # what it holds belongs to this file
            raise
        self.frames += 1

    def _mux(self, enc: StreamEncoder, container: Any, packets: list[av.Packet]) -> None:
        """Mux ``packets`` into this file, in its own timestamps."""
        enc.pending -= len(packets)
        base = self._base
        for packet in packets:
            if packet.pts is not None:
                packet.pts -= base
            if packet.dts is not None:
                packet.dts -= base
            packet.stream = self._stream
            container.mux(packet)

    def close(self) -> None:
        """Finish the file (idempotent); the encoder stays open if it holds nothing.

        Raises:
            OSError: The file could not be written (a full disk, a file size
                limit); the file is closed anyway and keeps what reached it.
        """
        container, self._container = getattr(self, "_container", None), None
        enc, self._encoder = getattr(self, "_encoder", None), None
        try:
            if container is not None:
                try:
                    if enc is not None and (enc.pending or self._owns):
                        # Frames still inside the codec: drain them here; the
                        # codec is then at its end and cannot take another file.
                        enc.usable = False
                        if self._file.error is None:  # after a failed write, only tidy up
                            self._mux(enc, container, enc.ctx.encode(None))
                finally:
                    container.close()
        except av.error.FFmpegError as exc:
            if self._file.error is not None:
                raise self._file.error from exc
            raise
        finally:
            if enc is not None and self._owns:
                enc.close()
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
