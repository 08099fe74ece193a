"""CaptureWrapper inside other runners: Gymnasium AsyncVectorEnv under every start method."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import multiprocess
import pytest
from conftest import by_env, cartpole_first_frame, decode, read_manifest

import rlcapture
from rlcapture import CaptureWrapper, Recorder


def make_cartpole() -> gym.Env:
    return gym.make("CartPole-v1", render_mode="rgb_array")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("context", ["fork", "forkserver", "spawn"])
def test_wrapped_envs_in_async_vector_env(tmp_path: Path, context: str) -> None:
    if context not in multiprocess.get_all_start_methods():
        pytest.skip(f"{context} is not available here")
    with Recorder(tmp_path) as rec:
        fns = [CaptureWrapper.factory(make_cartpole, rec, i) for i in range(2)]
        envs = gym.vector.AsyncVectorEnv(fns, context=context)
        envs.reset(seed=3)
        envs.action_space.seed(3)
        for _ in range(80):
            _, _, _, _, _info = envs.step(envs.action_space.sample())
        envs.close()
    lines = read_manifest(tmp_path)
    per_env = by_env(lines)
    assert set(per_env) == {0, 1}
    for env, records in per_env.items():
        assert [r["episode"] for r in records] == list(range(len(records)))
        assert records[0]["seed"] == 3 + env
        for r in records:
            d = decode(tmp_path / r["video"])
            if r["end"] in ("terminated", "truncated"):
                assert d.count == r["length"] + 1 == r["frames"]
            else:
                assert r["end"] == "closed" and d.count == r["frames"]
            first = cartpole_first_frame(r)
            assert abs(d.first.astype(int) - first.astype(int)).mean() < 3


def test_wrapper_in_process_gives_episode_stats(tmp_path: Path) -> None:
    with Recorder(tmp_path) as rec:
        env = CaptureWrapper(make_cartpole(), rec, 7, record="every:2")
        env.reset(seed=1)
        returns = []
        while len(returns) < 3:
            _, _, term, trunc, info = env.step(env.action_space.sample())
            if term or trunc:
                returns.append(info["episode"]["r"])
                env.reset()
        env.close()
    lines = read_manifest(tmp_path)
    assert [r["return"] for r in lines if r["end"] != "closed"] == returns
    assert [bool(r["video"]) for r in lines][:3] == [True, False, True]


def test_wrapper_refuses_env_without_array_rendering(tmp_path: Path) -> None:
    with Recorder(tmp_path) as rec, pytest.raises(rlcapture.EnvError, match="rgb_array"):
        CaptureWrapper(gym.make("CartPole-v1"), rec, 0)


def test_rounds_on_one_recorder_continue_episode_numbers(tmp_path: Path) -> None:
    """Evaluating twice with the same env indices never clashes or overwrites."""
    with Recorder(tmp_path) as rec:
        for _ in range(2):
            envs = rlcapture.make_vec("CartPole-v1", 2, rec, episodes_per_env=2)
            envs.reset(seed=0)
            done = [0, 0]
            while min(done) < 2:
                _, _, term, trunc, _ = envs.step(envs.action_space.sample())
                for i in (0, 1):
                    done[i] += int(term[i] or trunc[i])
            envs.close()
        assert rec.check() is None
    per_env = by_env(read_manifest(tmp_path))
    for records in per_env.values():
        episodes = [r["episode"] for r in records]
        assert episodes == sorted(set(episodes)), "no episode index written twice"
        assert len({r["video"] for r in records}) == len(records)
        assert {0, 1, 2, 3} <= set(episodes)
