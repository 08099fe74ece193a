"""The pipes' typed messages, a worker's env logic without pipes, and the vector env's states."""

from __future__ import annotations

import pickle
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import read_manifest
from envs_for_tests import Faulty, NoisyEnv
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import create_shared_memory

import rlcapture
from rlcapture._backend import channel, messages
from rlcapture._backend.episode import EndReason
from rlcapture._backend.messages import (
    NOTHING,
    Call,
    Close,
    CloseEncoder,
    EncoderClosed,
    EncoderFailed,
    EncoderReady,
    EnvInfo,
    Error,
    IsWrapped,
    Ok,
    Ready,
    Render,
    Reset,
    SetAttr,
    Step,
    decode,
    encode,
)
from rlcapture._backend.procs import get_context
from rlcapture._backend.remote_error import RemoteTraceback, capture, rebuild
from rlcapture._backend.worker import Shared, WorkerSpec, _error_reply
from rlcapture._backend.worker_envs import EnvFailure, WorkerEnvs
from rlcapture.triggers import as_schedule

pytestmark = pytest.mark.timeout(120)


# -- encode / decode ----------------------------------------------------------------
EXAMPLES = [
    Step(np.arange(6, dtype=np.int64)[2:4]),
    Step([{"a": 1}, (0, 1.5)]),
    Reset([3, None], {"level": 2}),
    Reset([None], None),
    Call("render", (), {}, None),
    Call("seed", (1,), {"x": 2}, [0, 2]),
    SetAttr("speed", [1.0, 2.0], None),
    IsWrapped(gym.wrappers.TimeLimit, [1]),
    Reset([0, 1], {"x": 1}, [True, False]),
    Render(),
    Close(),
    Ready([EnvInfo(gym.spaces.Discrete(2), gym.spaces.Box(0, 1, (3,)), {"render_fps": 30}, "rgb_array", None)]),
    Ok(None),
    Ok([{}, {"episode": {"r": 1.0, "l": 3, "t": 0.1}}], [(1, "RuntimeError: boom")], True),
    Ok([{}], (), False, [np.zeros(2), "text"], [(0, {"r": 1.0, "l": 3, "t": 0.1})]),
    Error(3, capture(rlcapture.FrameError("bad frame"), "Traceback ..."), False),
    EncoderReady("\0rlcapture-1-abc"),
    CloseEncoder(30.0),
    EncoderClosed({"frames": 10, "episodes": 2, "videos": 2}),
    EncoderFailed("writing x.mp4 failed", "Traceback ..."),
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Any) -> None:
    raw = encode(message)
    assert isinstance(raw, bytes)
    back = decode(raw)
    assert type(back) is type(message)
    assert back._fields == message._fields
    for name in message._fields:
        assert _same(getattr(back, name), getattr(message, name)), name


def test_every_message_type_round_trips() -> None:
    """No message type is left out of the examples (or of the codec)."""
    kinds = {type(m) for m in EXAMPLES}
    assert kinds == set(messages._TYPES)
    assert len(set(messages._TAGS.values())) == len(messages._TYPES)


def test_what_pickle_refuses_goes_through_dill() -> None:
    """A spec or info holding a lambda (TransformObservation's func) crosses the pipe."""
    env = gym.wrappers.TransformObservation(
        gym.make("CartPole-v1"), lambda o: o * 2, gym.make("CartPole-v1").observation_space
    )
    back = decode(encode(Ok([{"spec": env.spec, "f": lambda x: x + 1}])))
    assert back.value[0]["f"](1) == 2 and back.value[0]["spec"].id == "CartPole-v1"


def test_nothing_to_report_is_one_constant() -> None:
    """The common answer to a step is never pickled and decodes to the same object."""
    raw = encode(NOTHING)
    assert raw is encode(NOTHING)
    assert decode(raw) is NOTHING
    assert Ok(None, (), False) == NOTHING
    assert decode(encode(Ok(None, (), False))) is NOTHING  # same bytes, same meaning


def test_empty_messages_are_false_but_decode() -> None:
    assert decode(encode(Render())) == Render() and type(decode(encode(Close()))) is Close


@pytest.mark.parametrize(
    "raw",
    [
        pickle.dumps(("step", [0])),  # the old tuple format
        pickle.dumps((0,)),  # a Step without its field
        pickle.dumps((0, [0], "extra")),
        pickle.dumps((99, 1)),
        pickle.dumps((-1, 1)),
        pickle.dumps("hello"),
        pickle.dumps(None),
    ],
)
def test_not_a_message_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not an rlcapture message"):
        decode(raw)


