"""The actors of one run: spawned, replaced, called, watched and stopped; nothing of episodes.

As RLlib's ``FaultTolerantActorManager`` keeps each actor's health apart from
what the algorithm does with its results, the fleet knows where each actor is
in its life (:class:`ActorState`), which of its calls are in flight (one
table keyed by the call's ``ObjectRef``, each entry a :class:`Call` of a
:class:`CallKind`), and when an actor is overdue; the driver (:mod:`.driver`)
says what an answer means for the evaluation, and the collector
(:mod:`.collector`) what becomes of its episodes.

An actor's life::

    STARTING --hello--> PREPARING --prepare--> IDLE <--task ended-- BUSY
        |                   |                   +------start------->  |
        +-------------------+----------> DEAD <-----------------------+

Any state but DEAD may end in DEAD (the actor's process or node died, it
answered nothing in time, or the run stopped); DEAD is final. A move the
diagram does not draw is a bug of the driver, and raises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .actor import EvalActor
from .plan import Task
from .replies import Hello
from .transfer import FileCopy

__all__ = ["Actor", "ActorFleet", "ActorState", "Call", "CallKind"]

#: Seconds an actor holds a poll open waiting for an episode to end.
POLL = 1.0
_GONE_WAIT = 10.0  # seconds to wait, at the end, for killed actors' processes to go


class ActorState(Enum):
    """Where an actor is in its life; see the module docstring for the moves."""

    STARTING = "starting"  # asked for: not placed yet, or not answered ``hello``
    PREPARING = "preparing"  # loading the env and the policy
    IDLE = "idle"  # ready for a task
    BUSY = "busy"  # running a task, polled
    DEAD = "dead"  # gone, killed, or stopped: final


_MOVES: dict[ActorState, frozenset[ActorState]] = {
    ActorState.STARTING: frozenset({ActorState.PREPARING, ActorState.DEAD}),
    ActorState.PREPARING: frozenset({ActorState.IDLE, ActorState.DEAD}),
    ActorState.IDLE: frozenset({ActorState.BUSY, ActorState.DEAD}),
    ActorState.BUSY: frozenset({ActorState.IDLE, ActorState.DEAD}),
    ActorState.DEAD: frozenset(),
}


class CallKind(Enum):
    """What a call in flight asked of its actor (the value is how messages name it)."""

    HELLO = "hello"  # where it runs: a Hello
    PREPARE = "prepare"  # load the env and policy: a Prepared
    START = "start"  # start a task: its folder
    POLL = "poll"  # episodes ended since the last poll: a Polled
    CHUNK = "chunk"  # bytes of a file (stream mode)
    REMOVE = "remove"  # delete a task folder or the run's scratch: None


@dataclass(frozen=True)
class Call:
    """One call in flight: its kind, its actor, and for a chunk what it reads."""

    kind: CallKind
    actor: int
    chunk: tuple[FileCopy, int, int] | None = None  # (copy, offset, length)


@dataclass
class Actor:
    """One actor's health and what it runs.

    Attributes:
        index: Its number in the run (replacements get the next ones).
        handle: Its Ray actor handle.
        since: When it was asked for (``time.monotonic()``), for the start timeout.
        state: Where it is in its life; changed only through :meth:`move`.
        info: Where it runs (None until it answered ``hello``).
        task: The task it runs (kept after its death, to salvage and re-queue).
        folder: The folder of its current task on its node.
        polled: When its outstanding poll (or its task's start) was sent.
        shared: Its tasks write into the output folder's staging folder.
        stale: Its finished tasks' folders whose files are still on their way.
    """

    index: int
    handle: Any
    since: float
    state: ActorState = ActorState.STARTING
    info: Hello | None = None
    task: Task | None = None
    folder: str = ""
    polled: float = 0.0
    shared: bool = False
    stale: list[str] = field(default_factory=list)

    def name(self) -> str:
        """``actor 3 on node 1a2b3c4d5e6f (10.0.0.3, pid 4242)``, or ``actor 3`` before it said where."""
        return f"actor {self.index} {self.info.where()}" if self.info else f"actor {self.index}"

    @property
    def node(self) -> str:
        """The first 12 characters of its node's id ("" before it said where)."""
        return self.info.node[:12] if self.info else ""

    @property
    def alive(self) -> bool:
        return self.state is not ActorState.DEAD

    def greeted(self, info: Hello) -> None:
        """It said where it runs: it prepares next."""
        self.move(ActorState.PREPARING)
        self.info = info

    def ready(self, shared: bool) -> None:
        """It loaded the env and the policy: it takes tasks now."""
        self.move(ActorState.IDLE)
        self.shared = shared

    def finished(self) -> None:
        """Its task ended: it takes the next one."""
        self.move(ActorState.IDLE)
        self.task = None

    def move(self, to: ActorState) -> ActorState:
        """Go to state ``to``; returns the state it left.

        Raises:
            RuntimeError: The module docstring's diagram has no such move.
        """
        was = self.state
        if to not in _MOVES[was]:
            raise RuntimeError(f"actor {self.index}: no move from {was.value} to {to.value}")
        self.state = to
        return was


class ActorFleet:
    """The run's actors and their calls in flight; the one place that touches their handles.

    Args:
        ray: The ``ray`` module, connected.
        run_id: The run's id (actors are named ``rlcapture-RUN-INDEX``).
        num_cpus: CPUs each actor reserves.
        size: Actors the run asks for; up to ``2 * size`` replacements follow.
        timeout: Seconds a busy actor may leave a poll unanswered.
        start_timeout: Seconds an actor may take to be placed and ready.
    """

    def __init__(
        self, ray: Any, run_id: str, num_cpus: float, size: int, timeout: float, start_timeout: float
    ) -> None:
        self.ray = ray
        self.run_id = run_id
        self.num_cpus = num_cpus
        self.size = size
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.actors: dict[int, Actor] = {}
        self.calls: dict[Any, Call] = {}  # ObjectRef -> what it answers
        self.replacements = 0
        self._cls = ray.remote(EvalActor)
        self._gone = (
            ray.exceptions.RayActorError,
            ray.exceptions.ObjectLostError,
            ray.exceptions.NodeDiedError,
        )

    # -- actors ---------------------------------------------------------------------
    def spawn(self) -> Actor:
        """Ask for one more actor, and for its ``hello``."""
        index = len(self.actors)
        handle = self._cls.options(
            num_cpus=self.num_cpus,
            max_concurrency=4,
            max_restarts=0,
            scheduling_strategy="SPREAD",
            name=self._name(index),
        ).remote(index)
        actor = Actor(index, handle, time.monotonic())
        self.actors[index] = actor
        self._call(actor, CallKind.HELLO, handle.hello.remote())
        return actor

    def replace(self) -> Actor | None:
        """A new actor for one that died, while the replacements allowed last."""
        if self.replacements >= 2 * self.size:
            return None
        self.replacements += 1
        return self.spawn()

    def live(self) -> list[Actor]:
        return [a for a in self.actors.values() if a.alive]

    def idle(self) -> list[Actor]:
        return [a for a in self.actors.values() if a.state is ActorState.IDLE]

    def kill(self, actor: Actor) -> ActorState | None:
        """Kill ``actor`` and mark it dead; returns the state it was in (None: it already was)."""
        if not actor.alive:
            return None
        was = actor.move(ActorState.DEAD)
        self._kill(actor)
        return was

    def kill_all(self) -> None:
        """Kill every live actor (Ctrl-C): its encoders close the videos they hold."""
        for actor in self.live():
            self.kill(actor)

    def overdue(self, now: float) -> list[tuple[Actor, str, bool]]:
        """Actors that missed their deadline: (actor, why, retire), ``retire`` when not to replace it.

        An actor not placed or not ready in ``start_timeout`` is not replaced
        (the cluster lacks the room for it); a busy one silent for ``timeout``
        after its poll's own wait is.
        """
        late = []
        for actor in self.actors.values():
            if actor.state in (ActorState.STARTING, ActorState.PREPARING):
                if now - actor.since > self.start_timeout:
                    why = f"not placed or not ready after {self.start_timeout:g} s (cluster CPUs busy?)"
                    late.append((actor, why, True))
            elif actor.state is ActorState.BUSY and actor.polled and now - actor.polled > self.timeout + POLL:
                late.append((actor, f"no answer for {self.timeout:g} s", False))
        return late

    # -- calls ----------------------------------------------------------------------
    def prepare(self, actor: Actor, blob: bytes, staging: str, token: str, scratch: str) -> None:
        self._call(actor, CallKind.PREPARE, actor.handle.prepare.remote(blob, staging, token, scratch))

    def start(self, actor: Actor, task: Task, root: str) -> None:
        """Give ``task`` to an idle actor; the start counts as a poll for liveness."""
        actor.move(ActorState.BUSY)
        actor.task = task
        actor.polled = time.monotonic()
        self._call(actor, CallKind.START, actor.handle.start.remote(task.id, task.seeds, root))

    def poll(self, actor: Actor) -> None:
        actor.polled = time.monotonic()
        self._call(actor, CallKind.POLL, actor.handle.poll.remote(POLL))

    def read(self, actor: Actor, copy: FileCopy, offset: int, length: int) -> None:
        call = actor.handle.read.remote(copy.remote, offset, length)
        self._call(actor, CallKind.CHUNK, call, (copy, offset, length))

    def remove(self, actor: Actor, path: str) -> None:
        self._call(actor, CallKind.REMOVE, actor.handle.remove.remote(path))

    def outstanding(self) -> list[Any]:
        return list(self.calls)

    def ready(self, timeout: float) -> list[Any]:
        """The calls answered, waiting up to ``timeout`` s for the first."""
        refs = list(self.calls)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        return ready

    def pop(self, ref: Any) -> Call:
        """The call ``ref`` answered, out of the table."""
        return self.calls.pop(ref)

    def get(self, ref: Any) -> Any:
        """The value of an answered call.

        Raises:
            Exception: What the call raised (see :meth:`gone`).
        """
        return self.ray.get(ref, timeout=self.timeout)

    def gone(self, exc: BaseException) -> bool:
        """Whether a call failed because its actor, or the node holding its answer, is gone."""
        return isinstance(exc, self._gone)

    # -- the end ----------------------------------------------------------------------
    def stop(self, scratch: str) -> None:
        """Remove each live actor's node-local scratch, kill every actor, wait until they are gone."""
        removals = [
            a.handle.remove.remote(scratch)
            for a in self.actors.values()
            if a.state in (ActorState.IDLE, ActorState.BUSY) and not a.shared
        ]
        if removals:
            try:
                self.ray.wait(removals, num_returns=len(removals), timeout=self.timeout)
            except Exception:  # noqa: BLE001 - best effort: a dead actor's scratch went with it
                pass
        for actor in self.actors.values():
            self._kill(actor)
        self._wait_gone()

    def _wait_gone(self) -> None:
        """Wait (bounded) until the killed actors' processes are gone."""
        deadline = time.monotonic() + _GONE_WAIT
        names = {self._name(index) for index in self.actors}
        while time.monotonic() < deadline:
            if not any(self._alive(n) for n in names):
                return
            time.sleep(0.1)

    def _alive(self, name: str) -> bool:
        try:
            self.ray.get_actor(name)
        except ValueError:
            return False
        return True

    def _kill(self, actor: Actor) -> None:
        try:
            self.ray.kill(actor.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _call(self, actor: Actor, kind: CallKind, ref: Any, chunk: tuple[FileCopy, int, int] | None = None) -> None:
        self.calls[ref] = Call(kind, actor.index, chunk)

    def _name(self, index: int) -> str:
        return f"rlcapture-{self.run_id}-{index}"
