"""Env ids: whatever ``gymnasium.make`` takes, rlcapture takes, from Python and the command line.

``module:EnvName-v0``, namespaced ids registered by a package (Atari through
ale-py), ``EnvSpec`` objects, env kwargs, ``--import MODULE``, and
Gymnasium's ``check_env`` on a ``CaptureWrapper``.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import closing
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import decode, read_manifest
from gymnasium.utils.env_checker import check_env

import rlcapture
from rlcapture.cli import main
from rlcapture.envs import check_env_id, make_env_fn

TINY = "rlcapture-envtest/Tiny-v0"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fresh_module(monkeypatch: pytest.MonkeyPatch) -> str:
    """``registered_envs`` as if never imported: its ids unregistered, the module unloaded."""
    monkeypatch.delitem(sys.modules, "registered_envs", raising=False)
    for name in [k for k in gym.registry if k.startswith("rlcapture-envtest/")]:
        monkeypatch.delitem(gym.registry, name)
    return "registered_envs"


def test_module_prefix_imports_the_module_first(fresh_module: str, tmp_path: Path) -> None:
    with pytest.raises(rlcapture.EnvError, match="unknown env id"):
        check_env_id(TINY)  # not registered until its module is imported
    spec = check_env_id(f"{fresh_module}:{TINY}")
    assert spec.id == TINY
    with closing(rlcapture.make_vec(f"{fresh_module}:{TINY}", 2, tmp_path / "out")) as envs:
        envs.reset(seed=0)
        for _ in range(3):
            envs.step(np.zeros(2, int))
    lines = read_manifest(tmp_path / "out")
    assert len(lines) == 2 and all(r["length"] == 3 for r in lines)
    assert decode(tmp_path / "out" / lines[0]["video"]).count == 4


def test_spawned_workers_need_no_registration(fresh_module: str, tmp_path: Path) -> None:
    """A spawned worker has not imported the module that registered the id: the spec suffices."""
    fn = make_env_fn(f"{fresh_module}:{TINY}", env_kwargs={"length": 2})
    with closing(rlcapture.CaptureVectorEnv([fn], tmp_path / "out", context="spawn")) as envs:
        envs.reset(seed=0)
        for _ in range(2):
            envs.step(np.zeros(1, int))
    assert [r["length"] for r in read_manifest(tmp_path / "out")] == [2]


def test_env_spec_objects_and_kwargs(tmp_path: Path) -> None:
    import registered_envs  # noqa: F401 - registers the ids

    spec = gym.spec(TINY)
    with closing(rlcapture.make_vec(spec, 1, tmp_path / "a", env_kwargs={"length": 5})) as envs:
        envs.reset(seed=0)
        for _ in range(5):
            envs.step(np.zeros(1, int))
    assert [r["length"] for r in read_manifest(tmp_path / "a")] == [5]
    # A spec carrying its own kwargs, as gym.make takes it.
    custom = gym.envs.registration.EnvSpec("Custom-v0", entry_point=spec.entry_point, kwargs={"length": 4})
    fn = make_env_fn(custom, max_episode_steps=2)
    env = fn()
    try:
        assert env.spec is not None and env.spec.max_episode_steps == 2
        assert env.unwrapped.length == 4
    finally:
        env.close()
    with pytest.raises(rlcapture.ConfigError, match="render_mode"):
        make_env_fn(TINY, env_kwargs={"render_mode": "human"})
    with pytest.raises(rlcapture.ConfigError, match="env_kwargs"):
        make_env_fn(TINY, env_kwargs=["length", 3])  # type: ignore[arg-type]


def test_cli_import_and_env_kwargs(fresh_module: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code, stdout, stderr = run(
        capsys, "record", TINY, "--import", fresh_module, "--env-kwargs", '{"length": 6}',
        "-n", "2", "-k", "3", "--out", str(out), "-q",
    )  # fmt: skip
    assert code == 0, stderr
    lines = read_manifest(out)
    assert len(lines) == 3 and {r["length"] for r in lines} == {6}
    for r in lines:
        assert decode(out / r["video"]).count == 7
    assert "recorded 3 episodes" in stdout


def test_unknown_namespace_names_the_fix(capsys, tmp_path: Path) -> None:
    code, _, stderr = run(capsys, "record", "NoSuchNamespace/Thing-v0", "--out", str(tmp_path / "o"))
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "--import PACKAGE" in stderr and "PACKAGE:NoSuchNamespace/Thing-v0" in stderr
    assert not (tmp_path / "o").exists()


def test_check_env_passes_on_a_capture_wrapper(tmp_path: Path) -> None:
    """Gymnasium's checker remakes the env from its spec: the copy records nothing."""
    with rlcapture.Recorder(tmp_path / "out") as rec:
        for index, inner in enumerate(
            [gym.make("CartPole-v1", render_mode="rgb_array"), gym.make("CartPole-v1", render_mode="rgb_array").unwrapped]
        ):
            env = rlcapture.CaptureWrapper(inner, rec, index)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the checker's advice about infinite Box bounds
                check_env(env)
            assert env.spec is not None and env.spec.additional_wrappers[-1].name == "CaptureWrapper"
            assert env.metadata["render_modes"] == ["rgb_array"]
            env.close()
    lines = read_manifest(tmp_path / "out")
    assert lines and {r["env"] for r in lines} == {0, 1}  # the copies wrote none


# -- Atari through ale-py: a namespace registered by a package ------------------------------
@pytest.mark.parametrize("how", ["import", "prefix"])
def test_atari_from_the_command_line(tmp_path: Path, capsys, how: str) -> None:
    pytest.importorskip("ale_py")
    out = tmp_path / how
    argv = ["ALE/Pong-v5", "--import", "ale_py"] if how == "import" else ["ale_py:ALE/Pong-v5"]
    code, stdout, stderr = run(
        capsys, "record", *argv, "--max-episode-steps", "6", "-n", "2", "-k", "2", "--out", str(out), "-q"
    )
    assert code == 0, stderr
    lines = read_manifest(out)
    assert len(lines) == 2
    for r in lines:
        assert r["length"] == 6 and r["end"] == "truncated"
        video = decode(out / r["video"])
        assert video.count == 7 and (video.width, video.height) == (160, 210)
    assert "ALE/Pong-v5" in stdout


def test_atari_namespace_from_python(tmp_path: Path) -> None:
    ale_py = pytest.importorskip("ale_py")
    gym.register_envs(ale_py)
    with closing(rlcapture.make_vec("ALE/Pong-v5", 1, tmp_path / "out", max_episode_steps=3)) as envs:
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (1, 210, 160, 3)
        for _ in range(3):
            envs.step(np.zeros(1, int))
    assert [r["length"] for r in read_manifest(tmp_path / "out")] == [3]
