"""The encoder process: pulls tagged frames from every ring and writes videos.

One process, one thread, one event loop. It accepts producers on the channel's
listening socket, maps the rings they send, and takes their messages in order:
a frame is encoded into the stream of its (env, episode) and its slot freed at
once; an episode end closes that stream and appends the episode's line to the
manifest. Producers are served round-robin, one frame each per round, so a busy
env cannot starve the others.

It ends when the recorder asks it to and every producer has said goodbye (or
the deadline passes), or when the recorder's process dies; either way it closes
every open video properly before it exits.

If the output cannot be written (a full disk, a file size limit, the folder
removed), it closes every other video, writes a manifest line for each video
still open (``"end": "error"``), and reports an :class:`OutputWriteError`
that names the file and what was kept; the recorder raises it as
``EncoderError`` on the next step.
"""

from __future__ import annotations

import errno
import os
import secrets
import selectors
import shutil
import signal
import socket
import time
import traceback
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

import av

from . import channel
from .episode import EndReason
from .images import ImageWriter
from .keep import KeepPolicy, KeepRule
from .manifest import Manifest
from .messages import CloseEncoder, EncoderClosed, EncoderFailed, EncoderReady, decode, encode
from .mosaic import Mosaic
from .outputs import EpisodeOutputs, OutputOptions, delete_paths, episode_stem
from .ring import Ring

__all__ = ["EncoderConfig", "OutputWriteError", "encoder_main"]

#: Seconds between checks that the output folder is still where it was.
_CHECK_EVERY = 1.0


class OutputWriteError(OSError):
    """A video or the manifest could not be written; the message says what was kept."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _reason(exc: BaseException) -> str:
    """``[Errno 27] File too large`` (the file is named elsewhere in the message)."""
    if isinstance(exc, OSError) and exc.errno and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def _amount(nbytes: int) -> str:
    if nbytes < 10_000:
        return f"{nbytes} bytes"
    if nbytes < 10_000_000:
        return f"{nbytes / 1000:.0f} kB"
    return f"{nbytes / 1e6:.0f} MB"


@dataclass(frozen=True)
class EncoderConfig:
    """What the encoder process needs to know; picklable.

    Attributes:
        keep: Which ended episodes keep their files (:mod:`.keep`).
        mosaic: Number of env tiles of the overview video (None: no mosaic).
    """

    out_dir: str
    outputs: OutputOptions
    token: str
    prefix: str = ""
    manifest: str = "episodes.jsonl"
    keep: tuple[KeepRule, ...] = (KeepRule("all"),)
    keep_seed: int = 0
    mosaic: int | None = None


class _Stage(Enum):
    """Where a producer's connection stands."""

    GREETING = "greeting"  # connected; no hello accepted yet
    DEFERRED = "deferred"  # its hello waits for envs a leaving producer still holds
    REFUSED = "refused"  # its hello was refused; dropped once its queue is empty
    OPEN = "open"  # accepted: rings, frames and episode ends flow
    BYE = "bye"  # it said goodbye; its stream has not ended yet
    ENDED = "ended"  # its stream ended; a goodbye may still wait in its queue
    DONE = "done"  # it said goodbye and its stream ended


#: Stages whose producer is dropped once its queue is empty.
_GONE = (_Stage.REFUSED, _Stage.ENDED, _Stage.DONE)


class _Producer:
    __slots__ = (
        "sock", "reader", "name", "envs", "fps", "ring", "queue", "stage",
        "drop", "owed", "base", "deferred",
    )  # fmt: skip

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = channel.MessageReader()
        self.name = "a producer"
        self.envs: list[int] = []
        self.fps: float | None = None
        self.ring: Ring | None = None
        self.queue: deque[tuple[int, Any]] = deque()
        self.stage = _Stage.GREETING
        self.drop = False
        self.owed = 0  # freed slots not yet returned to the producer
        # Per env, added to this producer's episode indices: a later producer
        # of an env already recorded continues its numbering (another
        # evaluation round with the same recorder) instead of clashing.
        self.base: dict[int, int] = {}
        self.deferred: tuple[dict[str, Any], float] | None = None  # hello, wait until

    def give_credits(self) -> None:
        """Return freed slots to the producer; a dead producer is noticed later."""
        if self.owed:
            try:
                self.sock.send(b"C" * self.owed)
            except OSError:
                pass
            self.owed = 0


