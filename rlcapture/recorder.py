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
import os
import secrets
import time
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ._backend.channel import Endpoint
from ._backend.encoder import EncoderConfig, encoder_main
from ._backend.encoder_count import auto_encoders
from ._backend.images import ImageOptions
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
from ._backend.run_folder import FRAMES, MANIFEST, VIDEOS, RunFolder
from ._backend.uploads import Uploader, missing_package, parse_tracker
from ._backend.video import VideoOptions, probe_encoder
from .config import MAX_ENCODERS, RecordConfig, build_config, keyword_names
from .errors import ConfigError, EncoderError

__all__ = ["Recorder", "MANIFEST", "VIDEOS", "FRAMES", "MAX_ENCODERS"]


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
            one line per finished episode to the manifest in ``out``
            (:data:`~rlcapture._backend.manifest.MANIFEST`).
        config: What to record and how (:class:`~rlcapture.RecordConfig`);
            None takes the defaults.
        overwrite: Replace a recording already in ``out``: everything a
            recording and its tools wrote there (manifest, videos, images,
            summary, report, plots, tracker folders, ``seed-S/``...) is
            removed; other files stay, named in a ``KeptFilesWarning``.
            Without it such a folder is refused and left untouched.
        context: ``multiprocess`` start method ("fork", "spawn", "forkserver").
        envs: How many envs will render at once, for ``encoders="auto"`` (the
            default) to choose the encoder count from; None: as many as
            usable cores. :class:`~rlcapture.CaptureVectorEnv` passes it.
        **options: :class:`~rlcapture.RecordConfig` options by their flat
            names (``codec="libx265"``, ``drop=True``, ``mosaic=4``: a number
            of env tiles here), applied over ``config``.

    Attributes:
        config: The validated configuration this recorder runs with.
        endpoint: Where producers attach (small and picklable).
        folder: The output folder's :class:`~rlcapture._backend.run_folder.RunFolder`
            (its lock, the names of what is in it).
        summary: After :meth:`close`: ``frames``, ``episodes``, ``videos``;
            with trackers (``loggers``), also ``uploads`` (per tracker: sent,
            not sent, last error) and ``not_uploaded`` (one line per tracker
            that missed something; empty when all was sent).

    Raises:
        OutputExistsError: ``out`` holds a recording and ``overwrite`` is False.
        OutputError: ``out`` cannot be created or written, or another run uses it.
        ConfigError: An option is unknown or out of range, or a tracker's
            package is missing (the message names the extra to install).
        EncoderError: The encoder process failed to start.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        config: RecordConfig | None = None,
        *,
        overwrite: bool = False,
        context: str | None = None,
        envs: int | None = None,
        **options: Any,
    ) -> None:
        self._shards: list[_Shard] = []
        self._uploader: Uploader | None = None
        self._closed = False
        self.summary: dict[str, Any] = {}
        config = build_config(
            config, options, front="Recorder", front_options=keyword_names(Recorder.__init__)
        )
        self.config = config
        for spec in config.loggers:  # before any folder or process exists
            missing = missing_package(parse_tracker(spec))
            if missing:
                raise ConfigError(missing)
        if envs is not None and (isinstance(envs, bool) or not isinstance(envs, int) or envs < 1):
            raise ConfigError(f"envs must be a positive integer (envs recorded), got {envs!r}")
        #: Encoder processes started: ``encoders``, or what "auto" chose for ``envs``.
        self.encoders = (
            auto_encoders(envs, single=config.single_encoder())
            if config.encoders == "auto"
            else int(config.encoders)
        )
        self.mosaic = config.mosaic_tiles()
        self.video = VideoOptions(**asdict(config.video))
        images = config.images
        self.outputs = OutputOptions(
            video=self.video,
            videos=images.videos,
            images=ImageOptions(
                every=images.frames,
                keyframes=images.keyframes is not False,
                keyframe_every=images.keyframe_every,
            ),
        )
        self.keep = config.keep
        self.keep_seed = config.keep_seed
        self.name_prefix = config.name_prefix
        self.timeout = config.transport.timeout
        self.out = Path(out)
        self.folder = RunFolder(self.out)
        if images.videos or self.mosaic:
            try:  # before the folder is touched: a codec that cannot open loses nothing
                probe_encoder(self.video)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        self._prepare_folder(overwrite)
        try:
            self._start(context)
            self._start_uploads()
        except BaseException:
            self._stop_all(2.0)
            self._release()
            raise
        self._finalizer = weakref.finalize(self, Recorder._at_exit, weakref.ref(self))
        atexit.register(self._finalizer)

    # -- output folder ----------------------------------------------------------
    def _prepare_folder(self, overwrite: bool) -> None:
        """Lock the folder, refuse or clear an earlier recording (:class:`RunFolder`)."""
        folders = (VIDEOS, FRAMES) if self.outputs.images.every is not None else (VIDEOS,)
        self.folder.open(overwrite, folders=folders)

    # -- encoder processes ------------------------------------------------------
    def _start(self, context: str | None) -> None:
        ctx = get_context(context)
        self.context = ctx.get_start_method()
        out_dir = str(self.out.resolve())
        try:
            for i in range(self.encoders):
                token = secrets.token_hex(16)
                settings = EncoderConfig(
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
                    args=(settings, child, [s.conn for s in self._shards]),
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
            transport=self.config.transport,
            shards=(
                tuple((s.address, s.token) for s in self._shards) if self.encoders > 1 else ()
            ),
        )

    def _start_uploads(self) -> None:
        """Start the uploader process when trackers are named; it follows the manifest."""
        if not self.config.loggers:
            return
        self._uploader = Uploader(
            self.config.loggers,
            str(self.out.resolve()),
            self.out.resolve().name,
            self.config.upload_attempts,
            self.config.upload_timeout,
            context=self.context,
            inherited=tuple(s.conn for s in self._shards),
        )
        self._uploader.follow(self.manifest_path)

    def _finish_uploads(self) -> None:
        """Let the uploads finish; name in the summary (and manifest) what was not sent."""
        uploader, self._uploader = self._uploader, None
        if uploader is not None:
            self.summary.update(uploader.finish())

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
        uploader, self._uploader = self._uploader, None
        if uploader is not None:
            uploader.stop(timeout)

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
        return self.folder.manifest

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
                try:
                    self._finish_uploads()
                finally:
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
            try:
                self._finish_uploads()  # every line is written: what is left goes now
            finally:
                self._release()

    def _release(self) -> None:
        for shard in self._shards:
            if shard.conn is not None:
                shard.conn.close()
                shard.conn = None
        folder = getattr(self, "folder", None)
        if folder is not None:
            folder.release()
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
