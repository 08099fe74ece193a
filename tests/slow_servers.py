"""Tracker servers that never answer or crawl, on 127.0.0.1, for the uploads' promises.

A tracker that is down refuses at once; the worse cases are a server that
accepts the connection and then says nothing (a hung proxy, a stuck load
balancer) and one that answers one byte a second (a saturated link). An HTTP
client's read timeout fires on silence, not on slowness, so the crawling
server keeps a request alive for as long as its answer lasts: a minute and
more for a few dozen bytes. Both are used by ``tests/test_trackers.py`` (the
recording ends within the upload timeout, and what was not sent is named) and
by ``benchmarks/bench_hanging_tracker.py`` (steps/s beside them).
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

__all__ = ["SlowServer", "KINDS"]

#: ``hang``: accepts, reads, never answers. ``crawl``: a valid JSON answer, one byte a second.
KINDS = ("hang", "crawl")

_BODY = b'{"experiment": {"experiment_id": "1", "name": "rlcapture", "lifecycle_stage": "active"}}'
_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_BODY),
    _BODY,
)


class SlowServer:
    """A server on 127.0.0.1 that hangs or crawls on every connection, until closed.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        connections: How many connections it accepted (a client did reach it).
    """

    def __init__(self, kind: str, byte_every: float = 1.0) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.byte_every = byte_every
        self.connections = 0
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name=f"{kind}-server", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return  # closed
            with self._lock:
                self.connections += 1
                self._clients.append(client)
            if self.kind == "crawl":
                threading.Thread(target=self._crawl, args=(client,), daemon=True).start()

    def _crawl(self, client: socket.socket) -> None:
        try:
            client.recv(65536)
            for byte in _ANSWER:
                if self._stop.wait(self.byte_every):
                    return
                client.sendall(bytes([byte]))
        except OSError:
            return

    def close(self) -> None:
        """Stop answering and close every connection (idempotent)."""
        self._stop.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way (Linux)
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except OSError:
                pass
        self._thread.join(5.0)

    def __enter__(self) -> SlowServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def answer_seconds(byte_every: float = 1.0) -> float:
    """How long the crawling server takes to answer one request in full."""
    return len(_ANSWER) * byte_every
