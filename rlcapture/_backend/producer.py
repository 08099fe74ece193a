"""The producer end of a ring: what workers, wrappers and batch submitters use.

A producer copies each frame into a free slot of its ring and tells the
encoder over its channel. Lossless by default: with no free slot it waits (on
the channel, with a timeout, noticing the encoder's death as end-of-file). In
drop mode it never waits for a slot: the frame is dropped and counted against
its episode.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import ClosedError, EncoderError, FrameError
from . import channel
from .channel import Endpoint
from .frames import as_frame
from .ring import Ring, RingIndex

__all__ = ["FrameProducer", "ShardedProducer", "open_producer"]


class FrameProducer:
    """Sends tagged frames and episode ends of some envs to the encoder.

    Args:
        endpoint: Where the encoder listens (``Recorder.endpoint``).
        envs: The env indices this producer speaks for; the encoder refuses an
            index another live producer already holds.
        name: Who we are, for messages ("worker 2").
        fps: Frame rate of these envs' videos (the env's ``render_fps``), or None
            for the recorder's default.
        drop: Drop frames instead of waiting when the ring is full; None takes
            the recorder's default.
        slots: Slots in the ring; None takes the recorder's default.
        timeout: Seconds to wait for the encoder before raising.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        envs: Iterable[int],
        *,
        name: str = "producer",
        fps: float | None = None,
        drop: bool | None = None,
        slots: int | None = None,
        timeout: float | None = None,
    ) -> None:
        transport = endpoint.transport
        self.envs = sorted(int(e) for e in envs)
        self.name = name
        self.drop = transport.drop if drop is None else bool(drop)
        self.slots = int(slots or transport.slots)
        self.timeout = float(timeout or transport.timeout)
        self._ring: Ring | None = None
        self._index: RingIndex | None = None
        self._ring_id = 0
        self._shape: dict[int, tuple[int, tuple[int, ...]]] = {}
        self._closed = False
        self.sock: socket.socket | None = None
        self.sock = self._handshake(endpoint, fps)
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN)

    # -- connection -----------------------------------------------------------
    def _handshake(self, endpoint: Endpoint, fps: float | None) -> socket.socket:
        try:
            sock = channel.connect(endpoint.address, self.timeout)
        except OSError as exc:
            raise EncoderError(
                f"{self.name}: cannot reach the encoder ({exc.strerror or exc}); "
                "is the Recorder still open?"
            ) from exc
        try:
            hello = channel.Hello(
                token=endpoint.token,
                name=self.name,
                envs=tuple(self.envs),
                pid=os.getpid(),
                fps=fps,
                drop=self.drop,
            )
            sock.sendall(hello.pack())
            reply = sock.recv(1)
            if reply == b"X":
                raise EncoderError(f"{self.name}: the encoder refused us: {_read_rest(sock)}")
            if reply != b"A":
                raise EncoderError(f"{self.name}: the encoder closed the connection")
            sock.setblocking(False)
        except TimeoutError as exc:
            sock.close()
            raise EncoderError(
                f"{self.name}: the encoder did not answer within {self.timeout:g} s"
            ) from exc
        except BaseException:
            sock.close()
            raise
        return sock

    def _send(self, data: bytes, fds: list[int] | None = None) -> None:
        sock = self._live_socket()
        view = memoryview(data)
        deadline = None
        while view:
            try:
                if fds:
                    sent = socket.send_fds(sock, [view], fds)
                    fds = None
                else:
                    sent = sock.send(view)
                view = view[sent:]
            except BlockingIOError:
                deadline = deadline or time.monotonic() + self.timeout
                self._wait_io(select.POLLOUT, deadline, "accept our messages")
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    raise self._encoder_gone() from exc
                raise

    def _wait_io(self, events: int, deadline: float, what: str) -> None:
        sock = self._live_socket()
        poller = select.poll()
        poller.register(sock, events | select.POLLIN)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise EncoderError(
                f"{self.name}: the encoder did not {what} within {self.timeout:g} s; "
                "it may be stuck (a slow disk?)"
            )

    def _encoder_gone(self) -> EncoderError:
        self._closed = True
        return EncoderError(f"{self.name}: the encoder closed its end (did it die?)")

    def _live_socket(self) -> socket.socket:
        if self.sock is None or self._closed:
            raise ClosedError(f"{self.name}: producer is closed")
        return self.sock

    def _take_credits(self, wait: bool) -> None:
        """Collect freed slots; with ``wait``, block until at least one is free."""
        sock = self._live_socket()
        deadline = None
        assert self._index is not None
        while True:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                data = None
            except ConnectionResetError as exc:
                raise self._encoder_gone() from exc
            if data == b"":
                raise self._encoder_gone()
            if data:
                self._index.release(len(data))
                continue  # more may be queued
            if self._index.free or not wait:
                return
            deadline = deadline or time.monotonic() + self.timeout
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll.poll(remaining * 1000):
                raise EncoderError(
                    f"{self.name}: no ring slot was freed for {self.timeout:g} s; "
                    "the encoder may be stuck"
                )

    # -- rings ----------------------------------------------------------------
    def _ensure_ring(self, nbytes: int) -> None:
        ring = self._ring
        if ring is not None and ring.slot_bytes >= nbytes:
            return
        if ring is not None:  # a larger frame: let the encoder finish the old ring
            assert self._index is not None
            while self._index.in_use:
                self._take_credits(wait=True)
                if self._index.in_use:
                    self._wait_io(select.POLLIN, time.monotonic() + self.timeout, "free slots")
        new = Ring.create(self.slots, nbytes, name=f"rlcapture-{self.name}")
        try:
            self._ring_id += 1
            self._send(channel.RingMap(self._ring_id, new.slots, new.slot_bytes).pack(), [new.fd])
        except BaseException:
            new.close()
            raise
        if ring is not None:
            ring.close()
        self._ring = new
        self._index = RingIndex(new.slots)

    # -- public ---------------------------------------------------------------
    def check(self, env: int, episode: int, step: int, frame: Any) -> np.ndarray:
        """The frame as :meth:`frame` would take it, or the error it would raise; sends nothing.

        Lets a batch be checked whole before any of it is recorded.

        Raises:
            FrameError: If the frame is malformed or its size changed mid-episode.
        """
        where = f"env {env} episode {episode} step {step}"
        pixels = as_frame(frame, where)
        known = self._shape.get(env)
        if known is not None and known[0] == episode and known[1] != pixels.shape:
            raise FrameError(
                f"{where}: frame size changed mid-episode from "
                f"{_size(known[1])} to {_size(pixels.shape)}; an episode's video needs one size"
            )
        return pixels

    def frame(self, env: int, episode: int, step: int, frame: Any) -> bool:
        """Copy one frame into the ring and announce it.

        Returns:
            False if the frame was dropped (drop mode, ring full), else True.

        Raises:
            FrameError: If the frame is malformed or its size changed mid-episode.
            EncoderError: If the encoder died or stopped taking frames.
        """
        pixels = self.check(env, episode, step, frame)
        shape = pixels.shape
        self._shape[env] = (episode, shape)
        nbytes = pixels.nbytes
        self._ensure_ring(nbytes)
        index = self._index
        assert index is not None and self._ring is not None
        if not index.free:
            self._take_credits(wait=not self.drop)
            if not index.free:
                return False
        slot = index.acquire()
        np.copyto(self._ring.view(slot, shape), pixels)
        self._send(channel.FrameTag(slot, env, episode, step, *shape).pack())
        return True

    def end(self, record: dict[str, Any]) -> None:
        """Announce that an episode ended, after its last frame.

        Args:
            record: The episode's manifest fields (env, episode, seed, return, ...).
        """
        self._send(channel.pack_end(record))

    def close(self) -> None:
        """Say goodbye and release the ring (idempotent).

        Frames already announced stay valid: the encoder keeps its own mapping.
        """
        sock, self.sock = self.sock, None
        if sock is not None:
            if not self._closed:
                self._closed = True
                try:
                    sock.setblocking(True)
                    sock.settimeout(1.0)
                    sock.sendall(channel.BYE)
                except OSError:
                    pass
            sock.close()
        self._closed = True
        ring, self._ring = self._ring, None
        if ring is not None:
            ring.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