def test_protocol_5_keeps_array_actions_exact() -> None:
    a = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))[1:]
    back = decode(encode(Step(a)))
    assert np.array_equal(back.actions, a) and back.actions.dtype == np.float32


# -- channel bodies -------------------------------------------------------------------
def test_channel_bodies_have_names() -> None:
    tag = channel.FrameTag(slot=3, env=1, episode=2, step=40, height=400, width=600, channels=3)
    ring = channel.RingMap(ring_id=1, slots=8, slot_bytes=720000)
    hello = channel.Hello(token="t" * 32, name="worker 0", envs=(0, 1), pid=12, fps=50.0, drop=True)
    record = {"env": 1, "episode": 2, "end": EndReason.TERMINATED}
    reader = channel.MessageReader()
    reader.feed(hello.pack() + ring.pack() + tag.pack() + channel.pack_end(record) + channel.BYE, [7])
    got = reader.messages()
    assert [kind for kind, _ in got] == [
        channel.MSG_HELLO, channel.MSG_MAP, channel.MSG_FRAME, channel.MSG_END, channel.MSG_BYE,
    ]  # fmt: skip
    assert channel.Hello.unpack(got[0][1]) == hello
    assert type(got[1][1]) is channel.RingMap and got[1][1] == ring and got[1][1].slot_bytes == 720000
    assert type(got[2][1]) is channel.FrameTag and got[2][1] == tag and got[2][1].step == 40
    assert got[3][1] == {"env": 1, "episode": 2, "end": "terminated"}
    assert got[4][1] is None
    assert reader.fds == [7]


@pytest.mark.parametrize(
    "body", [{"token": "t"}, {"token": "t", "envs": "ab"}, {"token": "t", "envs": [0], "fps": "x"}, [1, 2]]
)
def test_malformed_hello_is_a_value_error(body: Any) -> None:
    with pytest.raises(ValueError, match="malformed hello"):
        channel.Hello.unpack(body)


# -- a worker's env logic, without pipes --------------------------------------------
def _worker(rec: rlcapture.Recorder, n: int, **spec: Any) -> WorkerEnvs:
    """A worker object in this process, on real envs and a real encoder; no pipe."""
    ctx = get_context(None)
    env_fns = [partial(NoisyEnv, length=3, side=16)] * n
    space = NoisyEnv(side=16).observation_space
    shared = Shared(
        create_shared_memory(space, n, ctx=ctx), ctx.RawArray("d", n), ctx.RawArray("b", n), ctx.RawArray("b", n)
    )
    options = {
        "index": 0,
        "env_fns": env_fns,
        "first": 0,
        "env_indices": list(range(n)),
        "endpoint": rec.endpoint,
        "schedule": as_schedule("all"),
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "shared": shared,
    }
    options.update(spec)
    return WorkerEnvs(WorkerSpec(**options), None)


def test_worker_env_logic_without_pipes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with rlcapture.Recorder(out) as rec:
        worker = _worker(rec, 2)
        try:
            ready = worker.start()
            assert type(ready) is Ready and len(ready.info) == 2
            assert ready.info[0].metadata["render_fps"] == 30 and ready.info[1].render_mode == "rgb_array"
            reply = worker.reset([7, None], None)
            assert type(reply) is Ok and reply.value == [{}, {}] and not reply.failures
            worker.after_reply()  # renders the first frames
            for _ in range(2):
                assert worker.step(np.zeros(2, np.int64)) is NOTHING  # nothing to report
                worker.after_reply()
            reply = worker.step(np.zeros(2, np.int64))  # the third step ends both episodes
            rewards, terminated, _truncated = worker.spec.shared.views()
            assert terminated.tolist() == [True, True] and rewards.tolist() == [1.0, 1.0]
            assert reply.value is None  # the env's infos, to which nothing is added
            assert [(j, stats["l"]) for j, stats in reply.episodes] == [(0, 3), (1, 3)]
            worker.after_reply()
            assert worker.step(np.zeros(2, np.int64)) is NOTHING  # the autoreset step
            worker.after_reply()
            assert worker.call("length", (), {}, None) == Ok([3, 3])
            assert worker.call("t", (), {}, [1]) == Ok([0])
            assert worker.set_attr("length", [5], [0]) == Ok(None)
            assert worker.call("length", (), {}, None).value == [5, 3]
            with pytest.raises(EnvFailure) as failure:
                worker.call("no_such_attribute", (), {}, None)
            error = _error_reply(failure.value.env, failure.value.exc, failure.value.tb, recoverable=True)
            assert error.error.kind == "AttributeError" and error.recoverable
            assert "no_such_attribute" in error.error.text
            again = rebuild(decode(encode(error)).error, "env 0")
            assert isinstance(again, AttributeError) and "no_such_attribute" in str(again)
        finally:
            worker.close()
    records = sorted(read_manifest(out), key=lambda r: (r["env"], r["episode"]))
    assert [(r["env"], r["episode"], r["end"]) for r in records] == [
        (0, 0, "terminated"),
        (0, 1, "closed"),
        (1, 0, "terminated"),
        (1, 1, "closed"),
    ]
    assert records[0]["seed"] == 7 and records[0]["frames"] == 4  # reset frame + 3 steps


