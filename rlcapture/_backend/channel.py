"""The ordered message stream between a frame producer and the encoder.

Each producer (a worker, a wrapped env in a foreign runner, a batch submitter)
holds one Unix stream socket to the encoder. Pixels live in shared memory (see
``ring.py``); the socket carries everything else, in order:

producer -> encoder
    ``H`` hello (JSON), ``M`` map a new ring (its descriptor rides along as
    ``SCM_RIGHTS``), ``F`` a frame is ready in a slot (tags), ``E`` an episode
    ended (JSON statistics), ``B`` goodbye.
encoder -> producer
    ``A`` accepted or ``X`` refused (with the reason), then one ``C`` byte per
    freed slot.

Bodies have named types, packed and unpacked here only: :class:`Hello`,
:class:`RingMap`, :class:`FrameTag`; an episode end is its manifest record (a
dict whose fields the manifest documents).

Why a socket and not semaphores: one encoder waits on many producers with a
single ``poll``; a dead peer shows as end-of-file instead of a hang; the
descriptor of anonymous memory can be handed to a process we did not start;
and the system call on each side orders the pixel writes before the reads on
every CPU architecture. It costs one small ``send`` per frame.

On Linux the listening socket lives in the abstract namespace (no file, gone
with the process) and peers are checked to run as the same user; elsewhere it
is a socket file in a private ``0700`` folder that the encoder removes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import struct
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from ..config import TransportConfig

__all__ = [
    "Endpoint",
    "MSG_HELLO",
    "MSG_MAP",
    "MSG_FRAME",
    "MSG_END",
    "MSG_BYE",
    "FRAME",
    "MAP",
    "BYE",
    "Hello",
    "RingMap",
    "FrameTag",
    "pack_end",
    "MessageReader",
    "listen",
    "connect",
    "pack_json",
    "peer_uid_ok",
]

MSG_HELLO = ord("H")
MSG_MAP = ord("M")
MSG_FRAME = ord("F")
MSG_END = ord("E")
MSG_BYE = ord("B")

#: ``F`` body: slot, env, episode, step, height, width, channels.
FRAME = struct.Struct("<IIIQIII")
#: ``M`` body: ring id, number of slots, bytes per slot.
MAP = struct.Struct("<IIQ")
_LEN = struct.Struct("<I")
# The same layouts with the type byte in front, to pack a message in one call.
_FRAME_MSG = struct.Struct("<B" + FRAME.format[1:])
_MAP_MSG = struct.Struct("<B" + MAP.format[1:])
#: The whole ``B`` message.
BYE = bytes([MSG_BYE])

_FIXED = {MSG_FRAME: FRAME.size, MSG_MAP: MAP.size, MSG_BYE: 0}
_new = tuple.__new__


class FrameTag(NamedTuple):
    """``F``: a frame of ``env``'s ``episode`` at ``step`` waits in ``slot``."""

    slot: int
    env: int
    episode: int
    step: int
    height: int
    width: int
    channels: int

    def pack(self) -> bytes:
        return _FRAME_MSG.pack(MSG_FRAME, *self)


class RingMap(NamedTuple):
    """``M``: map a new ring (its descriptor rides along with this message)."""

    ring_id: int
    slots: int
    slot_bytes: int

    def pack(self) -> bytes:
        return _MAP_MSG.pack(MSG_MAP, *self)