class ShardedProducer:
    """Producers of envs that belong to several encoder shards: one per shard.

    A recorder with ``encoders=k`` records env ``e`` in shard ``e % k``; a
    producer of several envs (a worker hosting a few, a batch) opens one
    :class:`FrameProducer` (one connection, one ring) per shard it needs and
    sends each env's frames and episode ends to its own. Same methods as
    :class:`FrameProducer`.
    """

    def __init__(self, endpoint: Endpoint, envs: Iterable[int], **kwargs: Any) -> None:
        groups: dict[int, list[int]] = {}
        for e in sorted(int(e) for e in envs):
            groups.setdefault(endpoint.shard_of(e), []).append(e)
        self.producers: list[FrameProducer] = []
        self._by_env: dict[int, FrameProducer] = {}
        try:
            for _shard, group in sorted(groups.items()):
                producer = FrameProducer(endpoint.for_env(group[0]), group, **kwargs)
                self.producers.append(producer)
                self._by_env.update(dict.fromkeys(group, producer))
        except BaseException:
            self.close()
            raise

    def check(self, env: int, episode: int, step: int, frame: Any) -> np.ndarray:
        return self._by_env[env].check(env, episode, step, frame)

    def frame(self, env: int, episode: int, step: int, frame: Any) -> bool:
        return self._by_env[env].frame(env, episode, step, frame)

    def end(self, record: dict[str, Any]) -> None:
        self._by_env[int(record["env"])].end(record)

    def close(self) -> None:
        for producer in self.producers:
            producer.close()


def open_producer(
    endpoint: Endpoint, envs: Iterable[int], **kwargs: Any
) -> FrameProducer | ShardedProducer:
    """A producer for ``envs``: connected to the encoder (or encoders) that own them.

    Keyword arguments go to :class:`FrameProducer`.
    """
    envs = sorted(int(e) for e in envs)
    shards = {endpoint.shard_of(e) for e in envs}
    if len(shards) <= 1:
        return FrameProducer(endpoint.for_env(envs[0]) if envs else endpoint, envs, **kwargs)
    return ShardedProducer(endpoint, envs, **kwargs)


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}x{shape[2]}"


def _read_rest(sock: socket.socket) -> str:
    chunks = []
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                break
            chunks.append(data)
    except OSError:
        pass
    raw = b"".join(chunks)
    return raw[4:].decode(errors="replace") if len(raw) >= 4 else "no reason given"

