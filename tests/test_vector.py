"""CaptureVectorEnv / make_vec end to end: real workers, encoder and videos decoded with PyAV."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import (
    LOSSLESS,
    by_env,
    cartpole_first_frame,
    decode,
    read_manifest,
    reset_as_recorded,
)
from envs_for_tests import NoisyEnv
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import RecordEpisodeStatistics

import rlcapture

pytestmark = pytest.mark.timeout(120)

ENDED = ("terminated", "truncated")


def run(env: rlcapture.CaptureVectorEnv, steps: int, seed: int = 0) -> dict[str, Any]:
    """Step with seeded random actions; return what the caller saw.

    Returns:
        ``actions[i]``: per env, the actions of each episode (NEXT_STEP: the
        action of an autoreset step is ignored, so it belongs to no episode);
        ``returns[i]``/``lengths[i]``: ``info["episode"]`` per env, in order,
        from Gymnasium's vector ``RecordEpisodeStatistics`` around ``env``
        (rlcapture adds nothing to the infos, as AsyncVectorEnv adds nothing).
    """
    n = env.num_envs
    stepper = RecordEpisodeStatistics(env)
    rng = np.random.default_rng(seed)
    same_step = env.autoreset_mode == AutoresetMode.SAME_STEP
    actions: list[list[list[int]]] = [[[]] for _ in range(n)]
    returns: list[list[float]] = [[] for _ in range(n)]
    lengths: list[list[int]] = [[] for _ in range(n)]
    autoreset = np.zeros(n, bool)
    finals: list[tuple[int, Any, Any]] = []
    for _ in range(steps):
        a = rng.integers(0, 2, n)
        obs, _rew, term, trunc, info = stepper.step(a)
        assert sorted(env.finished_episodes) == np.flatnonzero(term | trunc).tolist()
        for i in range(n):
            if autoreset[i]:
                actions[i].append([])  # this step reset env i; its action was ignored
            else:
                actions[i][-1].append(int(a[i]))
        done = term | trunc
        if done.any():
            assert "episode" in info and (info["_episode"] == done).all()
            for i in np.flatnonzero(done):
                returns[i].append(float(info["episode"]["r"][i]))
                lengths[i].append(int(info["episode"]["l"][i]))
                if same_step:
                    finals.append((i, info["final_obs"][i], obs[i]))
        elif same_step:
            assert "final_obs" not in info
        if same_step:
            for i in np.flatnonzero(done):
                actions[i].append([])
        else:
            autoreset = done
    return {"actions": actions, "returns": returns, "lengths": lengths, "finals": finals}


def check_videos(out: Path, records: list[dict[str, Any]], prefix: str = "") -> None:
    """Every recorded episode's video has length + 1 frames of 600x400."""
    for r in records:
        if r["video"] is None:
            assert r["frames"] == 0
            continue
        assert r["video"] == f"videos/{prefix}env{r['env']}-episode{r['episode']}.mp4"
        got = decode(out / r["video"])
        assert got.count == r["frames"], r
        assert (got.width, got.height) == (600, 400)
        if r["end"] in (*ENDED, "closed"):
            assert r["frames"] == r["length"] + 1, r


def test_cartpole_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = rlcapture.make_vec("CartPole-v1", 2, out)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (2, 4)
        env.action_space.seed(0)
        for _ in range(300):
            env.step(env.action_space.sample())
    finally:
        env.close()
    summary = env.recorder.summary
    records = read_manifest(out)
    assert summary["episodes"] == len(records) and summary["videos"] == len(records)
    assert summary["frames"] == sum(r["frames"] for r in records)
    assert sum(r["end"] in ENDED for r in records) >= 10
    assert sorted(r["end"] for r in records if r["end"] not in ENDED) == ["closed", "closed"]
    check_videos(out, records)
    for r in records:
        assert r["recorded"] is True and r["dropped"] == 0
        got = decode(out / r["video"])
        ref = cartpole_first_frame(r)
        assert np.abs(got.first.astype(int) - ref.astype(int)).mean() < 3, r  # lossy H.264
    firsts = {r["env"]: r["seed"] for r in records if r["episode"] == 0}
    assert firsts == {0: 0, 1: 1}  # reset(seed=s) seeds env i with s + i


