"""Finished files copied from an actor's node to the driver's folder, in chunks, through Ray.

Used in stream mode (:mod:`.storage`). A file is read by the actor that wrote
it, ``chunk`` bytes per call (:meth:`.actor.EvalActor.read`), and written by
the driver at its offset into ``NAME.part``, renamed to ``NAME`` once every
byte is in: a file in the output folder is always whole. Only a few chunk
calls are in flight at once over the whole cluster (``window``), so the
object store holds at most ``window * chunk`` bytes of video at any time
whatever the size of the files, and the driver's memory stays flat.

An episode's files are fetched only when the keep rules keep it; an episode
whose actor dies before its files are in is run again (its partial ``.part``
files are removed).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_CHUNK", "DEFAULT_WINDOW", "FileCopy", "Transfers"]

#: Bytes per chunk call: large enough that Ray's per-call cost (about 1 ms) is
#: small against the copy, small enough to bound the object store's share.
DEFAULT_CHUNK = 4 << 20
#: Chunk calls in flight over the whole cluster.
DEFAULT_WINDOW = 8


@dataclass
class FileCopy:
    """One file being copied: ``remote`` on the actor's node to ``local`` here."""

    key: Any  # whose file this is (the driver's episode key)
    actor: int
    remote: str
    local: str
    size: int
    next_offset: int = 0
    received: int = 0
    fd: int = -1

    @property
    def part(self) -> str:
        return self.local + ".part"

    def open(self) -> None:
        os.makedirs(os.path.dirname(self.local), mode=0o700, exist_ok=True)
        self.fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)

    def write(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view = view[written:]
            offset += written
        self.received += len(data)

    @property
    def complete(self) -> bool:
        return self.received >= self.size

    def commit(self) -> None:
        """Close and rename into place."""
        self._close()
        os.replace(self.part, self.local)

    def discard(self) -> None:
        self._close()
        try:
            os.unlink(self.part)
        except FileNotFoundError:
            pass

    def _close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


@dataclass
class Transfers:
    """Every pending copy, handing out chunk requests under one window.

    The driver asks :meth:`requests` for (copy, offset, length) to submit as
    actor calls, and gives each answer to :meth:`received`.
    """

    chunk: int = DEFAULT_CHUNK
    window: int = DEFAULT_WINDOW
    queue: deque[FileCopy] = field(default_factory=deque)
    in_flight: int = 0
    bytes: int = 0
    chunks: int = 0
    files: int = 0

    def add(self, copy: FileCopy) -> None:
        copy.open()
        if copy.size == 0:
            copy.commit()
            self.files += 1
            return
        self.queue.append(copy)

    def requests(self) -> Iterator[tuple[FileCopy, int, int]]:
        """Chunk calls to start now (the window permitting)."""
        while self.in_flight < self.window and self.queue:
            copy = self.queue[0]
            offset = copy.next_offset
            length = min(self.chunk, copy.size - offset)
            copy.next_offset += length
            if copy.next_offset >= copy.size:
                self.queue.popleft()
            self.in_flight += 1
            yield copy, offset, length

    def received(self, copy: FileCopy, offset: int, data: bytes, length: int) -> bool:
        """A chunk came back; returns True when it completed its file (then renamed)."""
        self.in_flight -= 1
        if len(data) != length:
            raise OSError(f"{copy.remote}: expected {length} bytes at {offset}, got {len(data)}")
        copy.write(offset, data)
        self.bytes += len(data)
        self.chunks += 1
        if copy.complete:
            copy.commit()
            self.files += 1
            return True
        return False

    def failed(self) -> None:
        """A chunk call failed (its actor died): it is no longer in flight."""
        self.in_flight -= 1

    def drop(self, actor: int) -> list[FileCopy]:
        """Forget the queued copies from ``actor`` (it died); returns them, discarded."""
        lost = [c for c in self.queue if c.actor == actor]
        self.queue = deque(c for c in self.queue if c.actor != actor)
        for c in lost:
            c.discard()
        return lost
