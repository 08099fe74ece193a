"""Stable-Baselines3: evaluate_policy, EvalCallback and RecordCallback through the recording VecEnv."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import decode, read_manifest

sb3 = pytest.importorskip("stable_baselines3")

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import EvalCallback  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402

import rlcapture  # noqa: E402
from rlcapture.cli import main  # noqa: E402
from rlcapture.results.plot import load_series  # noqa: E402
from rlcapture.sb3 import RecordCallback, SB3VecEnv, make_sb3_vec  # noqa: E402


@pytest.fixture(scope="module")
def model() -> PPO:
    m = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=2, device="cpu", seed=0)
    m.learn(256)
    return m


def report_data(page: Path) -> dict:
    """The JSON a report page embeds (its ``<script type="application/json">``)."""
    text = page.read_text(encoding="utf-8")
    start = text.index('id="rlcapture-data">') + len('id="rlcapture-data">')
    return json.loads(text[start : text.index("</script>", start)])


def check_videos(out: Path, lines: list[dict]) -> None:
    for r in lines:
        assert r["end"] in ("terminated", "truncated")
        assert decode(out / r["video"]).count == r["length"] + 1 == r["frames"]


def test_evaluate_policy_records_every_episode(tmp_path: Path, model: PPO) -> None:
    out = tmp_path / "eval"
    env = make_sb3_vec("CartPole-v1", 2, out, n_eval_episodes=4)
    assert isinstance(env, SB3VecEnv)
    try:
        env.seed(3)
        returns, lengths = evaluate_policy(model, env, n_eval_episodes=4, return_episode_rewards=True)
    finally:
        env.close()
    lines = read_manifest(out)
    assert len(lines) == 4
    check_videos(out, lines)
    assert Counter(map(float, returns)) == Counter(float(r["return"]) for r in lines)
    assert Counter(lengths) == Counter(r["length"] for r in lines)
    assert {r["seed"] for r in lines if r["episode"] == 0} == {3, 4}


def test_step_infos_follow_sb3(tmp_path: Path) -> None:
    env = make_sb3_vec("CartPole-v1", 2, tmp_path, record="none")
    try:
        obs = env.reset()
        assert obs.shape == (2, 4)
        assert env.get_attr("render_mode") == ["rgb_array", "rgb_array"]
        assert env.env_is_wrapped(sb3.common.monitor.Monitor) == [True, True]
        with pytest.raises(AttributeError):
            env.get_attr("no_such_attribute")
        ended = 0
        for _ in range(200):
            _obs, _rewards, dones, infos = env.step(np.array([env.action_space.sample() for _ in range(2)]))
            assert len(infos) == 2 and all("TimeLimit.truncated" in i for i in infos)
            for done, info in zip(dones, infos):
                if done:
                    ended += 1
                    assert info["terminal_observation"].shape == (4,)
                    assert set(info["episode"]) == {"r", "l", "t"}
                else:
                    assert "terminal_observation" not in info and "episode" not in info
        assert ended >= 4
    finally:
        env.close()


def test_needs_same_step_autoreset(tmp_path: Path) -> None:
    venv = rlcapture.make_vec("CartPole-v1", 1, tmp_path)
    try:
        with pytest.raises(rlcapture.ConfigError, match="SAME_STEP"):
            SB3VecEnv(venv)
    finally:
        venv.close()


@pytest.mark.filterwarnings("ignore:Training and eval env are not of the same type")
def test_callbacks_record_during_learn(tmp_path: Path) -> None:
    m = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, device="cpu", seed=1)
    rounds = RecordCallback("CartPole-v1", tmp_path / "rounds", every=64, episodes=2, num_envs=2)
    with rlcapture.Recorder(tmp_path / "shared") as recorder:
        shared = RecordCallback("CartPole-v1", recorder, every=128, episodes=3, num_envs=2, seed=5)
        eval_env = make_sb3_vec("CartPole-v1", 2, tmp_path / "evalcb", record="every:2")
        evalcb = EvalCallback(eval_env, n_eval_episodes=2, eval_freq=64, verbose=0)
        try:
            m.learn(128, callback=[rounds, shared, evalcb])
        finally:
            eval_env.close()
    assert [h["timesteps"] for h in rounds.history] == [64, 128]
    for h in rounds.history:
        lines = read_manifest(h["out"])
        assert len(lines) == 2
        check_videos(Path(h["out"]), lines)
        assert Counter(h["returns"]) == Counter(float(r["return"]) for r in lines)
    # The rounds' folder is one run for plot and report: against the training timestep.
    assert main(["plot", str(tmp_path / "rounds")]) == 0
    assert (tmp_path / "rounds" / "learning_curve.png").stat().st_size > 1000
    (series,) = load_series(tmp_path / "rounds")
    assert sorted(series.xs.tolist()) == [64.0, 64.0, 128.0, 128.0]
    assert sorted(series.returns.tolist()) == sorted(r for h in rounds.history for r in h["returns"])
    assert main(["report", str(tmp_path / "rounds")]) == 0
    data = report_data(tmp_path / "rounds" / "report.html")
    (run,) = data["runs"]
    assert [p["timestep"] for p in run["per_round"]] == [64, 128]
    assert [p["episodes"] for p in run["per_round"]] == [2, 2]
    assert sorted(e["timestep"] for e in data["episodes"]) == [64, 64, 128, 128]
    assert run["curve"] and (tmp_path / "rounds" / run["curve"]).is_file()
    assert len(shared.history) == 1
    lines = read_manifest(tmp_path / "shared")
    assert len(lines) == 3
    check_videos(tmp_path / "shared", lines)
    assert evalcb.last_mean_reward > 0
    ended = [r for r in read_manifest(tmp_path / "evalcb") if r["end"] in ("terminated", "truncated")]
    assert len(ended) >= 4  # two evaluations of two episodes each


def test_cli_sb3_policy(tmp_path: Path, model: PPO, capsys) -> None:
    path = tmp_path / "tiny.zip"
    model.save(path)
    out = tmp_path / "cli"
    code = main(["record", "-n", "2", "-k", "2", "--policy", f"sb3:PPO:{path}", "--out", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    lines = read_manifest(out)
    assert len(lines) == 2
    # Deterministic by default: the same as evaluating the model on the same seeds.
    env = make_sb3_vec("CartPole-v1", 2, tmp_path / "ref", n_eval_episodes=2, record="none")
    try:
        env.seed(0)
        returns, _ = evaluate_policy(model, env, n_eval_episodes=2, return_episode_rewards=True)
    finally:
        env.close()
    assert Counter(map(float, returns)) == Counter(float(r["return"]) for r in lines)
    code = main(["record", "-n", "1", "-k", "1", "--policy", f"sb3:PPO:{path}", "--stochastic",
                 "--out", str(tmp_path / "stoch"), "-q"])  # fmt: skip
    assert code == 0
    for bad, match in [
        (f"sb3:NOPE:{path}", "unknown SB3 algorithm"),
        ("sb3:PPO:" + str(tmp_path / "missing.zip"), "no SB3 model"),
        ("sb3:PPO", "sb3:ALGO:path.zip"),
    ]:
        capsys.readouterr()
        assert main(["record", "-n", "1", "-k", "1", "--policy", bad, "--out", str(tmp_path / "bad"), "-q", "--overwrite"]) == 2
        assert match in capsys.readouterr().err


def test_missing_sb3_says_how_to_install(monkeypatch) -> None:
    import sys

    from rlcapture.sb3 import require_sb3

    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    with pytest.raises(ImportError, match=r"pip install 'rlcapture\[sb3\]'"):
        require_sb3()


def test_module_without_sb3_says_how_to_install(monkeypatch) -> None:
    import importlib
    import sys

    for name in [m for m in sys.modules if m.split(".")[0] == "stable_baselines3"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    monkeypatch.delitem(sys.modules, "rlcapture.sb3")
    with pytest.raises(rlcapture.ConfigError, match=r'pip install "rlcapture\[sb3\]"'):
        importlib.import_module("rlcapture.sb3")


def test_on_error_continue_is_refused_rather_than_hanging(tmp_path: Path) -> None:
    with pytest.raises(rlcapture.ConfigError, match="on_error='raise'"):
        make_sb3_vec("CartPole-v1", 1, tmp_path / "out", on_error="continue")


def test_attributes_and_methods_on_a_subset(tmp_path: Path) -> None:
    env = make_sb3_vec("CartPole-v1", 3, tmp_path / "out", record="none", envs_per_worker=2)
    try:
        env.reset()
        env.set_attr("marker", 7, indices=[0, 2])
        assert env.get_attr("marker", indices=[2, 0]) == [7, 7]
        with pytest.raises(AttributeError):
            env.get_attr("marker", indices=[1])  # env 1 was not touched
        assert env.env_method("get_wrapper_attr", "marker", indices=2) == [7]
        assert len(env.env_method("render", indices=[1])) == 1
    finally:
        env.close()


# -- a drop-in for SubprocVecEnv: the same answers to the same calls ------------------------
def _cartpole() -> object:
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor

    return Monitor(gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=30))


def _bare_cartpole() -> object:
    import gymnasium as gym

    return gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=30)


def _tiny() -> object:
    import gymnasium as gym
    import registered_envs  # noqa: F401

    return gym.make("rlcapture-envtest/Tiny-v0", render_mode="rgb_array", length=4)


def _compare(a: object, b: object) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (a, b)
        for k in a:
            if k != "t":  # Monitor's wall-clock time
                _compare(a[k], b[k])
    elif isinstance(a, (list, tuple)) and not isinstance(b, np.ndarray):
        assert len(a) == len(b), (a, b)
        for x, y in zip(a, b):
            _compare(x, y)
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float))
    else:
        assert a == b, (a, b)


@pytest.mark.timeout(300)
def test_same_steps_infos_and_resets_as_subproc_vec_env(tmp_path: Path) -> None:
    """Scripted actions over 600 steps, with many episode ends: every return value agrees.

    Each episode starts from a seeded reset (``seed`` then ``reset`` once any
    env is done), so the comparison does not rest on how an unseeded
    autoreset draws its state; the observation an autoreset returns is
    compared only once both are seeded again.
    """
    from stable_baselines3.common.vec_env import SubprocVecEnv

    # fork: the default forkserver would outlive the test (a child process left behind).
    ref = SubprocVecEnv([_cartpole, _cartpole, _bare_cartpole], start_method="fork")
    ours = SB3VecEnv.from_env_fns([_cartpole, _cartpole, _bare_cartpole], tmp_path / "out")
    try:
        ends = resets = 0
        for env in (ref, ours):
            env.seed(7)
        _compare(ref.reset(), ours.reset())
        _compare(ref.reset_infos, ours.reset_infos)
        rng = np.random.default_rng(0)
        for step in range(600):
            actions = rng.integers(0, 2, 3)
            a = ref.step(actions)
            b = ours.step(actions if step % 2 else list(actions))  # a list, as SB3 code passes
            done = a[2]
            _compare(a[2], b[2])
            _compare(a[1], b[1])
            _compare(a[0][~done], b[0][~done])
            for info_a, info_b in zip(a[3], b[3]):
                _compare(info_a, info_b)
            assert b[2].dtype == bool and b[1].dtype == a[1].dtype
            if done.any():
                ends += int(done.sum())
                resets += 1
                for env in (ref, ours):
                    env.seed(100 + step)
                    env.set_options({"low": -0.01, "high": 0.01})
                _compare(ref.reset(), ours.reset())
                _compare(ref.reset_infos, ours.reset_infos)
        assert ends > 20
    finally:
        ref.close()
        ours.close()
    # Every episode that ended is in the manifest, and so is each one cut by a reset.
    lines = read_manifest(tmp_path / "out")
    assert len([r for r in lines if r["end"] in ("terminated", "truncated")]) == ends
    assert len([r for r in lines if r["end"] == "reset"]) == 3 * resets  # autoreset ones too


@pytest.mark.timeout(300)
def test_attributes_wrappers_and_options_as_subproc_vec_env(tmp_path: Path) -> None:
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import SubprocVecEnv

    fns = [_tiny, _tiny, _tiny]
    ref = SubprocVecEnv([_bare_cartpole, _cartpole], start_method="fork")
    ours = SB3VecEnv.from_env_fns([_bare_cartpole, _cartpole], tmp_path / "a", record="none")
    try:
        for env in (ref, ours):
            env.reset()
        assert ours.env_is_wrapped(Monitor) == ref.env_is_wrapped(Monitor) == [False, True]
        assert ours.env_is_wrapped(Monitor, indices=-1) == [True]
        # Through the wrappers (CartPole's own attribute under TimeLimit and Monitor).
        assert ours.get_attr("gravity") == ref.get_attr("gravity") == [9.8, 9.8]
        with pytest.raises(AttributeError):
            ours.get_attr("no_such_attribute")
        assert not ours.has_attr("no_such_attribute")
        for env in (ref, ours):
            env.set_attr("marker", 3, indices=[-1])  # on the outermost wrapper
            env.env_method("set_wrapper_attr", "gravity", 1.5, indices=[0])
        for name in ("marker", "gravity"):
            assert ours.has_attr(name) == ref.has_attr(name)
        assert ours.get_attr("gravity") == ref.get_attr("gravity") == [1.5, 9.8]
        assert ours.get_attr("marker", indices=1) == ref.get_attr("marker", indices=1) == [3]
        assert ours.env_method("get_wrapper_attr", "marker", indices=[1]) == [3]
        frames = ours.get_images()
        assert len(frames) == 2 and frames[0].shape == (400, 600, 3)
        assert ours.render().shape == ref.render().shape
    finally:
        ref.close()
        ours.close()
    # Options given per env apply at the next reset only, each to its env.
    ours = SB3VecEnv.from_env_fns(fns, tmp_path / "b")
    try:
        ours.set_options([{"a": 1}, None, {"b": 2}])
        ours.reset()
        assert ours.get_attr("options", indices=[2]) == [{"b": 2}]
        assert ours.reset_infos[2] == {"options": {"b": 2}}
        ours.set_options({"c": 3})
        ours.reset()
        assert ours.get_attr("options", indices=[2]) == [{"c": 3}]
        ours.reset()
        assert ours.get_attr("options", indices=[2]) == [None]
    finally:
        ours.close()
