"""rlcapture.replay and ``rlcapture replay``: an episode re-created from the manifest (issue 10 item 1).

Each replay is checked against the original: the same return and length, and
(lossless codec) the same frames, decoded from both videos.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import LOSSLESS, decode, read_manifest
from envs_for_tests import RandomLength, lean_policy

import rlcapture
from rlcapture.cli import main
from rlcapture.envs import EnvFactory
from rlcapture.replay import replay

pytestmark = pytest.mark.timeout(300)

FINISHED = ("terminated", "truncated")
LOSSLESS_CONFIG = rlcapture.RecordConfig(**LOSSLESS)


def _same_frames(a: Path, b: Path) -> int:
    x, y = decode(a, keep=True), decode(b, keep=True)
    assert x.count == y.count
    for k, (f, g) in enumerate(zip(x.frames, y.frames)):
        assert np.array_equal(f, g), f"frame {k} of {b} differs from {a}"
    return x.count


def test_replay_seeded_episodes_of_an_evaluation(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = rlcapture.evaluate(
        "CartPole-v1", seeds=range(3, 8), num_envs=2, out=out, max_episode_steps=40, **LOSSLESS
    )
    assert len(result.episodes) == 5
    for e in result.episodes:
        assert e.video is not None
        r = replay(out, e.env, e.episode, out=tmp_path / f"re-{e.seed}.mp4")
        assert r.matches and (r.ret, r.length) == (e.ret, e.length)
        assert _same_frames(e.video, r.video) == e.length + 1 == r.frames


def test_replay_an_env_made_by_a_factory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = rlcapture.evaluate(RandomLength, seeds=[11, 12, 13], num_envs=3, out=out, **LOSSLESS)
    with pytest.raises(rlcapture.ConfigError, match="make_env"):
        replay(out, result.episodes[0].env, result.episodes[0].episode)
    for e in result.episodes:
        r = replay(out, e.env, e.episode, make_env=RandomLength)
        assert r.matches and r.video == out / "replays" / f"env{e.env}-episode{e.episode}.mp4"
        assert e.video is not None and _same_frames(e.video, r.video) == e.length + 1


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_replay_unseeded_autoreset_episodes(tmp_path: Path, mode: str) -> None:
    """Autoresets stay unseeded; the generator state in the manifest re-creates them."""
    out = tmp_path / "run"
    envs = rlcapture.make_vec(
        "CartPole-v1", 2, out, max_episode_steps=25, autoreset_mode=mode, **LOSSLESS
    )
    try:
        obs, _ = envs.reset(seed=1)
        for _ in range(120):
            obs, *_ = envs.step(lean_policy(obs))
    finally:
        envs.close()
    lines = [r for r in read_manifest(out) if r["end"] in FINISHED]
    unseeded = [r for r in lines if r["seed"] is None]
    assert len(unseeded) >= 4 and all(isinstance(r["rng"], dict) for r in unseeded)
    assert {r["seed"] for r in lines if r["episode"] == 0} == {1, 2}
    make = EnvFactory("CartPole-v1", max_episode_steps=25)
    for r in lines:
        # The env and the encoding given, as for a run whose run.json names neither.
        got = replay(out, r["env"], r["episode"], make_env=make, policy=lean_policy, config=LOSSLESS_CONFIG)
        assert got.matches, (r, got)
        assert _same_frames(out / r["video"], got.video) == r["length"] + 1


def test_replay_with_the_wrapper_in_another_runner(tmp_path: Path) -> None:
    """CaptureWrapper inside Gymnasium's SyncVectorEnv: unseeded episodes replay too."""
    import gymnasium as gym

    make = EnvFactory("CartPole-v1", max_episode_steps=20)
    with rlcapture.Recorder(tmp_path, **LOSSLESS) as rec:
        envs = gym.vector.SyncVectorEnv(
            [rlcapture.CaptureWrapper.factory(make, rec, i) for i in range(2)]
        )
        obs, _ = envs.reset(seed=5)
        for _ in range(70):
            obs, *_ = envs.step(lean_policy(obs))
        envs.close()
    lines = [r for r in read_manifest(tmp_path) if r["end"] in FINISHED]
    assert sum(r["seed"] is None for r in lines) >= 4
    for r in lines:
        got = replay(tmp_path, r["env"], r["episode"], make_env=make, policy=lean_policy, config=LOSSLESS_CONFIG)
        assert got.matches
        assert _same_frames(tmp_path / r["video"], got.video) == r["length"] + 1


def test_replay_command(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code = main([
        "record", "-n", "2", "-k", "4", "--seed", "9", "--max-episode-steps", "100",
        "--policy", "envs_for_tests:lean_policy", "--out", str(out), "-q",
    ])  # fmt: skip
    assert code == 0
    lines = read_manifest(out)
    r = lines[-1]
    capsys.readouterr()
    argv = ["replay", str(out), "--env", str(r["env"]), "--episode", str(r["episode"])]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert f"return {r['return']:g}, length {r['length']} (as recorded)" in stdout
    video = out / "replays" / f"env{r['env']}-episode{r['episode']}.mp4"
    assert decode(video).count == r["length"] + 1
    # The file is not overwritten unless asked.
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert main([*argv, "--overwrite", "--out", str(tmp_path / "x.mp4")]) == 0
    assert (tmp_path / "x.mp4").is_file()
    # Another policy goes another way: said, and exit status 1.
    capsys.readouterr()
    assert main([*argv, "--policy", "random", "--out", str(tmp_path / "y.mp4")]) == 1
    assert "went another way" in capsys.readouterr().out


def test_replay_refusals(tmp_path: Path, capsys) -> None:
    assert main(["replay", str(tmp_path), "--env", "0"]) == 2
    assert "no episodes.jsonl" in capsys.readouterr().err
    out = tmp_path / "run"
    envs = rlcapture.make_vec("CartPole-v1", 1, out, max_episode_steps=10, record="none")
    try:
        envs.reset(seed=0)
        for _ in range(25):
            envs.step(np.zeros(1, int))
    finally:
        envs.close()
    make = EnvFactory("CartPole-v1", max_episode_steps=10)
    with pytest.raises(rlcapture.ConfigError, match="no episode 9 of env 0"):
        replay(out, 0, 9, make_env=make)
    # Random actions outside an evaluation were not drawn from the episode's seed.
    with pytest.raises(rlcapture.ConfigError, match="cannot be drawn again"):
        replay(out, 0, 1, make_env=make, policy="random")
    with pytest.raises(rlcapture.ConfigError, match="policy must be"):
        replay(out, 0, 1, make_env=make, policy=3)
    # A fixed policy replays it, unseeded as it was.
    got = replay(out, 0, 1, make_env=make, policy=lambda obs: np.zeros(len(obs), int))
    assert got.matches
