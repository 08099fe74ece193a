"""CaptureVectorEnv as a drop-in for Gymnasium's AsyncVectorEnv, tested side by side.

Each differential test drives ``gym.vector.AsyncVectorEnv`` and
``CaptureVectorEnv`` with the same env functions, seeds and scripted actions
and compares what the caller sees at every step: observations, rewards,
terminated and truncated flags, infos (``final_obs``/``final_info`` included)
and the errors raised. Nothing may differ; recording only adds videos and a
manifest.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from copy import deepcopy
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import read_manifest
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode
from gymnasium.vector.utils import batch_space
from gymnasium.wrappers.vector import RecordEpisodeStatistics as VectorEpisodeStatistics

import rlcapture
from rlcapture import CaptureVectorEnv, CaptureWrapper, Recorder

pytestmark = pytest.mark.timeout(300)

MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]


# -- envs -------------------------------------------------------------------------------
class Varied(gym.Env):
    """Episodes of varied lengths (drawn from ``np_random``) that end either way, with infos.

    The observation and action spaces are given, so the same env covers Box,
    Dict and Tuple spaces. The infos vary too: some steps report a key that
    others do not, so the vector env's ``_key`` masks are exercised.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        fail_at: int | None = None,
        render_mode: str = "rgb_array",
    ) -> None:
        # Copies: envs sharing a worker (envs_per_worker=2) must not share a
        # space's generator, as they do not in AsyncVectorEnv's processes.
        self.observation_space = deepcopy(observation_space) or spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = deepcopy(action_space) or spaces.Discrete(3)
        self.render_mode = render_mode
        self.fail_at = fail_at
        self.t = 0
        self.steps = 0
        self.length = 1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self.t = 0
        self.length = int(self.np_random.integers(1, 25))
        return self.observation_space.sample(), {"length": self.length, "options": options}

    def step(self, action: Any) -> Any:
        self.steps += 1
        if self.fail_at is not None and self.steps == self.fail_at:
            raise ValueError(f"Error in step {self.steps}")
        self.t += 1
        reward = float(self.np_random.normal()) + float(np.sum(_numbers(action)))
        end = self.t >= self.length
        terminated = end and self.length % 2 == 0
        truncated = end and not terminated
        info: dict[str, Any] = {"t": self.t}
        if self.t % 3 == 0:
            info["third"] = np.array([self.t, -self.t])
        return self.observation_space.sample(), reward, terminated, truncated, info

    def render(self) -> np.ndarray:
        return np.full((16, 16, 3), self.t % 256, np.uint8)


class Echo(gym.Env):
    """Echoes each action in its info, to check how batched actions are split."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, action_space: gym.Space) -> None:
        self.action_space = action_space
        self.observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.render_mode = "rgb_array"

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> Any:
        assert self.action_space.contains(action), action
        return np.zeros(1, np.float32), 0.0, False, False, {"action": action}

    def render(self) -> np.ndarray:
        return np.zeros((8, 8, 3), np.uint8)


class SequenceObs(Varied):
    """Observations from a Sequence space: shared memory cannot hold them."""

    def __init__(self) -> None:
        super().__init__(spaces.Sequence(spaces.Discrete(4)), spaces.Discrete(2))


def _numbers(x: Any) -> list[float]:
    if isinstance(x, dict):
        return [v for k in sorted(x) for v in _numbers(x[k])]
    if isinstance(x, tuple):
        return [v for item in x for v in _numbers(item)]
    return [float(v) for v in np.ravel(x)]


DICT_TUPLE = (
    spaces.Dict(
        {
            "pos": spaces.Box(-1.0, 1.0, (2,), np.float64),
            "inner": spaces.Tuple((spaces.Discrete(5), spaces.MultiBinary(3))),
        }
    ),
    spaces.Tuple((spaces.Discrete(3), spaces.Dict({"force": spaces.Box(-1.0, 1.0, (2,), np.float32)}))),
)


def cartpole() -> gym.Env:
    return gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=60)


ENVS: dict[str, tuple[Callable[[], gym.Env], int]] = {
    "cartpole": (cartpole, 1200),
    "varied": (Varied, 2500),
    "dict-tuple": (partial(Varied, *DICT_TUPLE), 2500),
}


# -- comparing ------------------------------------------------------------------------
def same(a: Any, b: Any, where: str = "") -> None:
    """Assert ``a`` and ``b`` are the same nested value (types, dtypes, shapes, values)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            if k == "t" and where.endswith("['episode']"):
                continue  # wall-clock time of an episode
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), f"{where}: {type(b)}"
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel())):
                same(x, y, f"{where}[{i}]")
        else:
            assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{where}: {a} != {b}"
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b)), f"{where}: {a!r} != {b!r}"