class _Encoder:
    def __init__(self, config: EncoderConfig, control: Any) -> None:
        self.config = config
        self.control = control
        self.sel = selectors.DefaultSelector()
        self.listener, self.address, self.folder = channel.listen()
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        self.sel.register(control, selectors.EVENT_READ, "control")
        self.producers: dict[int, _Producer] = {}
        self.owner: dict[int, _Producer] = {}
        self.next_episode: dict[int, int] = {}  # per env, one past the last episode seen
        self.videos: dict[tuple[int, int], tuple[EpisodeOutputs, _Producer]] = {}
        opts = config.outputs
        self.images = ImageWriter(2, opts.images.compress_level) if opts.images.enabled else None
        self.keep = KeepPolicy(config.keep, config.keep_seed)
        self.kept: dict[tuple[int, int], list[str]] = {}  # files of episodes a ranked rule may drop
        self.mosaic: Mosaic | None = None
        self.manifest = Manifest(os.path.join(config.out_dir, config.manifest))
        self.manifest_failed = False  # no more lines can go to the manifest
        self.failed: dict[tuple[int, int], str] = {}  # videos whose writing failed
        self.next_check = time.monotonic() + _CHECK_EVERY
        self.closing = False
        self.deadline = float("inf")
        self.frames = 0
        self.episodes = 0
        self.video_files = 0

    # -- event loop -----------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.control.send_bytes(encode(EncoderReady(self.address)))
        while True:
            busy = any(p.queue or p.stage is _Stage.DEFERRED for p in self.producers.values())
            for key, _ in self.sel.select(0 if busy else 0.25):
                if key.data == "listen":
                    self._accept()
                elif key.data == "control":
                    self._on_control()
                else:
                    self._receive(key.data)
            self._serve_round()
            for p in [p for p in self.producers.values() if p.stage in _GONE and not p.queue]:
                self._drop_producer(p)
            for p in [p for p in self.producers.values() if p.stage is _Stage.DEFERRED]:
                assert p.deferred is not None
                body, until = p.deferred
                p.deferred = None
                self._hello(p, channel.MSG_HELLO, body, until)
            now = time.monotonic()
            if now >= self.next_check:
                self.next_check = now + _CHECK_EVERY
                self._check_output()
            if self.closing and (not self.producers or now > self.deadline):
                break
        self._finish()
        return {
            "frames": self.frames,
            "episodes": self.episodes,
            "videos": self.video_files,
        }

    def _on_control(self) -> None:
        try:
            msg = decode(self.control.recv_bytes())
        except (EOFError, OSError):
            # The recorder's process is gone: producers will follow; finish
            # what they sent and close every video properly.
            self.sel.unregister(self.control)
            self._begin_close(30.0)
            return
        if isinstance(msg, CloseEncoder):
            self._begin_close(float(msg.timeout))

    def _begin_close(self, timeout: float) -> None:
        if not self.closing:
            self.closing = True
            self.sel.unregister(self.listener)
            self.listener.close()
        self.deadline = min(self.deadline, time.monotonic() + timeout)

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        if not channel.peer_uid_ok(sock):
            sock.close()
            return
        sock.setblocking(False)
        p = _Producer(sock)
        self.producers[sock.fileno()] = p
        self.sel.register(sock, selectors.EVENT_READ, p)

    def _receive(self, p: _Producer) -> None:
        try:
            data, fds, _flags, _ = socket.recv_fds(p.sock, 1 << 16, 16)
        except BlockingIOError:
            return
        except ConnectionResetError:
            data, fds = b"", []
        if not data:
            if p.stage is not _Stage.REFUSED:
                p.stage = _Stage.DONE if p.stage is _Stage.BYE else _Stage.ENDED
            self.sel.unregister(p.sock)
            return
        p.reader.feed(data, fds)
        for kind, body in p.reader.messages():
            if kind == channel.MSG_MAP:
                body = (body, p.reader.fds.pop(0))
            if p.stage is _Stage.GREETING or p.stage is _Stage.DEFERRED:
                self._hello(p, kind, body)
            elif p.stage is not _Stage.REFUSED:
                p.queue.append((kind, body))

    def _hello(self, p: _Producer, kind: int, body: Any, until: float | None = None) -> None:
        def refuse(reason: str) -> None:
            raw = reason.encode()
            try:
                p.sock.send(b"X" + len(raw).to_bytes(4, "little") + raw)
            except OSError:
                pass
            p.stage = _Stage.REFUSED
            p.envs = []

        try:
            hello = channel.Hello.unpack(body) if kind == channel.MSG_HELLO else None
        except ValueError:
            hello = None
        if hello is None or not secrets.compare_digest(hello.token, self.config.token):
            refuse("bad hello (wrong token)")
            return
        envs = list(hello.envs)
        taken = [e for e in envs if e in self.owner]
        if taken and not self.closing:
            # The owner may have said goodbye in bytes not yet read: wait a
            # little for it to go before calling this a clash.
            until = until or time.monotonic() + 5.0
            if time.monotonic() < until:
                p.stage = _Stage.DEFERRED
                p.deferred = (body, until)
                return
        if taken:
            refuse(
                f"env index {taken[0]} is already recorded by {self.owner[taken[0]].name}; "
                "give every env its own index"
            )
            return
        if self.closing:
            refuse("the recorder is closing")
            return
        p.stage = _Stage.OPEN
        p.name = hello.name
        p.envs = envs
        p.fps = hello.fps
        p.drop = hello.drop
        for e in envs:
            self.owner[e] = p
            p.base[e] = self.next_episode.get(e, 0)
        p.sock.send(b"A")

    def _serve_round(self) -> None:
        for p in list(self.producers.values()):
            queue = p.queue
            while queue:
                kind, body = queue.popleft()
                if kind == channel.MSG_FRAME:
                    self._frame(p, body)
                    break  # one frame per producer per round
                if kind == channel.MSG_END:
                    self._end(p, body)
                elif kind == channel.MSG_MAP:
                    ring_map, fd = body
                    if p.ring is not None:
                        p.ring.close()
                    p.ring = Ring.attach(fd, ring_map.slots, ring_map.slot_bytes)
                elif kind == channel.MSG_BYE:
                    p.stage = _Stage.DONE if p.stage is _Stage.ENDED else _Stage.BYE
            if not queue:
                p.give_credits()

    # -- frames and episodes --------------------------------------------------
    def _frame(self, p: _Producer, tag: channel.FrameTag) -> None:
        slot, env, episode, step = tag.slot, tag.env, tag.episode, tag.step
        h, w, c = tag.height, tag.width, tag.channels
        episode += p.base.get(env, 0)
        entry = self.videos.get((env, episode))
        fps = self.config.outputs.video.fps or p.fps or 30.0
        if entry is None:
            self._seen(env, episode)
            video = self._open(env, episode, w, h, c, fps)
            self.video_files += 1
            entry = self.videos[(env, episode)] = (video, p)
        video = entry[0]
        assert p.ring is not None, "frame before its ring"
        # Credits go back in batches of half a ring (or when this producer's
        # queue runs dry): a producer blocked on a full ring then renders
        # several frames per wake-up instead of one, which halves the context
        # switches when envs outrun the encoder. Drop mode returns each slot
        # at once, since a late credit there is a dropped frame.
        batch = 1 if p.drop else max(1, p.ring.slots // 2)

        def release() -> None:
            p.owed += 1
            if p.owed >= batch:
                p.give_credits()

        pixels = p.ring.view(slot, (h, w, c))
        if self.config.mosaic:
            mosaic = self._mosaic(fps)
            try:
                mosaic.put(env, episode, pixels)
            except (OSError, av.error.FFmpegError) as exc:
                raise self._write_failed(mosaic, exc) from exc
        try:
            video.write(pixels, step, release)
        except (OSError, av.error.FFmpegError) as exc:
            error = self._write_failed(video, exc)
            self.failed[(env, episode)] = str(error)
            raise error from exc
        self.frames += 1

    # -- output errors --------------------------------------------------------
    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.config.out_dir)

    def _write_failed(self, video: EpisodeOutputs | Mosaic, exc: BaseException) -> OutputWriteError:
        """The error for a file that could not be written: its name, what it kept."""
        path = getattr(exc, "filename", None) or video.path
        kept = f"{_amount(video.size)} kept" if path == video.path else f"{video.frames} frames kept"
        return OutputWriteError(
            exc.errno if isinstance(exc, OSError) else None,
            f"writing {self._rel(path)} failed after {video.frames} frames ({kept}): {_reason(exc)}",
        )

    def _mosaic(self, fps: float) -> Mosaic:
        """The overview video, opened at the first frame (its rate is the first env's)."""
        if self.mosaic is None:
            assert self.config.mosaic
            name = f"{self.config.prefix}mosaic"
            for attempt in range(1000):
                path = os.path.join(self.config.out_dir, f"{name}.mp4" if not attempt else f"{name}.{attempt}.mp4")
                if not os.path.lexists(path):
                    break
            self.mosaic = Mosaic(path, self.config.mosaic, fps, self.config.outputs.video)
        return self.mosaic

    def _write_line(self, record: dict[str, Any], update: bool = False) -> None:
        try:
            self.manifest.write(record, update=update)
        except OSError as exc:
            self.manifest_failed = True
            raise OutputWriteError(
                exc.errno,
                f"writing {self._rel(self.manifest.path)} failed after "
                f"{self.manifest.lines} lines: {_reason(exc)}",
            ) from exc

    def _check_output(self) -> None:
        """Stop if the output folder was removed or moved: writes would go nowhere.

        Open files stay writable after their folder is removed, so without
        this check a run would go on "recording" into deleted files.
        """
        if not self.manifest_failed and self.manifest.moved():
            self.manifest_failed = True
            raise OutputWriteError(
                errno.ENOENT,
                f"the output folder {self.config.out_dir} was removed or moved "
                f"({self.config.manifest} is gone) after {self.episodes} episodes; "
                "nothing more can be recorded there",
            )

    def _seen(self, env: int, episode: int) -> None:
        if episode >= self.next_episode.get(env, 0):
            self.next_episode[env] = episode + 1

    def _open(self, env: int, episode: int, w: int, h: int, c: int, fps: float) -> EpisodeOutputs:
        """Start an episode's files; files already there are kept and a new name used."""
        stem = episode_stem(self.config.prefix, env, episode)
        try:
            return EpisodeOutputs(
                self.config.out_dir, stem, (h, w, c), fps, self.config.outputs, self.images
            )
        except FileExistsError:
            raise
        except OSError as exc:
            hint = " (was the output folder removed?)" if exc.errno == errno.ENOENT else ""
            name = self._rel(exc.filename) if exc.filename else f"the files of {stem}"
            raise OutputWriteError(
                exc.errno, f"cannot create {name} in {self.config.out_dir}: {_reason(exc)}{hint}"
            ) from exc

    def _end(self, p: _Producer, record: dict[str, Any], shifted: bool = False) -> None:
        env = int(record["env"])
        episode = int(record["episode"]) + (0 if shifted else p.base.get(env, 0))
        record["episode"] = episode
        self._seen(env, episode)
        entry = self.videos.pop((env, episode), None)
        error: OutputWriteError | None = None
        paths: list[str] = []
        if entry is not None:
            video = entry[0]
            if self.mosaic is not None:
                self.mosaic.end(env)
            try:
                video.close()
            except (OSError, av.error.FFmpegError) as exc:
                # The episode still gets its line, saying its video is torn.
                error = self._write_failed(video, exc)
                error.__cause__ = exc
                record["error"] = str(error)
            record.update(video.fields(self._rel))
            paths = video.paths()
        else:
            record["video"] = None
            record["frames"] = 0
        evicted: list[tuple[tuple[int, int], str]] = []
        if not self.keep.keeps_all and entry is not None:  # only recorded episodes are judged
            decision = self.keep.decide((env, episode), record)
            record["kept"] = decision.kept
            record["why"] = decision.why
            evicted = decision.evicted
            if not decision.kept:
                self._discard(record, paths)
            elif self.keep.held((env, episode)):
                self.kept[(env, episode)] = paths
        try:
            self._write_line(record)
        except OutputWriteError:
            if error is None:
                raise  # else the video's error is the one to report
        self.episodes += 1
        for key, why in evicted:
            # The line goes first: a crash between the two leaves a file the
            # manifest calls discarded, never a line naming a missing file.
            self._write_line({"env": key[0], "episode": key[1], "kept": False, "why": why}, update=True)
            delete_paths(self.kept.pop(key, []))
        if error is not None:
            raise error

    def _discard(self, record: dict[str, Any], paths: list[str]) -> None:
        """Delete a discarded episode's files; its line keeps the counts, not the names."""
        failed = delete_paths(paths)
        for field in ("video", "images"):
            if record.get(field) is not None:
                record[field] = None
        if "keyframes" in record:
            record["keyframes"] = []
        if failed:
            record["not_deleted"] = [self._rel(p) for p in failed]

    def _drop_producer(self, p: _Producer) -> None:
        """Forget a producer whose stream ended; close the videos it left open."""
        for key, (_video, owner) in list(self.videos.items()):
            if owner is p:
                self._end(
                    p,
                    {
                        "env": key[0],
                        "episode": key[1],
                        "end": EndReason.CLOSED if p.stage in (_Stage.BYE, _Stage.DONE) else EndReason.LOST,
                        "producer": p.name,
                    },
                    shifted=True,
                )
        for e in p.envs:
            if self.owner.get(e) is p:
                del self.owner[e]
        self.producers.pop(p.sock.fileno(), None)
        for fd in p.reader.fds:
            os.close(fd)
        if p.ring is not None:
            p.ring.close()
        try:
            self.sel.unregister(p.sock)
        except (KeyError, ValueError):
            pass  # already unregistered at end-of-file
        p.sock.close()

    def _finish(self) -> None:
        for p in list(self.producers.values()):
            p.queue.clear()
            self._drop_producer(p)
        if self.mosaic is not None:
            try:
                self.mosaic.close()
            except (OSError, av.error.FFmpegError) as exc:
                raise self._write_failed(self.mosaic, exc) from exc
        if self.images is not None:
            self.images.close()
        self.manifest.close()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def abort(self) -> None:
        """Close what can be closed after an error; keep what was written.

        Every video still open is closed (complete up to its last frame,
        except one whose writing failed) and, if the manifest can still be
        written, gets a line with ``"end": "error"`` so no file is unaccounted.
        """
        for (env, episode), (video, _) in list(self.videos.items()):
            error = self.failed.get((env, episode))
            try:
                video.close()
            except Exception as exc:  # noqa: BLE001 - best effort on the way down
                error = error or str(self._write_failed(video, exc))
            if self.manifest_failed:
                continue
            record: dict[str, Any] = {"env": env, "episode": episode, **video.fields(self._rel)}
            record["end"] = EndReason.ERROR
            if error is not None:  # this video is torn: it decodes up to its last fragment
                record["error"] = error
            try:
                self.manifest.write(record)
            except OSError:
                self.manifest_failed = True
        self.videos.clear()
        for part in (self.mosaic, self.images):
            try:
                if part is not None:
                    part.close()
            except Exception:  # noqa: BLE001 - best effort on the way down
                pass
        try:
            self.manifest.close()
        except OSError:
            pass
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def _keep_freed_memory() -> None:
    """Ask glibc to keep freed frame buffers instead of returning them to the OS.

    Each frame's converted copy (hundreds of kB) is allocated and freed by
    FFmpeg; with glibc's defaults that memory is mapped and unmapped again for
    every frame, costing ~50 page faults a frame (measured: 0.13 ms of kernel
    time per 600x400 frame). Raising the mmap and trim thresholds keeps it in
    the heap. Memory stays bounded: it is the same few buffers, reused.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    mallopt(m_trim_threshold, 128 * 1024 * 1024)


def encoder_main(config: EncoderConfig, control: Any) -> None:
    """Entry point of the encoder process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the recorder's to handle
    _keep_freed_memory()
    if hasattr(signal, "SIGXFSZ"):
        # A file size limit (ulimit -f, RLIMIT_FSIZE) would kill us with
        # SIGXFSZ in the middle of a write; ignored, the write fails with
        # EFBIG and we report which file and what was kept.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    encoder = None

    def on_term(signum: int, frame: Any) -> None:
        if encoder is not None:
            encoder._begin_close(5.0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        encoder = _Encoder(config, control)
        summary = encoder.run()
    except BaseException as exc:  # noqa: BLE001 - reported to the recorder, then exit 1
        if encoder is not None:
            encoder.abort()
        # An output error's message says it all; others get their type.
        text = str(exc) if isinstance(exc, OutputWriteError) else f"{type(exc).__name__}: {exc}"
        try:
            control.send_bytes(encode(EncoderFailed(text, traceback.format_exc())))
        except OSError:
            pass
        raise SystemExit(1) from None
    try:
        control.send_bytes(encode(EncoderClosed(summary)))
    except OSError:
        pass