def test_tags_with_many_autoresets_and_shared_workers(tmp_path: Path) -> None:
    """4 envs on 2 workers, short episodes: every frame of every video is the right one."""
    out = tmp_path / "out"
    env = rlcapture.make_vec(
        "CartPole-v1", 4, out, envs_per_worker=2, max_episode_steps=12, **LOSSLESS
    )
    try:
        assert len(env.worker_pids) == 2
        env.reset(seed=42)
        seen = run(env, 120)
    finally:
        env.close()
    records = read_manifest(out)
    per_env = by_env(records)
    assert sorted(per_env) == [0, 1, 2, 3]
    check_videos(out, records)
    for i, recs in per_env.items():
        # Episodes 0..k-1 of each env, in order, none missing or repeated.
        assert [r["episode"] for r in recs] == list(range(len(recs)))
        ended = [r for r in recs if r["end"] in ENDED]
        assert len(ended) >= 8  # at most 12 steps each, plus the autoreset step
        assert all(r["length"] == 12 for r in ended if r["end"] == "truncated")
        assert all(r["length"] <= 12 for r in recs)
        assert [r["return"] for r in ended] == seen["returns"][i]
        assert [r["length"] for r in ended] == seen["lengths"][i]
        assert len(recs) == len(seen["actions"][i])
        # Replay each episode from its seed and actions: the video holds exactly
        # its frames (a lossless codec), so no frame went to the wrong video.
        for r, acts in zip(recs, seen["actions"][i]):
            assert r["length"] == len(acts)
            replay = gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=12)
            reset_as_recorded(replay, r)
            expected = [replay.render()]
            for a in acts:
                replay.step(a)
                expected.append(replay.render())
            replay.close()
            got = decode(out / r["video"], keep=True)
            assert got.count == len(expected)
            for k, (x, y) in enumerate(zip(got.frames, expected)):
                assert np.array_equal(x, y), f"env {i} episode {r['episode']} frame {k}"


def test_same_seed_same_manifest(tmp_path: Path) -> None:
    def once(out: Path) -> dict[int, list[tuple]]:
        env = rlcapture.make_vec("CartPole-v1", 3, out, record="none")
        try:
            env.reset(seed=7)
            run(env, 150, seed=3)
        finally:
            env.close()
        return {
            i: [(r["episode"], r["seed"], r["return"], r["length"], r["end"]) for r in recs]
            for i, recs in by_env(read_manifest(out)).items()
        }

    first, second = once(tmp_path / "a"), once(tmp_path / "b")
    assert first == second
    assert all(len(v) >= 4 for v in first.values())
    # Issue 10: autoreset episodes stay unseeded (as in Gymnasium); the first
    # episodes have the reset's seeds.
    seeds = [s for v in first.values() for (_, s, *_rest) in v]
    assert sorted(s for s in seeds if s is not None) == [7, 8, 9]


def _odd_env_every_third(env: int, episode: int) -> bool:
    return env == 1 and episode % 3 == 0


