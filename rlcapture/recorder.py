"""The recorder: the engine's front, which owns the output folder and the encoder.

A :class:`Recorder` prepares the output folder (refusing to overwrite a recording
unless asked), starts the encoder process (or ``encoders`` of them, each
recording a share of the envs into the same folder and manifest) and hands out
its :attr:`endpoint`, through which any number of producers attach: the workers
of :class:`~rlcapture.CaptureVectorEnv`, :class:`~rlcapture.CaptureWrapper`
inside another runner's envs, and :class:`~rlcapture.BatchCapture` for
simulators that render a batch in one process.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import secrets
import shutil
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._backend.channel import Endpoint
from ._backend.encoder import EncoderConfig, encoder_main
from ._backend.images import ImageOptions
from ._backend.keep import KeepRule, parse_keep
from ._backend.messages import (
    CloseEncoder,
    EncoderClosed,
    EncoderFailed,
    EncoderReady,
    decode,
    encode,
)
from ._backend.outputs import OutputOptions
from ._backend.procs import RemoteTraceback, describe_exit, get_context, stop_process, wait_ready
from ._backend.producer import DEFAULT_SLOTS, DEFAULT_TIMEOUT
from ._backend.video import VideoOptions, check_codec
from .errors import ConfigError, EncoderError, OutputError, OutputExistsError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["Recorder", "MANIFEST", "VIDEOS", "FRAMES", "MAX_ENCODERS"]

MANIFEST = "episodes.jsonl"
VIDEOS = "videos"
FRAMES = "frames"
_LOCK = ".rlcapture.lock"
# A prefix becomes part of file names that people paste into shells and
# scripts: letters, digits (any script) and . _ - + = @ , only. This refuses
# '/', '\\', NUL, control characters, spaces, quotes and ; | & $ ` * ? < > ( ).
_PREFIX_OK = re.compile(r"[\w.+=@,-]*")
#: The most encoder processes one recorder starts.
MAX_ENCODERS = 64


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or ".." in prefix or not _PREFIX_OK.fullmatch(prefix):
        raise ConfigError(
            f"name prefix {prefix!r} must be a plain file-name part: letters, digits and "
            "'. _ - + = @ ,' only (no '/', '\\', '..', NUL, spaces or shell characters)"
        )
    if len(prefix) > 100:
        raise ConfigError("name prefix must be at most 100 characters")
    return prefix


def _image_options(frames: int | None, keyframes: bool | int) -> ImageOptions:
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise ConfigError(f"frames must be a positive integer (1: every frame), got {frames!r}")
    if keyframes is True or keyframes is False:
        return ImageOptions(every=frames, keyframes=keyframes)
    if not isinstance(keyframes, int) or keyframes < 1:
        raise ConfigError(
            f"keyframes must be True (first and last frame) or a positive step interval, got {keyframes!r}"
        )
    return ImageOptions(every=frames, keyframes=True, keyframe_every=keyframes)


def _check_encoders(encoders: Any) -> int:
    if isinstance(encoders, bool) or not isinstance(encoders, int) or not (
        1 <= encoders <= MAX_ENCODERS
    ):
        raise ConfigError(
            f"encoders must be an integer from 1 to {MAX_ENCODERS} (encoder processes; "
            f"env i is encoded by encoder i % encoders), got {encoders!r}"
        )
    return encoders


def _encoder_entry(config: EncoderConfig, control: Any, parents: Any) -> None:
    """Run the encoder after closing the recorder's ends of the control pipes.

    A forked child inherits them (its own and those of the encoders started
    before it); kept open, they would hide the recorder's death (no
    end-of-file) and leave an encoder running forever, holding the folder's
    lock, after the recorder's process is killed.
    """
    for parent in parents:
        parent.close()
    encoder_main(config, control)


class _Shard:
    """One encoder process: its control pipe, where it listens, what it did."""

    def __init__(self, index: int, proc: Any, conn: Any, token: str) -> None:
        self.index = index
        self.proc = proc
        self.conn: Any = conn
        self.token = token
        self.address = ""
        self.summary: dict[str, Any] | None = None
        self.done = False  # closed, or failed and reported


class Recorder:
    """Records episodes into one output folder; start it once, attach producers.

    Args:
        out: The output folder; created if missing. Videos go to ``out/videos/``,
            one line per finished episode to ``out/episodes.jsonl``.
        fps: Frame rate of every video; None takes each env's ``render_fps``
            (else 30).
        codec: FFmpeg encoder (default H.264, which plays everywhere).
        crf: Quality for codecs that take a constant rate factor (lower is better).
        preset: Speed preset of x264-family codecs.
        pix_fmt: Pixel format of the videos.
        gop: Frames between keyframes, and so between fragments that survive a
            crash; None means about a second.
        drop: Producers drop frames instead of waiting when their ring is full
            (never blocks the env; each drop is counted in the manifest).
        slots: Frames each ring holds.
        name_prefix: Put before every video's file name.
        videos: Write a video per episode; False writes only the images asked
            for by ``frames``/``keyframes`` (and the manifest).
        frames: Also save every ``frames``-th step of each episode as a PNG
            in ``out/frames/env<E>-episode<K>/<step>.png`` (1: every frame).
            Lossless: the PNG holds the rendered pixels exactly.
        keyframes: Save the first and last frame of each episode as PNG next
            to its video (``videos/env<E>-episode<K>-step<S>.png``); an int
            ``k`` adds every ``k``-th step.
        keep: Which episodes keep their files once they end: "all" (default),
            "worst:K", "best:K", "failures" (terminated, not truncated),
            "failures:R" (return below R), "sample:K", "sample:P", combined
            with commas. Discarded episodes' files are deleted when the
            decision is made; their manifest lines stay, with ``kept`` and
            ``why``. See :mod:`rlcapture._backend.keep`.
        keep_seed: Seeds the random sample of ``keep="sample:..."``.
        mosaic: Also write ``out/mosaic.mp4``, all envs side by side, one
            labelled tile per env for envs ``0 .. mosaic-1``. Composed in the
            encoder; the per-env videos are written as usual.
        overwrite: Replace a recording already in ``out`` (its videos, images
            and manifest). Without it such a folder is refused and left untouched.
        context: ``multiprocess`` start method ("fork", "spawn", "forkserver").
        timeout: Seconds any side waits for another before calling it stuck.
        encoders: Encoder processes. With ``k > 1``, env ``i`` is encoded by
            encoder ``i % k``; all write to the same folder and manifest.
            Worth it where one encoder cannot keep up and there are cores to
            spare (see ``benchmarks/RESULTS.md``); 1 by default.

    Raises:
        OutputExistsError: ``out`` holds a recording and ``overwrite`` is False.
        OutputError: ``out`` cannot be created or written, or another run uses it.
        ConfigError: An option is out of range.
        EncoderError: The encoder process failed to start.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        fps: float | None = None,
        codec: str = "libx264",
        crf: int = 23,
        preset: str = "ultrafast",
        pix_fmt: str = "yuv420p",
        gop: int | None = None,
        drop: bool = False,
        slots: int = DEFAULT_SLOTS,
        name_prefix: str = "",
        videos: bool = True,
        frames: int | None = None,
        keyframes: bool | int = False,
        keep: str | KeepRule | Sequence[KeepRule] = "all",
        keep_seed: int = 0,
        mosaic: int | None = None,
        overwrite: bool = False,
        context: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        encoders: int = 1,
    ) -> None:
        self._shards: list[_Shard] = []
        self._lock_fd = -1
        self._closed = False
        self.summary: dict[str, Any] = {}
        if fps is not None and not (isinstance(fps, (int, float)) and 0 < fps <= 1000 and math.isfinite(fps)):
            raise ConfigError(f"fps must be a number in (0, 1000], got {fps!r}")
        if not (isinstance(crf, int) and 0 <= crf <= 63):
            raise ConfigError(f"crf must be an integer from 0 to 63, got {crf!r}")
        if gop is not None and not (isinstance(gop, int) and gop >= 1):
            raise ConfigError(f"gop must be a positive integer, got {gop!r}")
        if not (isinstance(slots, int) and 1 <= slots <= 4096):
            raise ConfigError(f"slots must be an integer from 1 to 4096, got {slots!r}")
        if not (timeout > 0):
            raise ConfigError(f"timeout must be positive, got {timeout!r}")
        self.encoders = _check_encoders(encoders)
        try:
            check_codec(codec, pix_fmt)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.video = VideoOptions(
            codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, fps=fps, gop=gop
        )
        self.outputs = OutputOptions(
            video=self.video, videos=bool(videos), images=_image_options(frames, keyframes)
        )
        if not self.outputs.videos and not self.outputs.images.enabled:
            raise ConfigError(
                "videos=False leaves nothing to write: ask for frames=K (PNG sequence) "
                "or keyframes=True, or keep videos"
            )
        try:
            self.keep = parse_keep(keep)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not isinstance(keep_seed, int) or isinstance(keep_seed, bool):
            raise ConfigError(f"keep_seed must be an integer, got {keep_seed!r}")
        self.keep_seed = keep_seed
        if mosaic is not None and (
            isinstance(mosaic, bool) or not isinstance(mosaic, int) or not 1 <= mosaic <= 1024
        ):
            raise ConfigError(
                f"mosaic must be the number of env tiles, from 1 to 1024, got {mosaic!r} "
                "(CaptureVectorEnv takes mosaic=True for all its envs)"
            )
        self.mosaic = mosaic
        if self.encoders > 1 and mosaic is not None:
            raise ConfigError(
                "mosaic needs every env's frames in one encoder; use encoders=1 with mosaic"
            )
        ranked = [r.label() for r in self.keep if r.kind in ("worst", "best") or r.count]
        if self.encoders > 1 and ranked:
            raise ConfigError(
                f"keep rule {ranked[0]!r} ranks episodes across the run, but each of the "
                f"{self.encoders} encoders would rank only its own; use encoders=1 with it "
                "(failures and sample:P work with several encoders)"
            )
        self.name_prefix = _check_prefix(name_prefix)
        self.out = Path(out)
        self.timeout = float(timeout)
        self._prepare_folder(overwrite)
        try:
            self._start(context, drop, slots)
        except BaseException:
            self._release()
            raise
        self._finalizer = weakref.finalize(self, Recorder._at_exit, weakref.ref(self))
        atexit.register(self._finalizer)

    # -- output folder ----------------------------------------------------------
    def _prepare_folder(self, overwrite: bool) -> None:
        out = self.out
        try:
            out.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock_fd = os.open(out / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise OutputError(
                f"cannot use output folder {str(out)!r}: {exc.strerror}; "
                "choose a folder you can write to"
            ) from None
        self._lock_fd = lock_fd
        if fcntl is not None:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._release()
                raise OutputError(
                    f"another rlcapture run is writing to {str(out)!r}; "
                    "wait for it or choose another folder"
                ) from None
        manifest = out / MANIFEST
        videos = out / VIDEOS
        frames = out / FRAMES
        existing = [p for p in (videos.iterdir() if videos.is_dir() else ())]
        existing += [p for p in (frames.iterdir() if frames.is_dir() else ())]
        mosaics = list(out.glob("*mosaic*.mp4"))
        if manifest.exists() or existing or mosaics:
            if not overwrite:
                self._release()
                raise OutputExistsError(
                    f"{str(out)!r} already holds a recording ({MANIFEST}, {len(existing)} "
                    "files in videos/ and frames/); pass overwrite=True (--overwrite) to "
                    "replace it, or choose another folder"
                )
            manifest.unlink(missing_ok=True)
            shutil.rmtree(videos, ignore_errors=True)
            shutil.rmtree(frames, ignore_errors=True)
            for path in mosaics:
                path.unlink(missing_ok=True)
        try:
            videos.mkdir(mode=0o700, exist_ok=True)
            if self.outputs.images.every is not None:
                frames.mkdir(mode=0o700, exist_ok=True)
            probe = out / f".rlcapture-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            self._release()
            raise OutputError(
                f"cannot write in {str(out)!r}: {exc.strerror}; choose a folder you can write to"
            ) from None

    # -- encoder processes ------------------------------------------------------
    def _start(self, context: str | None, drop: bool, slots: int) -> None:
        ctx = get_context(context)
        self.context = ctx.get_start_method()
        out_dir = str(self.out.resolve())
        try:
            for i in range(self.encoders):
                token = secrets.token_hex(16)
                config = EncoderConfig(
                    out_dir=out_dir,
                    outputs=self.outputs,
                    token=token,
                    prefix=self.name_prefix,
                    keep=self.keep,
                    keep_seed=self.keep_seed,
                    mosaic=self.mosaic,
                )
                conn, child = ctx.Pipe()
                shard = _Shard(i, None, conn, token)
                self._shards.append(shard)
                shard.proc = ctx.Process(
                    target=_encoder_entry,
                    args=(config, child, [s.conn for s in self._shards]),
                    name="rlcapture-encoder" if self.encoders == 1 else f"rlcapture-encoder-{i}",
                    daemon=True,
                )
                shard.proc.start()
                child.close()
            for shard in self._shards:
                msg = wait_ready(shard.conn, shard.proc, max(self.timeout, 30.0))
                if not isinstance(msg, EncoderReady):
                    raise self._failure(shard, msg, "failed to start")
                shard.address = msg.address
        except BaseException:
            self._stop_all(2.0)
            raise
        first = self._shards[0]
        self.endpoint = Endpoint(
            address=first.address,
            token=first.token,
            options={"drop": bool(drop), "slots": slots, "timeout": self.timeout},
            shards=(
                tuple((s.address, s.token) for s in self._shards) if self.encoders > 1 else ()
            ),
        )

    def _stop_all(self, timeout: float) -> None:
        """Stop every encoder process still running (after a failure)."""
        for shard in self._shards:
            if shard.conn is not None:
                shard.conn.close()  # end-of-file: an idle encoder exits at once
                shard.conn = None
        for shard in self._shards:
            if shard.proc is not None and shard.proc.pid is not None:
                stop_process(shard.proc, timeout)
            shard.done = True

    def _name(self, shard: _Shard) -> str:
        if self.encoders == 1:
            return f"the encoder process (pid {shard.proc.pid})"
        return (
            f"encoder {shard.index} of {self.encoders} (pid {shard.proc.pid}; "
            f"envs i with i % {self.encoders} == {shard.index})"
        )

    def _failure(self, shard: _Shard, msg: Any, what: str) -> EncoderError:
        proc = shard.proc
        if isinstance(msg, EncoderFailed):
            proc.join(5.0)
            name = "the encoder process" if self.encoders == 1 else self._name(shard)
            err = EncoderError(
                f"{name} {what}: {msg.message} ({describe_exit(proc.exitcode)})",
                proc.exitcode,
                shard.index,
            )
            err.__cause__ = RemoteTraceback(msg.traceback)
            return err
        proc.join(1.0)
        return EncoderError(
            f"{self._name(shard)} {what}: {describe_exit(proc.exitcode)}",
            proc.exitcode,
            shard.index,
        )

    @property
    def manifest_path(self) -> Path:
        """Where episode lines are appended."""
        return self.out / MANIFEST

    @property
    def encoder_pid(self) -> int:
        """The pid of the (first) encoder process."""
        return int(self._shards[0].proc.pid)

    @property
    def encoder_pids(self) -> list[int]:
        """The pid of every encoder process, shard 0 first."""
        return [int(s.proc.pid) for s in self._shards]

    def endpoint_for(self, env_index: int) -> Endpoint:
        """The endpoint of the encoder that records env ``env_index`` (shard ``env_index % encoders``).

        :attr:`endpoint` routes by itself wherever rlcapture takes an endpoint;
        this one is for a :class:`~rlcapture._backend.producer.FrameProducer`
        made by hand.
        """
        if isinstance(env_index, bool) or not isinstance(env_index, int) or env_index < 0:
            raise ConfigError(f"env_index must be a non-negative integer, got {env_index!r}")
        return self.endpoint.for_env(env_index)

    def check(self) -> None:
        """Raise :class:`EncoderError` if an encoder died or failed (one cheap poll each).

        Call it now and then from a loop that owns the recorder;
        :class:`CaptureVectorEnv` calls it on every step. The error names the
        encoder and how it ended. With several encoders the others keep
        running, so that :meth:`close` can finish their videos.
        """
        if self._closed:
            return
        for shard in self._shards:
            if shard.done or not shard.conn.poll():
                continue
            try:
                msg = decode(shard.conn.recv_bytes())
            except (EOFError, OSError):
                msg = None
            shard.done = True
            stop_process(shard.proc, 5.0)
            err = self._failure(shard, msg, "died")
            shard.conn.close()
            shard.conn = None
            if all(s.done for s in self._shards):
                self._closed = True
                self._release()
            raise err

    def close(self, timeout: float | None = None) -> dict[str, Any]:
        """Finish every video and the manifest, and stop the encoders (idempotent).

        Producers should be closed first; ones still attached get ``timeout``
        seconds to say goodbye, then their open videos are closed as they are.

        Returns:
            What the encoders did, summed: ``frames``, ``episodes``, ``videos``
            (an encoder that failed earlier and was reported by :meth:`check`
            is left out).

        Raises:
            EncoderError: If an encoder failed or died before finishing (the
                first one; the others are still closed).
        """
        if self._closed:
            return self.summary
        self._closed = True
        timeout = self.timeout if timeout is None else timeout
        live = [s for s in self._shards if not s.done]
        try:
            for shard in live:  # every encoder finishes at the same time
                try:
                    shard.conn.send_bytes(encode(CloseEncoder(timeout)))
                except OSError:
                    pass
            deadline = time.monotonic() + timeout + 30.0
            errors: list[EncoderError] = []
            for shard in live:
                msg = wait_ready(shard.conn, shard.proc, max(0.0, deadline - time.monotonic()))
                shard.done = True
                if not isinstance(msg, EncoderClosed):
                    errors.append(self._failure(shard, msg, "failed while closing"))
                else:
                    shard.summary = msg.summary
            done = [s.summary for s in self._shards if s.summary is not None]
            if done:
                self.summary = {key: sum(int(d.get(key, 0)) for d in done) for key in done[0]}
            if errors:
                raise errors[0]
            return self.summary
        finally:
            for shard in live:
                stop_process(shard.proc, 10.0)
            self._release()

    def _release(self) -> None:
        for shard in self._shards:
            if shard.conn is not None:
                shard.conn.close()
                shard.conn = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()
            atexit.unregister(finalizer)

    @staticmethod
    def _at_exit(ref: weakref.ref[Recorder]) -> None:
        rec = ref()
        if rec is not None and not rec._closed:
            try:
                rec.close(timeout=10.0)
            except Exception:  # noqa: BLE001 - at exit there is no one to tell
                pass

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        pids = ", ".join(str(s.proc.pid) for s in self._shards)
        state = "closed" if self._closed else f"encoder pid{'s' if self.encoders > 1 else ''} {pids}"
        return f"Recorder({str(self.out)!r}, {state})"
