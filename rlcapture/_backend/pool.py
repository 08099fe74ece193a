"""The worker processes of a vector env, and the pipes to them.

This file knows processes, not envs: it starts the workers, sends each a
message, waits for the replies of several at once, and stops them. Every wait
watches each worker's sentinel and a deadline and, about once a second, calls
back (the recorder's check of its encoders), so a dead or stuck process turns
into an error naming it and its exit status, never a hang.

What a reply means, and what losing a worker does to its envs (raise, or take
them out with ``on_error="continue"``), is the vector env's business: it
passes ``on_reply`` and ``on_lost``.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import StepTimeoutError, WorkerError
from .messages import Close, Message, Render, encode
from .procs import describe_exit, stop_process, wait
from .worker import WorkerSpec, worker_main

__all__ = ["WorkerPool"]

_RENDER = encode(Render())
#: Longest single wait, so the idle check runs about once a second.
_POLL_S = 1.0


class WorkerPool:
    """Worker ``w`` runs ``specs[w]`` (:meth:`start`); no process runs before that.

    Args:
        on_reply: ``on_reply(w, raw)``: what a reply's bytes mean.
        on_lost: ``on_lost(w, error)``: a worker died or did not answer in
            time; raises, or takes its envs out and returns.
        on_idle: Called while waiting when no reply came for a second.

    The three are bound methods of the vector env, held weakly: the pool does
    not keep its vector env alive, so one dropped without ``close()`` is
    still finalized (and closes its workers) at once.
    """

    def __init__(
        self,
        on_reply: Callable[[int, bytes], Any],
        on_lost: Callable[[int, WorkerError], None],
        on_idle: Callable[[], None],
    ) -> None:
        self._on_reply = weakref.WeakMethod(on_reply)  # type: ignore[arg-type]
        self._on_lost = weakref.WeakMethod(on_lost)  # type: ignore[arg-type]
        self._on_idle = weakref.WeakMethod(on_idle)  # type: ignore[arg-type]
        self.procs: list[Any] = []
        self.conns: list[Any] = []
        self.first_envs: list[int] = []  # each worker's first env index, for messages
        self.dead: set[int] = set()  # taken out (on_error="continue")
        self.owed: set[int] = set()  # sent a message whose reply has not been read

    def start(self, ctx: Any, specs: Sequence[WorkerSpec]) -> None:
        """Start one process per spec (the first reply of each is read by the caller)."""
        for w, spec in enumerate(specs):
            self.first_envs.append(spec.env_indices[0])
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(spec, child, parent),
                name=f"rlcapture-worker-{w}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)

    def on_lost(self, w: int, error: WorkerError) -> None:
        _alive(self._on_lost)(w, error)

    def on_idle(self) -> None:
        _alive(self._on_idle)()

    # -- who is who ---------------------------------------------------------------
    def env_of(self, w: int) -> int:
        """The index of worker ``w``'s first env."""
        return self.first_envs[w]

    def live(self) -> list[int]:
        """Workers started and not taken out."""
        return [w for w in range(len(self.procs)) if w not in self.dead]

    def owed_live(self) -> list[int]:
        """Live workers whose reply to the last message is still to be read."""
        return sorted(self.owed - self.dead)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    # -- messages -----------------------------------------------------------------
    def send(self, w: int, message: Message) -> None:
        try:
            self.conns[w].send_bytes(encode(message))
            self.owed.add(w)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.on_lost(w, self.died(w))

    def release_renders(self, workers: Sequence[int]) -> None:
        """Tell workers holding a step's frames that every worker has answered."""
        for w in workers:
            try:
                self.conns[w].send_bytes(_RENDER)
            except OSError:
                pass  # a dead worker is noticed on the next step

    def receive_all(self, workers: Sequence[int], timeout: float | None = None) -> dict[int, Any]:
        """One reply from each of ``workers`` (``on_reply``'s value; None for a lost worker)."""
        pending = {self.conns[w]: w for w in workers}
        sentinels = {self.procs[w].sentinel: w for w in workers}
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: dict[int, Any] = {}
        on_reply = _alive(self._on_reply)  # resolved once per wait, not once per reply
        while pending:
            left = _POLL_S if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait(
                list(pending) + [s for s, w in sentinels.items() if w not in replies],
                min(_POLL_S, left),
            )
            for obj in ready:
                if obj in pending:
                    w = pending.pop(obj)
                    self.owed.discard(w)
                    try:
                        raw = obj.recv_bytes()
                    except (EOFError, OSError):
                        replies[w] = None
                        self.on_lost(w, self.died(w))
                        continue
                    replies[w] = on_reply(w, raw)
            for obj in ready:
                w = sentinels.get(obj)  # type: ignore[arg-type]
                # A worker that exited after its last reply is read above;
                # one that exited with nothing left in its pipe is lost.
                if (
                    w is not None
                    and w not in replies
                    and self.conns[w] in pending
                    and not self.conns[w].poll()
                ):
                    pending.pop(self.conns[w])
                    replies[w] = None
                    self.on_lost(w, self.died(w))
            if not ready:
                self.on_idle()
                if deadline is not None and time.monotonic() >= deadline:
                    assert timeout is not None
                    for conn, w in list(pending.items()):
                        pending.pop(conn)
                        replies[w] = None
                        self.on_lost(w, self.timed_out(w, timeout))
        return replies

    # -- ends ---------------------------------------------------------------------
    def died(self, w: int) -> WorkerError:
        """The error for worker ``w``'s death, with its exit status."""
        proc = self.procs[w]
        proc.join(1.0)
        return WorkerError(
            f"the worker of env {self.env_of(w)} (pid {proc.pid}) died: "
            f"{describe_exit(proc.exitcode)}",
            self.env_of(w),
            proc.exitcode,
        )

    def timed_out(self, w: int, timeout: float) -> StepTimeoutError:
        return StepTimeoutError(
            f"env {self.env_of(w)} did not answer within {timeout:g} s "
            f"(worker pid {self.procs[w].pid}); is it stuck?",
            self.env_of(w),
            None,
        )

    def take_out(self, w: int) -> None:
        """Kill worker ``w`` if it still runs, and never talk to it again."""
        proc = self.procs[w]
        if proc.exitcode is None:
            proc.kill()
            proc.join(2.0)
        self.dead.add(w)

    def stop(self, timeout: float) -> None:
        """Ask every live worker to close (ending its videos), then make sure each is gone."""
        for w, conn in enumerate(self.conns):
            if self.procs[w].is_alive():
                try:
                    conn.send_bytes(encode(Close()))
                except OSError:
                    pass
        deadline = time.monotonic() + timeout
        for conn in self.conns:
            try:
                if conn.poll(max(0.0, deadline - time.monotonic())):
                    conn.recv_bytes()
            except (EOFError, OSError):
                pass
        for proc in self.procs:
            stop_process(proc, max(0.1, deadline - time.monotonic()))
        for conn in self.conns:
            conn.close()
        self.conns = []


def _alive(ref: weakref.WeakMethod) -> Callable[..., Any]:  # type: ignore[type-arg]
    method = ref()
    if method is None:
        raise ReferenceError("the vector env of these workers is gone")
    return method