def test_worker_error_reply_keeps_user_errors() -> None:
    err = _error_reply(4, rlcapture.FrameError("frame of env 4 is 2-D"), "tb")
    assert err.env == 4 and not err.recoverable
    again = rebuild(decode(encode(err)).error, "env 4")
    assert type(again) is rlcapture.FrameError and str(again) == "env 4: frame of env 4 is 2-D"
    assert isinstance(again.__cause__, RemoteTraceback) and again.__cause__.tb == "tb"
    err = _error_reply(4, RuntimeError("boom"), "tb")
    assert type(rebuild(err.error)) is RuntimeError and not err.recoverable


def test_worker_takes_a_failing_env_out(tmp_path: Path) -> None:
    """on_error="continue": the failure comes back in the next answer, by name."""
    out = tmp_path / "out"
    with rlcapture.Recorder(out) as rec:
        worker = _worker(rec, 2, on_error="continue")
        try:
            worker.start()
            worker.reset([0, 1], None)
            worker.after_reply()
            worker.envs[1].step = None  # calling it raises TypeError
            reply = worker.step(np.zeros(2, np.int64))
            assert reply.failures == [(1, "TypeError: 'NoneType' object is not callable")]
            assert reply.value[1] == {"error": reply.failures[0][1]}
            assert worker.failed == [False, True]
            worker.after_reply()
        finally:
            worker.close()
    ends = {r["env"]: r["end"] for r in read_manifest(out)}
    assert ends == {0: "closed", 1: "error"}


# -- the vector env's states ----------------------------------------------------------
def _vec(out: Path, **kwargs: Any) -> rlcapture.CaptureVectorEnv:
    return rlcapture.CaptureVectorEnv([partial(NoisyEnv, length=3, side=16)], out, record="none", **kwargs)


def test_misuse_raises_gymnasium_errors(tmp_path: Path) -> None:
    env = _vec(tmp_path / "out")
    try:
        with pytest.raises(gym.error.NoAsyncCallError, match="without any prior call to `step_async`") as no_call:
            env.step_wait()
        assert isinstance(no_call.value, rlcapture.NoAsyncCallError) and no_call.value.name == "step"
        env.reset(seed=0)
        env.step_async(np.zeros(1, np.int64))
        with pytest.raises(gym.error.AlreadyPendingCallError, match="while waiting for a pending call to `step`") as pending:
            env.step_async(np.zeros(1, np.int64))
        assert isinstance(pending.value, rlcapture.AlreadyPendingCallError)
        assert pending.value.name == "step"
        for call in (lambda: env.reset(), lambda: env.call("length"), lambda: env.set_attr("length", 4)):
            with pytest.raises(rlcapture.AlreadyPendingCallError):
                call()
        _obs, rewards, *_ = env.step_wait()  # the pending step is still there to collect
        assert rewards.tolist() == [1.0]
        with pytest.raises(rlcapture.NoAsyncCallError):
            env.step_wait()
    finally:
        env.close()
    for call in (
        lambda: env.step(np.zeros(1, np.int64)),
        lambda: env.step_async(np.zeros(1, np.int64)),
        lambda: env.step_wait(),
        lambda: env.reset(),
        lambda: env.call("length"),
    ):
        with pytest.raises(gym.error.ClosedEnvironmentError, match="closed") as closed:
            call()
        assert isinstance(closed.value, rlcapture.ClosedError)


def test_broken_is_a_state_of_its_own(tmp_path: Path) -> None:
    """A worker that failed leaves the env broken: every call but close says so."""
    env = rlcapture.CaptureVectorEnv([partial(Faulty, "raise", at=2)], tmp_path / "out", record="none")
    try:
        env.reset(seed=0)
        env.step(np.zeros(1, np.int64))
        with pytest.raises(rlcapture.WorkerError, match="boom at step 2"):
            env.step(np.zeros(1, np.int64))
        assert env._state.name == "BROKEN"
        for call in (lambda: env.step(np.zeros(1, np.int64)), lambda: env.step_wait(), lambda: env.reset()):
            with pytest.raises(gym.error.ClosedEnvironmentError, match="failed earlier"):
                call()
    finally:
        env.close()
    assert env._state.name == "CLOSED"