@dataclass(frozen=True)
class Hello:
    """``H``: who a producer is, which envs it speaks for, and its secret.

    Attributes:
        token: The encoder's secret (``Endpoint.token``).
        name: Who we are, for messages ("worker 2").
        envs: The env indices this producer records.
        pid: Its process id.
        fps: Frame rate of its videos, or None for the recorder's default.
        drop: Whether it drops frames instead of waiting for a slot.
    """

    token: str
    name: str
    envs: tuple[int, ...]
    pid: int = 0
    fps: float | None = None
    drop: bool = False

    def pack(self) -> bytes:
        body = asdict(self)
        body["envs"] = list(self.envs)
        return pack_json(MSG_HELLO, body)

    @classmethod
    def unpack(cls, body: Any) -> Hello:
        """The hello in a JSON body.

        Raises:
            ValueError: If it is not a hello (a foreign or corrupt peer).
        """
        try:
            fps = body.get("fps")
            return cls(
                token=str(body.get("token", "")),
                name=str(body.get("name", "a producer")),
                envs=tuple(int(e) for e in body["envs"]),
                pid=int(body.get("pid") or 0),
                fps=None if fps is None else float(fps),
                drop=bool(body.get("drop")),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed hello: {exc}") from None


def pack_end(record: dict[str, Any]) -> bytes:
    """``E``: an episode ended; ``record`` holds its manifest fields."""
    return pack_json(MSG_END, record)


@dataclass(frozen=True)
class Endpoint:
    """Where and how producers reach a running encoder; small and picklable.

    Attributes:
        address: The listening socket's address.
        token: A secret a producer must present in its hello.
        transport: How producers send frames by default (drop mode, ring
            slots, timeout), from the recorder's config; a producer may
            override each.
        shards: With several encoder processes, the ``(address, token)`` of
            each; env ``e`` belongs to shard ``e % len(shards)``, and
            :meth:`for_env` picks its endpoint. Empty with one encoder.
    """

    address: str
    token: str
    transport: TransportConfig = field(default_factory=TransportConfig)
    shards: tuple[tuple[str, str], ...] = ()

    def shard_of(self, env: int) -> int:
        """The encoder shard that records env ``env`` (always 0 with one encoder)."""
        return int(env) % len(self.shards) if self.shards else 0

    def for_env(self, env: int) -> Endpoint:
        """The endpoint of the encoder that records env ``env``."""
        if not self.shards:
            return self
        address, token = self.shards[self.shard_of(env)]
        return Endpoint(address, token, self.transport)


def pack_json(kind: int, payload: dict[str, Any]) -> bytes:
    """Frame a JSON message: type byte, length, UTF-8 body."""
    body = json.dumps(payload, separators=(",", ":"), allow_nan=True).encode()
    return bytes([kind]) + _LEN.pack(len(body)) + body


def listen() -> tuple[socket.socket, str, str | None]:
    """Open the encoder's listening socket.

    Returns:
        The socket, its address, and a private folder to remove at close (None
        for an abstract address).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    folder = None
    try:
        if sys.platform.startswith("linux"):
            address = f"\0rlcapture-{os.getpid()}-{secrets.token_hex(8)}"
        else:
            folder = tempfile.mkdtemp(prefix="rlcapture-")
            address = os.path.join(folder, "encoder.sock")
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return sock, address, folder


def connect(address: str, timeout: float) -> socket.socket:
    """Connect to an encoder; raises ``OSError`` if nothing listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def peer_uid_ok(sock: socket.socket) -> bool:
    """Whether the peer runs as our user (Linux); True where it cannot be told."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return True  # the socket file's 0700 folder keeps other users out
    creds = sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


class MessageReader:
    """Splits a producer's byte stream into messages (encoder side).

    Descriptors received with ``SCM_RIGHTS`` are queued in arrival order and
    handed to the ``M`` messages in the same order.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.fds: list[int] = []

    def feed(self, data: bytes, fds: list[int]) -> None:
        self._buf += data
        self.fds.extend(fds)

    def messages(self) -> list[tuple[int, Any]]:
        """Return the complete messages received so far, in order.

        Bodies: a :class:`FrameTag` (``F``), a :class:`RingMap` (``M``, its
        descriptor next in :attr:`fds`), the decoded JSON (``H``, read with
        :meth:`Hello.unpack`; ``E``, the episode's record), None (``B``).

        Raises:
            ValueError: On an unknown message type (a corrupt or foreign peer).
        """
        out: list[tuple[int, Any]] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        while pos < n:
            kind = buf[pos]
            size = _FIXED.get(kind)
            if size is not None:
                if n - pos - 1 < size:
                    break
                if kind == MSG_FRAME:
                    out.append((kind, _new(FrameTag, FRAME.unpack_from(buf, pos + 1))))
                elif kind == MSG_MAP:
                    out.append((kind, _new(RingMap, MAP.unpack_from(buf, pos + 1))))
                else:
                    out.append((kind, None))
                pos += 1 + size
            elif kind in (MSG_HELLO, MSG_END):
                if n - pos - 1 < _LEN.size:
                    break
                (length,) = _LEN.unpack_from(buf, pos + 1)
                start = pos + 1 + _LEN.size
                if n - start < length:
                    break
                out.append((kind, json.loads(bytes(buf[start : start + length]))))
                pos = start + length
            else:
                raise ValueError(f"unknown message type {kind!r} from a producer")
        del buf[:pos]
        return out
