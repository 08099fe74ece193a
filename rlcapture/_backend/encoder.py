"""The encoder process: pulls tagged frames from every ring and hands them to its sinks.

One process, one thread, one event loop. It accepts producers on the channel's
listening socket, maps the rings they send, and takes their messages in order:
a frame goes to every sink of its (env, episode) and its slot is freed at
once; an episode end closes the episode's files and appends its line to the
manifest. Producers are served round-robin, one frame each per round, so a busy
env cannot starve the others.

What is written is not this loop's business: the outputs (video, PNG frames,
mosaic, manifest and keep rules) are sinks (:mod:`.sinks`), called in the
order :func:`.sinks.build_sinks` gives. This file keeps what every output
shares: the handshake, the schedule, the slots and credits, one name per
episode for all its files, and the error reports.

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
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from . import channel
from .episode import EndReason
from .keep import KeepRule
from .manifest import MANIFEST
from .messages import CloseEncoder, EncoderClosed, EncoderFailed, EncoderReady, decode, encode
from .outputs import OutputOptions, episode_stem
from .ring import Ring
from .sinks import Ending, EpisodeStart, OutputWriteError, Sink, build_sinks
from .sinks.base import keep_slot, reason

__all__ = ["EncoderConfig", "OutputWriteError", "encoder_main"]

#: Seconds between checks that the output folder is still where it was.
_CHECK_EVERY = 1.0


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
    manifest: str = MANIFEST
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


class _Open:
    """An episode being recorded: its producer, its sinks' handles, its frame path."""

    __slots__ = ("producer", "handles", "copiers", "last", "frames")

    def __init__(self, producer: _Producer, handles: list[tuple[Sink, Any]]) -> None:
        self.producer = producer
        self.handles = handles  # (sink, handle) of each sink that began it, in order
        takers = [(sink.frame, h) for sink, h in handles if type(sink).frame is not Sink.frame]
        # Only the last sink taking frames may free the slot early (see Sink.frame).
        self.copiers = takers[:-1]
        self.last = takers[-1] if takers else None
        self.frames = 0


