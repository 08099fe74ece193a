"""The actor fleet's bookkeeping without a cluster: states, calls in flight, deadlines, replacements.

A stand-in for the ``ray`` module records what the fleet asks of Ray; its
object refs are plain objects (dict keys, as ``ObjectRef`` s are). What Ray
itself does with actors is tested on a real cluster in ``test_ray.py``.
"""

from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import Any

import pytest

from rlcapture._backend.remote_error import capture
from rlcapture.cluster.fleet import POLL, Actor, ActorFleet, ActorState, CallKind
from rlcapture.cluster.plan import Task
from rlcapture.cluster.replies import Finished, Hello, Polled, Prepared
from rlcapture.cluster.transfer import FileCopy
from rlcapture.errors import EnvError


class _Ref:
    """An object ref: what a remote call returns, hashable, answered by nothing here."""

    def __init__(self, method: str, args: tuple[Any, ...]) -> None:
        self.method, self.args = method, args


class _Method:
    def __init__(self, handle: _Handle, name: str) -> None:
        self.handle, self.name = handle, name

    def remote(self, *args: Any) -> _Ref:
        ref = _Ref(self.name, args)
        self.handle.sent.append(ref)
        return ref


class _Handle:
    def __init__(self, index: int, options: dict[str, Any]) -> None:
        self.index, self.options = index, options
        self.sent: list[_Ref] = []

    def __getattr__(self, name: str) -> _Method:
        return _Method(self, name)


class _ActorError(Exception):
    pass


class _FakeRay:
    """What the fleet uses of ``ray``: remote classes, kill, get_actor, wait, the error classes."""

    def __init__(self) -> None:
        self.killed: list[int] = []
        self.exceptions = SimpleNamespace(RayActorError=_ActorError, ObjectLostError=_ActorError, NodeDiedError=_ActorError)
        self.waited: list[list[Any]] = []

    def remote(self, cls: type) -> Any:
        def options(**kw: Any) -> Any:
            return SimpleNamespace(remote=lambda index: _Handle(index, kw))

        return SimpleNamespace(options=options)

    def kill(self, handle: _Handle, no_restart: bool) -> None:
        assert no_restart
        self.killed.append(handle.index)

    def get_actor(self, name: str) -> None:
        raise ValueError(name)  # every killed actor is gone at once

    def wait(self, refs: list[Any], num_returns: int, timeout: float) -> tuple[list[Any], list[Any]]:
        self.waited.append(list(refs))
        return list(refs), []


def fleet(size: int = 2, timeout: float = 5.0, start_timeout: float = 30.0) -> tuple[ActorFleet, _FakeRay]:
    ray = _FakeRay()
    return ActorFleet(ray, "abcd", 1.0, size, timeout, start_timeout), ray


def test_a_spawned_actor_starts_and_says_hello():
    f, _ = fleet()
    actor = f.spawn()
    assert actor.index == 0 and actor.state is ActorState.STARTING and actor.alive
    assert actor.handle.options["name"] == "rlcapture-abcd-0" and actor.handle.options["max_restarts"] == 0
    (ref,) = f.calls
    assert ref.method == "hello" and f.calls[ref].kind is CallKind.HELLO and f.calls[ref].actor == 0
    assert actor.name() == "actor 0" and actor.node == ""


def test_an_actor_goes_through_its_life_and_calls_are_filed_by_kind():
    f, _ = fleet()
    actor = f.spawn()
    f.pop(next(iter(f.calls)))
    actor.greeted(Hello("0123456789abcdef", "10.0.0.3", "host", 42))
    assert actor.state is ActorState.PREPARING
    assert actor.name() == "actor 0 on node 0123456789ab (10.0.0.3, pid 42)" and actor.node == "0123456789ab"
    f.prepare(actor, b"blob", "/staging", "token", "/scratch")
    actor.ready(shared=True)
    assert actor.state is ActorState.IDLE and actor.shared and f.idle() == [actor]
    task = Task(7, [1, 2])
    f.start(actor, task, "/root")
    assert actor.state is ActorState.BUSY and actor.task is task and actor.polled > 0 and f.idle() == []
    f.poll(actor)
    copy = FileCopy(0, 0, "/remote/v.mp4", "/local/v.mp4", 10)
    f.read(actor, copy, 0, 10)
    f.remove(actor, "/root/task")
    kinds = [(ref.method, call.kind) for ref, call in f.calls.items()]
    assert kinds == [("prepare", CallKind.PREPARE), ("start", CallKind.START), ("poll", CallKind.POLL),
                     ("read", CallKind.CHUNK), ("remove", CallKind.REMOVE)]  # fmt: skip
    chunk = next(c for c in f.calls.values() if c.kind is CallKind.CHUNK)
    assert chunk.chunk == (copy, 0, 10)
    start = next(r for r in f.calls if r.method == "start")
    assert start.args == (7, [1, 2], "/root")
    assert f.pop(start).kind is CallKind.START and start not in f.calls
    actor.finished()
    assert actor.state is ActorState.IDLE and actor.task is None


