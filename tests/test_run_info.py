"""``run.json`` for every run whose env can be named, so ``rlcapture replay DIR`` works on it.

``make_vec`` and ``CaptureVectorEnv`` (made from env ids), ``RecordCallback``
rounds and ``evaluate`` each write it; a run made from a plain function says
so instead of naming an env it cannot know.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import LOSSLESS, PYTHON, REPO, decode, read_manifest

import rlcapture
from rlcapture.envs import describe_env_fns, make_env_fn

TESTS = Path(__file__).resolve().parent


def _replay_cli(
    out: Path, env: int, episode: int, target: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), str(TESTS), environ.get("PYTHONPATH", "")])
    )
    argv = ["replay", str(out), "--env", str(env), "--episode", str(episode), "--out", str(target), *extra]
    return subprocess.run(
        [PYTHON, "-m", "rlcapture.cli", *argv, "--policy", "envs_for_tests:lean_policy"],
        env=environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_make_vec_run_replays_from_the_cli(tmp_path: Path) -> None:
    from envs_for_tests import lean_policy

    out = tmp_path / "run"
    envs = rlcapture.make_vec("CartPole-v1", 2, out, max_episode_steps=15, **LOSSLESS)
    try:
        obs, _ = envs.reset(seed=4)
        for _ in range(40):  # seeded first episodes, then unseeded autoresets
            obs, *_ = envs.step(lean_policy(obs))
    finally:
        envs.close()
    run = json.loads((out / "run.json").read_text())
    assert run["env"] == "CartPole-v1" and run["max_episode_steps"] == 15 and run["num_envs"] == 2
    assert run["video"]["codec"] == "libx264rgb" and run["rlcapture"] == rlcapture.__version__
    assert set(run["gl"]) == {"platform", "source"}
    records = [r for r in read_manifest(out) if r["end"] == "truncated"]
    assert any(r["seed"] is None for r in records) and any(r["seed"] == 5 for r in records)
    seeded = next(r for r in records if r["seed"] is not None)
    for r in (seeded, next(r for r in records if r["seed"] is None)):  # from the generator state
        target = tmp_path / f"again-{r['env']}-{r['episode']}.mp4"
        proc = _replay_cli(out, r["env"], r["episode"], target)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert "(as recorded)" in proc.stdout
        want, got = decode(out / r["video"], keep=True), decode(target, keep=True)
        assert got.count == want.count == r["length"] + 1
        assert all(
            np.array_equal(a, b) for a, b in zip(want.frames, got.frames)
        )  # lossless, as recorded


def test_an_env_spec_and_a_module_id_are_named(tmp_path: Path) -> None:
    spec = gym.spec("CartPole-v1")
    assert describe_env_fns([make_env_fn(spec)] * 2)["env"] == "CartPole-v1"
    named = describe_env_fns(
        [make_env_fn("gymnasium.envs.classic_control:Acrobot-v1", max_episode_steps=7)]
    )
    assert named == {
        "env": "gymnasium.envs.classic_control:Acrobot-v1",
        "env_factory": None,
        "env_kwargs": {},
        "max_episode_steps": 7,
        "imports": [],
    }
    # A spec gymnasium.make cannot find again by its id is not named by it.
    unregistered = gym.envs.registration.EnvSpec(
        "Nowhere-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv"
    )
    assert describe_env_fns([make_env_fn(unregistered)])["env"] is None


def test_a_plain_function_is_described_not_named(tmp_path: Path) -> None:
    fn = partial(gym.make, "CartPole-v1", render_mode="rgb_array")
    envs = rlcapture.CaptureVectorEnv([fn, fn], tmp_path / "a", record="none")
    envs.close()
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["env"] is None and "functools.partial" in run["env_factory"]
    mixed = describe_env_fns([make_env_fn("CartPole-v1"), make_env_fn("Acrobot-v1")])
    assert mixed["env"] is None and mixed["env_factory"] == "2 env functions"
    # A recorder shared by vector envs is its owner's: none of them writes run.json there.
    with rlcapture.Recorder(tmp_path / "b") as rec:
        rlcapture.make_vec("CartPole-v1", 1, rec, record="none").close()
    assert not (tmp_path / "b" / "run.json").exists()


@pytest.mark.timeout(300)  # imports torch
def test_record_callback_rounds_write_run_json(tmp_path: Path) -> None:
    sb3 = pytest.importorskip("stable_baselines3")
    from rlcapture.sb3 import RecordCallback

    model = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0, device="cpu")
    callback = RecordCallback(
        "CartPole-v1",
        tmp_path,
        every=10**9,
        episodes=2,
        num_envs=1,
        at_start=True,
        deterministic=False,
    )
    model.learn(64, callback=callback)
    run = json.loads((tmp_path / "step-0" / "run.json").read_text())
    assert run["env"] == "CartPole-v1" and run["env_factory"] is None  # through SB3's Monitor
    assert (
        run["deterministic"] is False
        and run["timestep"] == 0
        and run["autoreset_mode"] == "SAME_STEP"
    )
    assert len(read_manifest(tmp_path / "step-0")) == 2


def _cartpole() -> gym.Env:
    return gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=15)


def test_a_run_whose_env_has_no_name_replays_with_env_id(tmp_path: Path) -> None:
    from envs_for_tests import lean_policy

    out = tmp_path / "run"
    envs = rlcapture.CaptureVectorEnv([_cartpole] * 2, out, **LOSSLESS)  # plain functions: no name
    try:
        obs, _ = envs.reset(seed=4)
        for _ in range(20):
            obs, *_ = envs.step(lean_policy(obs))
    finally:
        envs.close()
    assert json.loads((out / "run.json").read_text())["env"] is None
    record = next(r for r in read_manifest(out) if r["end"] == "truncated")
    target = tmp_path / "again.mp4"
    proc = _replay_cli(out, record["env"], record["episode"], target)
    assert proc.returncode == 2 and not target.exists()
    (line,) = proc.stderr.strip().splitlines()
    assert "does not say which env ran" in line and "--env-id ID" in line
    short = "registered_envs:rlcapture-envtest/ShortCartPole-v0"  # CartPole cut at 15 steps, as recorded
    proc = _replay_cli(out, record["env"], record["episode"], target, "--env-id", short)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "(as recorded)" in proc.stdout
    assert decode(target).count == decode(out / record["video"]).count == record["length"] + 1