def run_both(
    make: Callable[[], gym.vector.VectorEnv],
    ours: Callable[[], gym.vector.VectorEnv],
    steps: int,
    mode: AutoresetMode = AutoresetMode.NEXT_STEP,
    seed: int | list[int | None] = 7,
) -> None:
    """Drive both vector envs in lockstep and compare everything they return."""
    ref, got = make(), ours()
    try:
        assert ref.observation_space == got.observation_space
        assert ref.action_space == got.action_space
        assert ref.metadata["autoreset_mode"] == got.metadata["autoreset_mode"] == mode
        same(ref.reset(seed=seed), got.reset(seed=seed), "reset")
        actions = batch_space(ref.single_action_space, ref.num_envs)
        actions.seed(123)
        for t in range(steps):
            a = actions.sample()
            r = _outcome(ref.step, a)
            g = _outcome(got.step, a)
            if r[0] == "raised":
                # The same error: ours is also an rlcapture error (a RuntimeError).
                assert g[0] == "raised" and set(r[1][0]) <= set(g[1][0]), (r, g)
                assert r[1][1] == g[1][1], (r, g)
                return
            same(r, g, f"step {t}")
            done = r[1][2] | r[1][3]
            if mode == AutoresetMode.DISABLED and done.any():
                options = {"reset_mask": done.copy()}
                same(ref.reset(options=options), got.reset(options={"reset_mask": done.copy()}), f"reset {t}")
    finally:
        ref.close(terminate=True)
        got.close()