@pytest.mark.parametrize(
    ("path", "to"),
    [
        ([], ActorState.BUSY),  # a task before it is ready
        ([], ActorState.IDLE),
        ([ActorState.PREPARING], ActorState.BUSY),
        ([ActorState.PREPARING, ActorState.IDLE], ActorState.PREPARING),
        ([ActorState.DEAD], ActorState.IDLE),  # dead is final
        ([ActorState.DEAD], ActorState.DEAD),
    ],
)
def test_a_move_the_diagram_does_not_draw_raises(path, to):
    actor = Actor(3, None, 0.0)
    for state in path:
        actor.move(state)
    with pytest.raises(RuntimeError, match=f"actor 3: no move from {actor.state.value} to {to.value}"):
        actor.move(to)


def test_a_kill_marks_dead_once_and_says_what_it_was():
    f, ray = fleet()
    a, b = f.spawn(), f.spawn()
    a.greeted(Hello("n", "ip", "h", 1))
    assert f.kill(a) is ActorState.PREPARING
    assert a.state is ActorState.DEAD and not a.alive and ray.killed == [0]
    assert f.kill(a) is None and ray.killed == [0]  # already dead: nothing more
    assert f.live() == [b]
    f.kill_all()
    assert f.live() == [] and ray.killed == [0, 1]


def test_overdue_actors_are_named_with_why_and_whether_to_replace():
    f, _ = fleet(timeout=5.0, start_timeout=30.0)
    starting, busy, idle = f.spawn(), f.spawn(), f.spawn()
    for actor in (busy, idle):
        actor.greeted(Hello("n", "ip", "h", 1))
        actor.ready(shared=False)
    f.start(busy, Task(0, [1]), "/root")
    starting.since = busy.polled = idle.since = 100.0
    assert f.overdue(100.0 + 5.0 + POLL) == []  # a busy actor's poll waits POLL itself
    late = f.overdue(100.0 + 5.0 + POLL + 0.1)
    assert late == [(busy, "no answer for 5 s", False)]
    late = f.overdue(100.0 + 30.1)
    assert (starting, "not placed or not ready after 30 s (cluster CPUs busy?)", True) in late
    assert idle not in [a for a, _, _ in late]
    f.kill(busy)
    assert busy not in [a for a, _, _ in f.overdue(1e9)]  # the dead are not watched


def test_replacements_are_bounded_by_twice_the_fleet():
    f, _ = fleet(size=2)
    f.spawn()
    f.spawn()
    replaced = [f.replace() for _ in range(5)]
    assert [a.index for a in replaced if a is not None] == [2, 3, 4, 5]
    assert replaced[4] is None and len(f.actors) == 6


def test_ready_waits_on_every_call_in_flight_and_gone_knows_rays_errors():
    f, ray = fleet()
    f.spawn()
    f.spawn()
    refs = list(f.calls)
    assert f.ready(POLL) == refs and ray.waited[-1] == refs
    assert f.gone(_ActorError("node died")) and not f.gone(ValueError("a bug"))


def test_stop_cleans_the_scratch_of_live_streaming_actors_and_kills_all():
    f, ray = fleet(size=3)
    streaming, shared, dead = f.spawn(), f.spawn(), f.spawn()
    for actor, is_shared in ((streaming, False), (shared, True), (dead, False)):
        actor.greeted(Hello("n", "ip", "h", 1))
        actor.ready(is_shared)
    f.kill(dead)
    f.stop("/tmp/scratch-run")
    removals = {a.index: [r.args for r in a.handle.sent if r.method == "remove"] for a in f.actors.values()}
    assert removals == {0: [("/tmp/scratch-run",)], 1: [], 2: []}
    assert sorted(ray.killed) == [0, 1, 2, 2]  # the dead one's kill again is harmless


def test_replies_cross_processes_by_pickle():
    error = capture(EnvError("no display"))
    polled = Polled(3, "/task", [Finished({"seed": 1}, [("videos/a.mp4", 10)])], True, error)
    back = pickle.loads(pickle.dumps(polled))
    assert back.episodes[0].record == {"seed": 1} and back.episodes[0].files == [("videos/a.mp4", 10)]
    assert back.done and back.error.kind == "EnvError" and back.task == 3
    assert pickle.loads(pickle.dumps(Prepared(True, None))) == Prepared(True)
    hello = Hello("0123456789abcdef", "10.0.0.3", "h", 7)
    assert pickle.loads(pickle.dumps(hello)) == hello