@pytest.mark.parametrize(
    ("record", "expect"),
    [
        ("none", lambda env, ep: False),
        # 2 envs take turns: env 0 records episodes 0, 2, 4, ..., env 1 episodes 1, 3, ...
        ("every:2", lambda env, ep: ep % 2 == env),
        (3, lambda env, ep: ep % 3 == env * 3 // 2),
        (rlcapture.RecordEvery(4), lambda env, ep: ep % 4 == 0),  # as given: envs=1
        (_odd_env_every_third, _odd_env_every_third),
        (lambda env, ep: env == 0, lambda env, ep: env == 0),  # a lambda (pickled by dill)
    ],
    ids=["none", "every:2", "int", "RecordEvery", "function", "lambda"],
)
def test_record_schedules(tmp_path: Path, record: Any, expect: Any) -> None:
    out = tmp_path / "out"
    env = rlcapture.make_vec("CartPole-v1", 2, out, record=record, max_episode_steps=10)
    try:
        env.reset(seed=0)
        run(env, 80)
    finally:
        env.close()
    records = read_manifest(out)
    ended = [r for r in records if r["end"] in ENDED]
    assert len(ended) >= 10
    for r in ended:  # every finished episode is in the manifest, recorded or not
        want = expect(r["env"], r["episode"])
        assert r["recorded"] is want, r
        assert (r["video"] is not None) is want, r
        assert r["frames"] == (r["length"] + 1 if want else 0)
    for recs in by_env(ended).values():
        assert [r["episode"] for r in recs] == list(range(len(recs)))
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert videos == sorted(Path(r["video"]).name for r in records if r["video"])
    check_videos(out, records)
    if record == "none":
        assert videos == [] and env.recorder.summary["frames"] == 0


def test_every_n_envs_take_turns() -> None:
    """1 in n per env, and about envs / n of the envs recording at any moment, not bursts."""
    every = rlcapture.triggers.as_schedule("every:20", envs=4)
    assert [every.offset(e) for e in range(4)] == [0, 5, 10, 15]  # type: ignore[attr-defined]
    for env in range(4):
        assert sum(every(env, ep) for ep in range(200)) == 10
    # Episodes start together on every env: at each episode index one env at most records.
    assert all(sum(every(env, ep) for env in range(4)) <= 1 for ep in range(200))
    assert rlcapture.triggers.as_schedule(3, envs=16)(0, 0)  # env 0 records its episode 0
    assert rlcapture.triggers.as_schedule("every:4")(1, 0)  # envs=1: every env from episode 0
    with pytest.raises(rlcapture.ConfigError, match="envs must be"):
        rlcapture.RecordEvery(4, envs=0)


def test_same_step_autoreset(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = rlcapture.make_vec(
        "CartPole-v1", 2, out, autoreset_mode=AutoresetMode.SAME_STEP, **LOSSLESS
    )
    try:
        assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        env.reset(seed=5)
        seen = run(env, 200)
    finally:
        env.close()
    records = read_manifest(out)
    assert len(seen["finals"]) >= 8
    for _i, final, obs in seen["finals"]:
        assert final.shape == (4,) and not np.array_equal(final, obs)
        assert np.abs(obs).max() <= 0.05  # the returned obs is a fresh reset's
    check_videos(out, records)
    for i, recs in by_env(records).items():
        ended = [r for r in recs if r["end"] in ENDED]
        assert [r["episode"] for r in recs] == list(range(len(recs)))
        assert [r["return"] for r in ended] == seen["returns"][i]
        for r in recs:
            got = decode(out / r["video"])
            assert np.array_equal(got.first, cartpole_first_frame(r))


def test_drop_mode_counts_the_terminal_frame(tmp_path: Path) -> None:
    """With drops, every offered frame is either encoded or counted as dropped."""
    rec = rlcapture.Recorder(tmp_path / "out", drop=True, slots=1)
    try:
        env = rlcapture.CaptureVectorEnv([NoisyEnv] * 2, rec)
        try:
            env.reset(seed=0)
            for _ in range(40):
                env.step(np.zeros(2, int))
        finally:
            env.close()
    finally:
        rec.close()
    records = read_manifest(tmp_path / "out")
    ended = [r for r in records if r["end"] in ENDED]
    assert len(ended) >= 15
    assert sum(r["dropped"] for r in records) > 0, "nothing was dropped"
    for r in records:
        assert r["frames"] + r["dropped"] == r["length"] + 1, r
        if r["video"]:
            assert decode(tmp_path / "out" / r["video"]).count == r["frames"]


def test_shared_recorder_and_gym_api(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with rlcapture.Recorder(out, name_prefix="run_") as rec:
        a = rlcapture.make_vec("CartPole-v1", 2, rec)
        b = rlcapture.make_vec("CartPole-v1", 2, rec, first_env_index=2, envs_per_worker=2)
        try:
            a.reset(seed=0)
            b.reset(seed=10)
            for _ in range(30):
                a.step(np.zeros(2, int))
                b.step(np.ones(2, int))
            # Until no episode of a has just ended, so both are mid-episode.
            while any(a.step(np.zeros(2, int))[2]):
                pass
            # The rest of the Gymnasium vector API goes through the workers.
            assert a.get_attr("spec")[0].id == "CartPole-v1"
            a.set_attr("custom", [1, 2])
            assert a.get_attr("custom") == (1, 2)
            b.set_attr("custom", "same")
            assert b.get_attr("custom") == ("same", "same")
            frames = a.render()
            assert len(frames) == 2 and frames[0].shape == (400, 600, 3)
            # A reset mid-episode ends the running recorded episodes as "reset".
            a.reset(seed=100)
            a.step(np.zeros(2, int))
        finally:
            a.close()
            b.close()
        with pytest.raises(rlcapture.ClosedError):
            a.step(np.zeros(2, int))
        rec.check()  # the recorder outlives the vector envs that borrowed it
    records = read_manifest(out)
    assert sorted(by_env(records)) == [0, 1, 2, 3]
    check_videos(out, records, prefix="run_")
    assert sum(r["end"] == "reset" for r in records) == 2
    reseeded = [r for r in records if r["env"] < 2 and r["seed"] in (100, 101)]
    assert len(reseeded) == 2 and all(r["end"] == "closed" for r in reseeded)


def test_observations_match_a_plain_vector_env(tmp_path: Path) -> None:
    """The steps are Gymnasium's, across autoresets too (issue 10: no reseeding)."""
    env = rlcapture.make_vec("CartPole-v1", 2, tmp_path / "out", record="none")
    ref = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    try:
        o1, _ = env.reset(seed=3)
        o2, _ = ref.reset(seed=3)
        np.testing.assert_array_equal(o1, o2)
        rng = np.random.default_rng(0)
        ends = 0
        for _ in range(400):
            a = rng.integers(0, 2, 2)
            s1, s2 = env.step(a), ref.step(a)
            for x, y in zip(s1[:4], s2[:4]):
                np.testing.assert_array_equal(x, y)
            ends += int((s1[2] | s1[3]).sum())
        assert ends >= 8
    finally:
        env.close()
        ref.close()


# -- bad input -----------------------------------------------------------------------
def test_unknown_env_id(tmp_path: Path) -> None:
    with pytest.raises(rlcapture.EnvError, match=r"unknown env id 'NoSuchEnv-v0'.*pprint_registry"):
        rlcapture.make_vec("NoSuchEnv-v0", 2, tmp_path / "out")
    with pytest.raises(rlcapture.EnvError, match="non-empty"):
        rlcapture.make_vec("", 2, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_env_without_rgb_array(tmp_path: Path) -> None:
    with pytest.raises(rlcapture.EnvError, match=r"render_mode=None.*rgb_array"):
        rlcapture.CaptureVectorEnv([lambda: gym.make("CartPole-v1")] * 2, tmp_path / "out")
    # The recorder it made is closed again: the folder can be used at once.
    with rlcapture.Recorder(tmp_path / "out", overwrite=True):
        pass


def test_registered_env_that_cannot_render_to_an_array(tmp_path: Path) -> None:
    class HumanOnly(NoisyEnv):
        metadata = {"render_modes": ["human"]}

    gym.register("rlcapture-test/HumanOnlyVector-v0", entry_point=HumanOnly)
    try:
        with pytest.raises(rlcapture.EnvError, match="cannot render to an array"):
            rlcapture.make_vec("rlcapture-test/HumanOnlyVector-v0", 1, tmp_path / "out")
    finally:
        del gym.registry["rlcapture-test/HumanOnlyVector-v0"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"envs_per_worker": 0},
        {"envs_per_worker": True},  # a bool is not a count
        {"first_env_index": True},
        {"step_timeout": True},
        {"episodes_per_env": True},
        {"episodes_per_env": [2, False]},
        {"step_timeout": -1.0},
        {"step_timeout": float("inf")},
        {"first_env_index": -1},
        {"observation_mode": "sometimes"},
        {"autoreset_mode": "sometimes"},
        {"record": "every:0"},
        {"record": "sometimes"},
        {"max_episode_steps": 0},
        {"crf": 99},
        {"name_prefix": "../x"},
    ],
)
def test_bad_vector_options(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(rlcapture.ConfigError):
        rlcapture.make_vec("CartPole-v1", 2, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_envs": True}, "num_envs must be a positive integer, got True"),
        ({"num_envs": 0}, "num_envs must be a positive integer, got 0"),
        ({"num_envs": 2.0}, "num_envs must be a positive integer, got 2.0"),
        ({"num_envs": 2, "envs_per_worker": True}, "envs_per_worker must be a positive integer, got True"),
        ({"num_envs": 2, "first_env_index": False}, "first_env_index must be a non-negative integer, got False"),
        ({"num_envs": 2, "step_timeout": True}, "step_timeout must be a positive number of seconds, got True"),
        ({"num_envs": 2, "episodes_per_env": True}, "episodes_per_env must hold non-negative integers"),
    ],
)
def test_true_is_not_a_count(tmp_path: Path, kwargs: dict, match: str) -> None:
    """``True`` (an int to Python) is refused wherever a count is asked, as 0 or 2.0 are."""
    with pytest.raises(rlcapture.ConfigError, match=match):
        rlcapture.make_vec("CartPole-v1", out=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_no_env_functions(tmp_path: Path) -> None:
    with pytest.raises(rlcapture.ConfigError):
        rlcapture.CaptureVectorEnv([], tmp_path / "out")


@pytest.mark.timeout(30)
def test_malformed_actions_are_refused_not_hung(tmp_path: Path) -> None:
    env = rlcapture.make_vec("CartPole-v1", 2, tmp_path / "out", record="none", step_timeout=10)
    try:
        env.reset(seed=0)
        for bad in (0, np.int64(1), np.array(1), None, [0], np.zeros(3, int)):
            # Refused before any worker is asked: a step sent to the workers would
            # answer or time out (StepTimeoutError), never raise ConfigError.
            # (How fast: benchmarks/bench_promptness.py.)
            with pytest.raises(rlcapture.ConfigError, match="actions"):
                env.step(bad)
        env.step([0, 1])  # the env is still usable
        env.step(np.array([1, 0]))
    finally:
        env.close()


def test_call_and_set_attr_at_indices(tmp_path: Path) -> None:
    envs = rlcapture.make_vec("CartPole-v1", 3, tmp_path / "out", record="none", envs_per_worker=2)
    try:
        envs.reset(seed=0)
        envs.set_attr("marker", ["a", "c"], indices=[0, 2])
        assert envs.call_at([2, 0], "get_wrapper_attr", "marker") == ("c", "a")
        assert envs.call_at([1], "has_wrapper_attr", "marker") == (False,)
        with pytest.raises(rlcapture.ConfigError, match="out of range"):
            envs.call_at([3], "render")
        with pytest.raises(rlcapture.ConfigError, match="got 1 values for 2 envs"):
            envs.set_attr("marker", ["x"], indices=[0, 1])
        envs.step(envs.action_space.sample())  # still in step
    finally:
        envs.close()


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("gate", [True, False])
def test_render_after_batch_records_every_frame_of_its_step(tmp_path: Path, mode, gate: bool) -> None:
    from functools import partial

    from envs_for_tests import Pattern, pattern_frame, pattern_seed

    envs = rlcapture.CaptureVectorEnv(
        [partial(Pattern, lengths=(3, 6))] * 3, tmp_path, envs_per_worker=2,
        autoreset_mode=mode, render_after_batch=gate, **LOSSLESS,
    )  # fmt: skip
    assert envs.render_after_batch is gate
    try:
        envs.reset(seed=5)
        for _ in range(20):
            envs.step(np.zeros(3, int))
    finally:
        envs.close()
    lines = [r for r in read_manifest(tmp_path) if r["end"] in ("terminated", "truncated")]
    assert len(lines) >= 6
    for r in lines:
        frames = decode(tmp_path / r["video"], keep=True).frames
        assert len(frames) == r["length"] + 1
        for t, frame in enumerate(frames):
            assert np.array_equal(frame[:37, :51], pattern_frame(pattern_seed(r), t)), (r, t)


def test_dropped_without_close_closes_at_once(tmp_path: Path) -> None:
    """A vector env dropped without close() is finalized at once: its workers exit, its videos end.

    Nothing may hold it in a reference cycle (the worker pool keeps its
    callbacks weakly), or its workers would run until the garbage collector
    happened to pass.
    """
    import gc
    import os

    out = tmp_path / "out"
    env = rlcapture.make_vec("CartPole-v1", 2, out, max_episode_steps=5)
    env.reset(seed=0)
    for _ in range(8):
        env.step(np.zeros(2, int))
    pids = env.worker_pids
    gc.disable()
    try:
        del env
        deadline = time.monotonic() + 10
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [p for p in pids if os.path.exists(f"/proc/{p}") and _running(p)]
            time.sleep(0.05)
    finally:
        gc.enable()
    assert not alive, f"workers {alive} still run after the vector env was dropped"
    records = read_manifest(out)
    assert {r["end"] for r in records} >= {"truncated"}
    assert all(r["end"] != "lost" for r in records)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie awaiting its parent's wait does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
