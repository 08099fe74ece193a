"""What an actor answers the driver: one dataclass per call, fields by name.

The actor (:mod:`.actor`) returns these through Ray (they pickle as any
module-level dataclass), and the driver reads each field by name, so a reply
is never a dict whose keys both sides must spell alike. A chunk of a file
(:meth:`.actor.EvalActor.read`) stays plain ``bytes``: Ray moves it zero-copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._backend.remote_error import RemoteError

__all__ = ["Finished", "Hello", "Polled", "Prepared"]


@dataclass(frozen=True)
class Hello:
    """Where an actor runs: its answer to ``hello``.

    Attributes:
        node: The Ray node id.
        ip: The node's address.
        host: The node's host name.
        pid: The actor's process id.
    """

    node: str
    ip: str
    host: str
    pid: int

    def where(self) -> str:
        """``on node 1a2b3c4d5e6f (10.0.0.3, pid 4242)``: how messages name the actor's place."""
        return f"on node {self.node[:12]} ({self.ip}, pid {self.pid})"


@dataclass(frozen=True)
class Prepared:
    """The answer to ``prepare``: whether the node sees the output folder, and what it lacks.

    Attributes:
        shared: The node reads the run's token in the driver's staging folder.
        error: One line saying what the node lacks (the env's package, an
            unknown env id); None when the env and policy loaded.
    """

    shared: bool
    error: str | None = None


@dataclass
class Finished:
    """One episode a task finished: its manifest line and the files that line names.

    Attributes:
        record: The line as the task's evaluate wrote it.
        files: (path relative to the task's folder, size) of each file the
            line names; None when not listed yet (a line read on the driver
            from a shared task folder).
    """

    record: dict[str, Any]
    files: list[tuple[str, int]] | None = None


@dataclass(frozen=True)
class Polled:
    """The answer to ``poll``: the episodes that ended since the last one, and the task's state.

    Attributes:
        task: The task's id (None before the first task).
        folder: The task's folder on the actor's node.
        episodes: The episodes that ended since the last poll.
        done: The task has ended; no episode follows this reply.
        error: How the task failed (only when ``done``); None when it ran through.
    """

    task: int | None
    folder: str
    episodes: list[Finished] = field(default_factory=list)
    done: bool = False
    error: RemoteError | None = None
