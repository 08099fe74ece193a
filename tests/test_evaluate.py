"""rlcapture.evaluate and seed plans: episode j has seed seeds[j], whatever the parallelism (issue 10 item 8)."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import decode, read_manifest
from envs_for_tests import RandomLength, lean_policy
from gymnasium.vector import AutoresetMode

import rlcapture
from rlcapture._backend.seedplan import SeedPlan, check_seeds, policy_seed
from rlcapture.policies import EpisodeRandomPolicy

pytestmark = pytest.mark.timeout(300)


def _triples(result: rlcapture.EvaluationResult) -> list[tuple[int, float, int]]:
    return sorted((e.seed, e.ret, e.length) for e in result.episodes)


def test_random_length_env_gives_the_same_episodes_for_1_4_and_16_envs(tmp_path: Path) -> None:
    seeds = list(range(100, 140))
    runs = {}
    for n, per_worker in ((1, 1), (4, 1), (16, 4)):
        result = rlcapture.evaluate(
            RandomLength, seeds=seeds, num_envs=n, out=tmp_path / f"n{n}", record="none",
            envs_per_worker=per_worker,
        )  # fmt: skip
        assert [e.index for e in result.episodes] == list(range(len(seeds)))
        assert [e.seed for e in result.episodes] == seeds
        assert all(e.end == "terminated" for e in result.episodes)
        runs[n] = _triples(result)
        # Every episode of the plan is in the manifest once; none beyond it.
        lines = read_manifest(tmp_path / f"n{n}")
        assert sorted(r["seed_index"] for r in lines) == list(range(len(seeds)))
        if n > 1:
            assert len({r["env"] for r in lines}) > 1  # the work was really shared
    assert runs[1] == runs[4] == runs[16]
    assert len(set(runs[1])) > 20  # lengths and returns vary with the seed


def test_same_step_autoreset_and_a_policy_callable_give_the_same_episodes(tmp_path: Path) -> None:
    seeds = range(7, 19)
    a = rlcapture.evaluate("CartPole-v1", lean_policy, seeds, num_envs=1, out=tmp_path / "a", record="none")
    b = rlcapture.evaluate(
        "CartPole-v1", "envs_for_tests:lean_policy", seeds, num_envs=3, out=tmp_path / "b",
        record="none", autoreset_mode=AutoresetMode.SAME_STEP,
    )  # fmt: skip
    assert _triples(a) == _triples(b)
    assert len(a.episodes) == 12 and min(a.lengths) > 20  # the policy balances the pole
    # The random policy differs from it, and is reproducible too.
    c = rlcapture.evaluate("CartPole-v1", None, seeds, num_envs=2, out=tmp_path / "c", record="none")
    d = rlcapture.evaluate("CartPole-v1", "random", seeds, num_envs=5, out=tmp_path / "d", record="none")
    assert _triples(c) == _triples(d) != _triples(a)


def test_result_records_videos_and_run_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = rlcapture.evaluate(
        "CartPole-v1", seeds=[5, 3, 5], num_envs=2, out=out, max_episode_steps=30, fps=50
    )
    assert [e.seed for e in result.episodes] == [5, 3, 5]  # repeats are episodes too
    first, _, third = result.episodes
    assert (first.ret, first.length) == (third.ret, third.length)  # same seed, same episode
    for e in result.episodes:
        assert e.video is not None and e.video.is_file()
        assert decode(e.video).count == e.length + 1
        assert e.length <= 30
    assert result.returns == [e.ret for e in result.episodes]
    assert result.mean_return == pytest.approx(np.mean(result.returns))
    assert "IQM" in str(result.summary())
    # Picklable and JSON-able, for a cluster runner that gathers results.
    again = pickle.loads(pickle.dumps(result))
    assert again == result
    plain = json.loads(json.dumps(result.as_dict()))
    assert [e["seed"] for e in plain["episodes"]] == [5, 3, 5] and "return" in plain["episodes"][0]
    run = json.loads((out / "run.json").read_text())
    assert run["env"] == "CartPole-v1" and run["max_episode_steps"] == 30 and run["policy"] == "random"
    assert run["seeds"] == [5, 3, 5] and run["num_envs"] == 2 and run["video"]["fps"] == 50
    assert run["rlcapture"] == rlcapture.__version__


def test_sb3_model_as_policy(tmp_path: Path) -> None:
    sb3 = pytest.importorskip("stable_baselines3")
    model = sb3.PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, seed=0, device="cpu")
    a = rlcapture.evaluate("CartPole-v1", model, range(6), num_envs=1, out=tmp_path / "a", record="none")
    b = rlcapture.evaluate("CartPole-v1", model, range(6), num_envs=3, out=tmp_path / "b", record="none")
    assert _triples(a) == _triples(b) and len(a.episodes) == 6


def test_fewer_seeds_than_envs(tmp_path: Path) -> None:
    result = rlcapture.evaluate(RandomLength, seeds=[4], num_envs=8, out=tmp_path, record="none")
    assert len(result.episodes) == 1 and result.episodes[0].seed == 4
    assert json.loads((tmp_path / "run.json").read_text())["num_envs"] == 1


def test_vector_env_with_a_seed_plan(tmp_path: Path) -> None:
    envs = rlcapture.CaptureVectorEnv(
        [RandomLength] * 3, tmp_path, episode_seeds=range(20, 25), record="none"
    )
    try:
        assert list(envs.seed_indices()) == [-1, -1, -1]
        with pytest.raises(rlcapture.ConfigError, match="without a seed"):
            envs.reset(seed=1)
        envs.reset()
        assert sorted(envs.seed_indices()) == [0, 1, 2]
        policy = EpisodeRandomPolicy(envs)
        for _ in range(200):
            envs.step(policy(None))
        assert list(envs.seed_indices()) == [-1, -1, -1]  # the plan is used up
        assert envs.seed_plan is not None and envs.seed_plan.taken == 5
    finally:
        envs.close()
    lines = read_manifest(tmp_path)
    assert sorted(r["seed"] for r in lines) == [20, 21, 22, 23, 24]  # nothing beyond the plan
    assert all(r["rng"] is None for r in lines)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(rlcapture.ConfigError, match="out="):
        rlcapture.evaluate("CartPole-v1", seeds=[1])
    with pytest.raises(rlcapture.ConfigError, match="empty"):
        rlcapture.evaluate("CartPole-v1", seeds=[], out=tmp_path / "a")
    with pytest.raises(rlcapture.ConfigError, match="2\\*\\*63"):
        rlcapture.evaluate("CartPole-v1", seeds=[1, -2], out=tmp_path / "a")
    with pytest.raises(rlcapture.ConfigError, match="num_envs"):
        rlcapture.evaluate("CartPole-v1", seeds=[1], num_envs=0, out=tmp_path / "a")
    with pytest.raises(rlcapture.ConfigError, match="sets episode_seeds"):
        rlcapture.evaluate("CartPole-v1", seeds=[1], out=tmp_path / "a", episode_seeds=[2])
    with pytest.raises(rlcapture.ConfigError, match="policy must be"):
        rlcapture.evaluate("CartPole-v1", 42, seeds=[1], out=tmp_path / "b")
    with pytest.raises(rlcapture.EnvError, match="unknown env id"):
        rlcapture.evaluate("NoSuchEnv-v0", seeds=[1], out=tmp_path / "c")
    with pytest.raises(rlcapture.ConfigError, match="factory"):
        rlcapture.evaluate(RandomLength, seeds=[1], out=tmp_path / "d", max_episode_steps=3)


def test_seed_plan_hands_out_each_seed_once() -> None:
    import multiprocess as mp

    ctx = mp.get_context("fork")
    plan = SeedPlan(range(10, 15), 2, ctx)
    got = [plan.take(i % 2) for i in range(7)]
    assert got[:5] == [(10, 0), (11, 1), (12, 2), (13, 3), (14, 4)]
    assert got[5:] == [(None, None), (None, None)] and plan.taken == 5
    assert list(plan.current()) == [-1, -1]
    assert check_seeds(range(3)) == range(3) and check_seeds(np.arange(3)) == (0, 1, 2)
    for bad in ("12", [1.5], [True], 7, range(-1, 2)):
        with pytest.raises(rlcapture.ConfigError):
            check_seeds(bad)
    # The policy's sampler seed is derived from the episode's, and differs from it.
    assert policy_seed(3) == policy_seed(3) != policy_seed(4)
    assert policy_seed(3) != 3 and 0 <= policy_seed(2**63 - 1) < 2**63


def test_seed_plan_across_processes() -> None:
    """Workers racing for seeds still take each exactly once."""
    import multiprocess as mp

    ctx = mp.get_context("fork")
    plan = SeedPlan(range(2000), 4, ctx)
    queue = ctx.Queue()

    def grab(slot: int) -> None:
        mine = []
        while True:
            seed, _ = plan.take(slot)
            if seed is None:
                break
            mine.append(seed)
        queue.put(mine)

    procs = [ctx.Process(target=partial(grab, k)) for k in range(4)]
    for p in procs:
        p.start()
    taken = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    counts = Counter(s for mine in taken for s in mine)
    assert sorted(counts) == list(range(2000)) and set(counts.values()) == {1}