def _outcome(call: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    try:
        return "returned", call(*args)
    except Exception as exc:  # noqa: BLE001 - compared between the two
        return "raised", _error(exc)


def _error(exc: BaseException) -> tuple[list[str], str]:
    """The Gymnasium/builtin classes an error is an instance of, and its message's core."""
    kinds = [
        cls.__name__
        for cls in (ValueError, TypeError, RuntimeError, gym.error.Error)
        if isinstance(exc, cls)
    ]
    text = str(exc)
    return kinds, text.split(": ", 1)[-1].split(" (worker pid")[0] if "raised" in text else text


def capture(env_fns: list[Callable[[], gym.Env]], out: Path, **kwargs: Any) -> Callable[[], CaptureVectorEnv]:
    return lambda: CaptureVectorEnv(env_fns, out, record="every:4", overwrite=True, **kwargs)


# -- differential tests -----------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
@pytest.mark.parametrize("name", sorted(ENVS))
def test_same_trajectories_as_async_vector_env(tmp_path: Path, name: str, mode: AutoresetMode) -> None:
    fn, steps = ENVS[name]
    fns = [fn] * 4
    run_both(
        lambda: AsyncVectorEnv(fns, autoreset_mode=mode),
        capture(fns, tmp_path / "out", autoreset_mode=mode, envs_per_worker=2),
        steps,
        mode,
    )
    records = read_manifest(tmp_path / "out")
    assert len(records) >= 4 * 3 and any(r["video"] for r in records)


def test_seeds_given_as_a_list(tmp_path: Path) -> None:
    fns = [Varied] * 3
    run_both(lambda: AsyncVectorEnv(fns), capture(fns, tmp_path / "a"), 300, seed=[11, 5, 2])


def test_env_errors_are_raised_as_the_same_class(tmp_path: Path) -> None:
    fns = [Varied, partial(Varied, fail_at=40)]
    run_both(lambda: AsyncVectorEnv(fns), capture(fns, tmp_path / "a"), 100)


def test_capture_wrapper_inside_async_vector_env_changes_nothing(tmp_path: Path) -> None:
    fns = [partial(Varied, *DICT_TUPLE)] * 3
    with Recorder(tmp_path / "out") as rec:
        wrapped = [CaptureWrapper.factory(fn, rec, i, record="every:3") for i, fn in enumerate(fns)]
        for mode in MODES:
            run_both(
                lambda m=mode: AsyncVectorEnv(fns, autoreset_mode=m),
                lambda m=mode: AsyncVectorEnv(wrapped, autoreset_mode=m),
                800,
                mode,
            )
    assert len(read_manifest(tmp_path / "out")) > 3 * 3 * 3


ACTION_SPACES = {
    "text": spaces.Text(6),
    "nested-tuple": spaces.Tuple((spaces.Discrete(2), spaces.Tuple((spaces.Box(0, 1, (2,)), spaces.Discrete(4))))),
    "tuple-dict": spaces.Tuple((spaces.Dict({"a": spaces.Discrete(3), "b": spaces.Box(-1, 1, (1,))}), spaces.Discrete(2))),
    "oneof": spaces.OneOf((spaces.Discrete(3), spaces.Box(-1, 1, (2,)))),
    "graph": spaces.Graph(spaces.Box(0, 1, (2,)), spaces.Discrete(3)),
    "sequence": spaces.Sequence(spaces.Discrete(5)),
}


@pytest.mark.parametrize("name", sorted(ACTION_SPACES))
def test_batched_actions_are_split_as_gymnasium_splits_them(tmp_path: Path, name: str) -> None:
    fns = [partial(Echo, ACTION_SPACES[name])] * 3
    run_both(lambda: AsyncVectorEnv(fns), capture(fns, tmp_path / "a", envs_per_worker=2), 30)


def test_observations_through_the_pipe(tmp_path: Path) -> None:
    """shared_memory=False: a Sequence space, which shared memory cannot hold."""
    fns = [SequenceObs] * 3
    run_both(
        lambda: AsyncVectorEnv(fns, shared_memory=False),
        capture(fns, tmp_path / "a", shared_memory=False, envs_per_worker=2),
        300,
    )
    # Not asked for: the pipes, as for shared_memory=False (Gymnasium's own
    # AsyncVectorEnv refuses it unless told; nothing is lost by taking it).
    run_both(lambda: AsyncVectorEnv(fns, shared_memory=False), capture(fns, tmp_path / "b"), 50)
    # Asked for: Gymnasium's error, as AsyncVectorEnv raises it.
    with pytest.raises(TypeError, match="has a dynamic shape so its not possible to make a static shared memory"):
        CaptureVectorEnv(fns, tmp_path / "c", shared_memory=True)


def test_observation_modes(tmp_path: Path) -> None:
    def bounded(high: float) -> Callable[[], gym.Env]:
        return partial(Varied, spaces.Box(-1.0, high, (3,), np.float32))

    fns = [bounded(1.0), bounded(2.0)]
    run_both(
        lambda: AsyncVectorEnv(fns, observation_mode="different"),
        capture(fns, tmp_path / "a", observation_mode="different"),
        200,
    )
    with pytest.raises(RuntimeError, match="not equivalent"):
        CaptureVectorEnv(fns, tmp_path / "b")
    custom = (spaces.Box(-5.0, 5.0, (2, 3), np.float32), spaces.Box(-5.0, 5.0, (3,), np.float32))
    env = CaptureVectorEnv(fns, tmp_path / "c", observation_mode=custom)
    try:
        assert env.observation_space is custom[0] and env.single_observation_space is custom[1]
    finally:
        env.close()


def test_env_fns_and_specs_holding_lambdas(tmp_path: Path) -> None:
    def transformed() -> gym.Env:
        env = cartpole()
        return gym.wrappers.TransformObservation(env, lambda o: o * 2, env.observation_space)

    fns = [transformed] * 2
    run_both(lambda: AsyncVectorEnv(fns), capture(fns, tmp_path / "a"), 150)


def test_attributes_through_the_wrappers(tmp_path: Path) -> None:
    fns = [cartpole] * 3
    ref = AsyncVectorEnv(fns)
    env = CaptureVectorEnv(fns, tmp_path / "a", record="none", envs_per_worker=2)
    try:
        for v in (ref, env):
            v.reset(seed=3)
        assert env.get_attr("gravity") == ref.get_attr("gravity") == (9.8,) * 3
        for v in (ref, env):
            v.set_attr("gravity", [1.0, 2.0, 3.0])
        assert env.get_attr("gravity") == ref.get_attr("gravity") == (1.0, 2.0, 3.0)
        assert env.call("get_wrapper_attr", "gravity") == (1.0, 2.0, 3.0)  # on the env, not TimeLimit
        assert env.get_attr("_max_episode_steps") == (60,) * 3
        assert env.np_random_seed == ref.np_random_seed == (3, 4, 5)
        assert [g.bit_generator.state for g in env.np_random] == [g.bit_generator.state for g in ref.np_random]
        for name in ("reset", "step", "close"):
            with pytest.raises(ValueError, match="use `" + name):
                env.call(name)
        assert env.env_is_wrapped(gym.wrappers.TimeLimit) == [True] * 3
        assert env.env_is_wrapped(gym.wrappers.RecordEpisodeStatistics) == [False] * 3
        assert env.env_is_wrapped(gym.wrappers.TimeLimit, indices=[2]) == [True]
    finally:
        ref.close()
        env.close()


def test_async_calls_timeouts_and_errors_as_gymnasium(tmp_path: Path) -> None:
    env = CaptureVectorEnv([Varied] * 2, tmp_path / "a", record="none")
    try:
        with pytest.raises(gym.error.NoAsyncCallError, match=r"Calling `reset_wait` without any prior call"):
            env.reset_wait()
        env.reset_async(seed=1)
        with pytest.raises(gym.error.AlreadyPendingCallError, match="pending call to `reset`"):
            env.step_async(np.zeros(2, np.int64))
        obs, _ = env.reset_wait()
        assert obs.shape == (2, 3)
        with pytest.raises(gym.error.NoAsyncCallError, match="without any prior call to `call_async`"):
            env.call_wait()
        env.call_async("get_wrapper_attr", "length")
        with pytest.raises(gym.error.AlreadyPendingCallError, match="pending call to `call`"):
            env.get_attr("t")
        assert env.call_wait() == tuple(int(x) for x in env.get_attr("length"))
        with pytest.raises(ValueError, match="reset_mask"):
            env.reset(options={"reset_mask": np.zeros(2, bool)})
        with pytest.raises(TypeError, match="reset_mask"):
            env.reset(options={"reset_mask": [True, False]})
    finally:
        env.close()
    slow = CaptureVectorEnv([partial(Slow, 0.0), partial(Slow, 2.0)], tmp_path / "b", record="none")
    try:
        slow.reset()
        slow.step_async(np.zeros(2, np.int64))
        with pytest.raises(multiprocessing.TimeoutError):
            slow.step_wait(timeout=0.2)
    finally:
        slow.close(terminate=True)


class Slow(Varied):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def step(self, action: Any) -> Any:
        import time

        time.sleep(self.delay)
        return super().step(action)


def test_rgb_array_list_is_refused_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(rlcapture.EnvError, match=r"render_mode='rgb_array_list'.*render_mode='rgb_array'"):
        CaptureVectorEnv([partial(gym.make, "CartPole-v1", render_mode="rgb_array_list")], tmp_path / "a")


# -- episode statistics -------------------------------------------------------------------
def cleanrl_continuous() -> gym.Env:
    """CleanRL's continuous recipe: statistics inside, reward normalisation around them."""
    env = gym.make("Pendulum-v1", render_mode="rgb_array")
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = gym.wrappers.ClipAction(env)
    env = gym.wrappers.NormalizeReward(env, gamma=0.99)
    return gym.wrappers.TransformReward(env, lambda r: float(np.clip(r, -10, 10)))


def test_the_envs_own_episode_statistics_are_kept_and_in_the_manifest(tmp_path: Path) -> None:
    fns = [cleanrl_continuous] * 2
    run_both(lambda: AsyncVectorEnv(fns), capture(fns, tmp_path / "a"), 450)
    env = CaptureVectorEnv(fns, tmp_path / "b", record="none")
    returns = []
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        for _ in range(401):
            _obs, _rewards, term, trunc, info = env.step(env.action_space.sample())
            for i in np.flatnonzero(term | trunc):
                returns.append((i, float(info["episode"]["r"][i])))
                assert env.finished_episodes[i]["r"] == pytest.approx(info["episode"]["r"][i])
    finally:
        env.close()
    assert len(returns) == 4 and all(r < -100 for _, r in returns)  # true returns, not normalised
    manifest = sorted((r["env"], r["return"]) for r in read_manifest(tmp_path / "b") if r["end"] == "truncated")
    expected = sorted((int(i), r) for i, r in returns)
    assert [env for env, _ in manifest] == [env for env, _ in expected]
    assert [r for _, r in manifest] == pytest.approx([r for _, r in expected])


def test_vector_record_episode_statistics_wraps_our_env(tmp_path: Path) -> None:
    fns = [Varied] * 3
    for mode in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        run_both(
            lambda m=mode: VectorEpisodeStatistics(AsyncVectorEnv(fns, autoreset_mode=m)),
            lambda m=mode: VectorEpisodeStatistics(
                CaptureVectorEnv(fns, tmp_path / m.name, record="none", autoreset_mode=m)
            ),
            400,
            mode,
        )


# -- SB3's vector envs: DummyVecEnv and SubprocVecEnv, unseeded autoresets ---------------
def monitored_varied() -> gym.Env:
    from stable_baselines3.common.monitor import Monitor

    return Monitor(Varied())


def sb3_reference(kind: str, fns: list[Callable[[], gym.Env]]) -> Any:
    from stable_baselines3.common import vec_env

    if kind == "DummyVecEnv":
        return vec_env.DummyVecEnv(fns)
    # fork: the default forkserver would outlive the test (a child process left behind).
    return vec_env.SubprocVecEnv(fns, start_method="fork")


def same_info(a: Any, b: Any, where: str) -> None:
    """:func:`same`, except that a number in an info may come back as a numpy scalar.

    The vector env batches infos into arrays (as AsyncVectorEnv does), so the
    adapter hands back ``np.int64(16)`` where the env said ``16``: the same
    value and kind of number. And SubprocVecEnv's ``reset_infos`` is a tuple
    after ``reset()`` (DummyVecEnv's and ours: a list): a sequence is a sequence.
    """
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            if not (k == "t" and where.endswith("['episode']")):  # Monitor's wall-clock time
                same_info(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            same_info(x, y, f"{where}[{i}]")
    elif isinstance(a, (bool, int, float)) and isinstance(b, np.generic):
        kinds = {bool: "b", int: "iu", float: "f"}[type(a)]
        assert b.dtype.kind in kinds and b.item() == a, f"{where}: {a!r} != {b!r}"
    else:
        same(a, b, where)


@pytest.mark.parametrize("kind", ["DummyVecEnv", "SubprocVecEnv"])
def test_same_trajectories_as_sb3_with_unseeded_autoresets(tmp_path: Path, kind: str) -> None:
    """SB3's adapter beside SB3's own vector env, seeded once and then never again.

    Every episode after the first starts from the autoreset SB3 makes,
    ``env.reset()`` with no seed, so observations after an episode's end (and
    each varied episode's length and rewards) come from the envs' own
    generators: they agree only if recording draws nothing from them and
    resets exactly when SB3 does. Everything the caller sees is compared at
    every step: observations, rewards, dones, infos (``terminal_observation``,
    Monitor's ``episode``), and ``reset_infos``.
    """
    pytest.importorskip("stable_baselines3")
    from rlcapture.sb3 import SB3VecEnv

    fns: list[Callable[[], gym.Env]] = [Varied, Varied, monitored_varied]
    ref = sb3_reference(kind, fns)
    ours = SB3VecEnv.from_env_fns(fns, tmp_path / "out")
    steps, ends = 400, 0
    try:
        for env in (ref, ours):
            env.seed(7)
        same(ref.reset(), ours.reset(), "reset")
        same_info(ref.reset_infos, ours.reset_infos, "reset_infos")
        rng = np.random.default_rng(0)
        for step in range(steps):
            actions = rng.integers(0, 3, 3)
            a, b = ref.step(actions), ours.step(actions)
            same(a[0], b[0], f"step {step} obs")
            # The adapter answers as SubprocVecEnv (float64 rewards, as the envs gave
            # them); DummyVecEnv keeps them in a float32 buffer.
            same(a[1], b[1].astype(a[1].dtype), f"step {step} rewards")
            same(a[2], b[2], f"step {step} dones")
            same_info(a[3], b[3], f"step {step} infos")
            same_info(ref.reset_infos, ours.reset_infos, f"step {step} reset_infos")
            ends += int(a[2].sum())
    finally:
        ref.close()
        ours.close()
    assert ends > 50  # many unseeded autoresets
    assert b[1].dtype == np.float64
    lines = read_manifest(tmp_path / "out")
    assert len([r for r in lines if r["end"] in ("terminated", "truncated")]) == ends
    later = [r for r in lines if r["episode"] > 0]
    assert later and all(r["seed"] is None and r["rng"] is not None for r in later)