class _Encoder:
    def __init__(self, config: EncoderConfig, control: Any) -> None:
        self.config = config
        self.control = control
        self.sinks = build_sinks(config)
        self.sel = selectors.DefaultSelector()
        self.listener, self.address, self.folder = channel.listen()
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        self.sel.register(control, selectors.EVENT_READ, "control")
        self.producers: dict[int, _Producer] = {}
        self.owner: dict[int, _Producer] = {}
        self.next_episode: dict[int, int] = {}  # per env, one past the last episode seen
        self.open: dict[tuple[int, int], _Open] = {}
        # The slot of the frame being handed to the sinks: whose it is, and
        # after how many freed slots its producer gets its credits.
        self.holder: _Producer | None = None
        self.batch = 1
        self.release: Callable[[], None] = self._release  # one bound method, not one per frame
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
        ep = self.open.get((env, episode))
        if ep is None:
            self._seen(env, episode)
            fps = self.config.outputs.video.fps or p.fps or 30.0
            ep = self.open[(env, episode)] = self._open(p, env, episode, (h, w, c), fps)
            self.video_files += 1
        ring = p.ring
        assert ring is not None, "frame before its ring"
        # Credits go back in batches of half a ring (or when this producer's
        # queue runs dry): a producer blocked on a full ring then renders
        # several frames per wake-up instead of one, which halves the context
        # switches when envs outrun the encoder. Drop mode returns each slot
        # at once, since a late credit there is a dropped frame.
        self.batch = 1 if p.drop else max(1, ring.slots // 2)
        self.holder = p
        pixels = ring.view(slot, (h, w, c))
        ep.frames += 1
        for take, handle in ep.copiers:
            take(handle, pixels, step, keep_slot)
        if ep.last is not None:
            take, handle = ep.last
            take(handle, pixels, step, self.release)
        if self.holder is not None:
            self._release()
        self.frames += 1

    def _release(self) -> None:
        """Free the slot of the frame being handed out (once, whoever calls)."""
        p = self.holder
        if p is not None:
            self.holder = None
            p.owed += 1
            if p.owed >= self.batch:
                p.give_credits()

    def _open(
        self, p: _Producer, env: int, episode: int, shape: tuple[int, int, int], fps: float
    ) -> _Open:
        """Begin an episode with every sink under one name; files already there keep theirs."""
        out_dir = self.config.out_dir
        stem = episode_stem(self.config.prefix, env, episode)
        try:
            for attempt in range(1000):
                name = stem if attempt == 0 else f"{stem}.{attempt}"
                try:
                    return _Open(p, self._begin(EpisodeStart(env, episode, name, shape, fps)))
                except FileExistsError:
                    continue  # a sink's file of that name exists: every sink takes the next
            raise FileExistsError(
                f"{stem} and 999 alternatives exist already in {os.path.join(out_dir, 'videos')}"
            )
        except FileExistsError:
            raise
        except OSError as exc:
            hint = " (was the output folder removed?)" if exc.errno == errno.ENOENT else ""
            name = os.path.relpath(exc.filename, out_dir) if exc.filename else f"the files of {stem}"
            raise OutputWriteError(
                exc.errno, f"cannot create {name} in {out_dir}: {reason(exc)}{hint}"
            ) from exc

    def _begin(self, start: EpisodeStart) -> list[tuple[Sink, Any]]:
        """Every sink's handle of ``start``; if one sink fails, the others' files go."""
        begun: list[tuple[Sink, Any]] = []
        try:
            for sink in self.sinks:
                handle = sink.begin(start)
                if handle is not None:
                    begun.append((sink, handle))
        except BaseException:
            for sink, handle in reversed(begun):
                try:
                    sink.discard(handle)
                except OSError:
                    pass  # the error being raised is the one to report
            raise
        return begun

    def _seen(self, env: int, episode: int) -> None:
        if episode >= self.next_episode.get(env, 0):
            self.next_episode[env] = episode + 1

    def _end(self, p: _Producer, record: dict[str, Any], shifted: bool = False) -> None:
        env = int(record["env"])
        episode = int(record["episode"]) + (0 if shifted else p.base.get(env, 0))
        record["episode"] = episode
        self._seen(env, episode)
        ep = self.open.pop((env, episode), None)
        ending = Ending((env, episode), record, recorded=ep is not None)
        ending.fields.update(video=None, frames=ep.frames if ep is not None else 0)
        stop: OutputWriteError | None = None
        for sink, handle in ep.handles if ep is not None else ():
            try:
                sink.end(handle, ending)
            except OutputWriteError as exc:  # not the episode's own file: stop after its line
                stop = stop or exc
        if ending.error is not None:  # the episode still gets its line, saying what is torn
            record["error"] = str(ending.error)
        record.update(ending.fields)
        for sink in self.sinks:
            sink.record(ending)
        self.episodes += 1
        if ending.error is not None:
            raise ending.error
        if stop is not None:
            raise stop

    def _check_output(self) -> None:
        """Let each sink say, about once a second, that its output is gone (a removed folder)."""
        for sink in self.sinks:
            sink.check()

    def _drop_producer(self, p: _Producer) -> None:
        """Forget a producer whose stream ended; close the videos it left open."""
        for key, ep in list(self.open.items()):
            if ep.producer is p:
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
        for sink in self.sinks:
            sink.close()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def abort(self) -> None:
        """Close what can be closed after an error; keep what was written.

        Every video still open is closed (complete up to its last frame,
        except one whose writing failed) and, if the manifest can still be
        written, gets a line with ``"end": "error"`` so no file is unaccounted.
        """
        for key, ep in list(self.open.items()):
            ending = Ending(key, {}, aborting=True)
            ending.fields.update(video=None, frames=ep.frames)
            for sink, handle in ep.handles:
                try:
                    sink.end(handle, ending)
                except Exception:  # noqa: BLE001 - best effort on the way down
                    pass
            ending.record = {"env": key[0], "episode": key[1], **ending.fields, "end": EndReason.ERROR}
            if ending.error is not None:  # this video is torn: it decodes up to its last fragment
                ending.record["error"] = str(ending.error)
            for sink in self.sinks:
                try:
                    sink.record(ending)
                except Exception:  # noqa: BLE001 - best effort on the way down
                    pass
        self.open.clear()
        for sink in self.sinks:
            try:
                sink.abort()
            except Exception:  # noqa: BLE001 - best effort on the way down
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
