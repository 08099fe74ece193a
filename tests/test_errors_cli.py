"""Foreseeable mistakes on the command line: one line on stderr, exit status 2, no traceback.

Each case is run as a user runs it (``python -m rlcapture.cli record ...`` in a
subprocess), so what the workers and the encoder print reaches the same
stderr as the error line. Nothing already recorded is lost, and a run that
failed before its first frame does not block the rerun.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PYTHON, REPO, decode, read_manifest

TESTS = Path(__file__).resolve().parent
#: What a bare terminal session may lack; our children must be quiet without them.
_DISPLAY_VARS = ("SDL_VIDEODRIVER", "SDL_AUDIODRIVER", "XDG_RUNTIME_DIR", "DISPLAY", "WAYLAND_DISPLAY")


def bare_env(**extra: str) -> dict[str, str]:
    """The environment of a plain shell: no display, no runtime dir, no SDL settings."""
    env = {k: v for k, v in os.environ.items() if k not in _DISPLAY_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(TESTS), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def record(
    cwd: Path, *argv: str, preexec: object = None, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "rlcapture.cli", "record", *argv],
        cwd=cwd,
        env=bare_env(**extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,  # type: ignore[arg-type]
    )


def one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit status 2 and exactly one line on stderr, holding every needle; that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    line = lines[0]
    assert line.startswith("rlcapture: error: "), line
    for needle in needles:
        assert needle in line, line
    return line


def test_a_clean_run_prints_nothing_on_stderr(tmp_path: Path) -> None:
    """No "XDG_RUNTIME_DIR is invalid" line per worker, no warning, no traceback."""
    proc = record(tmp_path, "CartPole-v1", "-n", "3", "-k", "3", "--max-episode-steps", "5", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert len(read_manifest(tmp_path / "runs" / "CartPole-v1")) == 3


@pytest.mark.timeout(600)  # three processes that import torch
def test_sb3_model_of_other_spaces(tmp_path: Path) -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    model = tmp_path / "cartpole.zip"
    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, device="cpu").save(model)
    out = tmp_path / "out"
    proc = record(tmp_path, "Acrobot-v1", "--policy", f"sb3:PPO:{model}", "--out", str(out), "-q")
    one_line(proc, "trained on observations Box(shape=(4,)", "Discrete(2)", "Acrobot-v1", "Box(shape=(6,)")
    # It failed before its first frame: the same command may run again at once.
    proc = record(tmp_path, "CartPole-v1", "--policy", f"sb3:PPO:{model}", "-k", "1", "--out", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    assert len(read_manifest(out)) == 1


def test_an_encoder_that_cannot_open_is_refused_before_the_run(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    from rlcapture._backend.video import VideoOptions, probe_encoder

    if "h264_nvenc" not in av.codecs_available:
        pytest.skip("this FFmpeg has no h264_nvenc")
    try:
        probe_encoder(VideoOptions(codec="h264_nvenc"))
        pytest.skip("h264_nvenc opens here (an NVIDIA GPU)")
    except ValueError:
        pass
    out = tmp_path / "out"
    proc = record(tmp_path, "--codec", "h264_nvenc", "--out", str(out), "-q")
    one_line(proc, "'h264_nvenc' cannot open", "NVIDIA GPU", "--codec libx264")
    assert not out.exists()  # refused before the folder was touched


def test_a_run_that_failed_before_its_first_frame_does_not_block_the_rerun(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = record(tmp_path, "--policy", "no_such_module:act", "--out", str(out), "-q")
    one_line(proc, "cannot import policy module 'no_such_module'")
    proc = record(tmp_path, "-k", "2", "--max-episode-steps", "5", "--out", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    assert len(read_manifest(out)) == 2
    # A recording that holds episodes is still protected.
    one_line(record(tmp_path, "-k", "1", "--out", str(out), "-q"), "already holds a recording")
    assert len(read_manifest(out)) == 2


BROKEN = """
import gymnasium
raise RuntimeError("this module is broken on purpose\\nsecond line of the message")
"""


def test_an_env_module_that_fails_to_import(tmp_path: Path) -> None:
    (tmp_path / "broken_envs.py").write_text(BROKEN)
    for argv in (["--import", "broken_envs", "CartPole-v1"], ["broken_envs:Broken-v0"]):
        one_line(
            record(tmp_path, *argv, "--out", str(tmp_path / "o"), "-q"),
            "importing env module 'broken_envs' failed: RuntimeError: this module is broken on purpose",
        )
    one_line(
        record(tmp_path, "--import", "no_such_env_module", "--out", str(tmp_path / "o"), "-q"),
        "cannot import env module 'no_such_env_module'",
    )
    one_line(
        record(tmp_path, "--env-kwargs", "{not json", "--out", str(tmp_path / "o"), "-q"),
        "--env-kwargs must be a JSON object",
    )
    one_line(
        record(tmp_path, "--env-kwargs", "[1, 2]", "--out", str(tmp_path / "o"), "-q"),
        "--env-kwargs must be a JSON object",
    )
    one_line(
        record(tmp_path, "--env-kwargs", '{"no_such_kwarg": 1}', "-k", "1", "--out", str(tmp_path / "k"), "-q"),
        "no_such_kwarg",
    )


@pytest.mark.parametrize("env_id", ["rlcapture-envtest/NoGL-v0", "rlcapture-envtest/Glad-v0"])
def test_mujoco_without_an_opengl_backend(tmp_path: Path, env_id: str) -> None:
    """As MuJoCo fails on a machine with no display, no EGL and no OSMesa."""
    proc = record(tmp_path, env_id, "--import", "registered_envs", "-n", "2", "--out", str(tmp_path / "o"), "-q")
    one_line(proc, "MUJOCO_GL=egl", "MUJOCO_GL=osmesa", "libosmesa6", "libegl1")


EGL_AT_IMPORT = """
import gymnasium as gym

class Env(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

gym.register("rlcapture-envtest/EGL-v0", entry_point="egl_envs:Env")
"""

EGL_ENTRY = """
# As gymnasium.envs.mujoco.mujoco_env with MUJOCO_GL=egl and no EGL: importing
# mujoco raises ImportError, which Gymnasium reports as "MuJoCo is not installed".
from gymnasium import error

try:
    raise ImportError(
        "Cannot initialize a EGL device display. This likely means that your EGL driver does "
        "not support the PLATFORM_DEVICE extension, which is required for creating a headless "
        "rendering context."
    )
except ImportError as e:
    raise error.DependencyNotInstalled('MuJoCo is not installed, run `pip install "gymnasium[mujoco]"`') from e
"""


def test_mujoco_egl_missing_at_import(tmp_path: Path) -> None:
    (tmp_path / "egl_envs.py").write_text(EGL_AT_IMPORT.replace("egl_envs:Env", "egl_entry:Env"))
    (tmp_path / "egl_entry.py").write_text(EGL_ENTRY)
    proc = record(tmp_path, "egl_envs:rlcapture-envtest/EGL-v0", "--out", str(tmp_path / "o"), "-q")
    one_line(proc, "MUJOCO_GL=osmesa", "libosmesa6")


def test_a_full_disk_is_one_line_and_keeps_what_was_written(tmp_path: Path) -> None:
    """A file size limit on the run (``ulimit -f``), the stand-in for a full disk.

    The workers, whose episode ends reach a dead encoder, must not print
    their tracebacks before the recorder's one line.
    """
    limit = 150_000

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "out"
    proc = record(
        tmp_path, "rlcapture-envtest/Noise-v0", "--import", "registered_envs", "--env-kwargs",
        '{"length": 40}', "-n", "3", "-k", "30", "--out", str(out), "-q", preexec=limit_files,
    )  # fmt: skip
    line = one_line(proc, "File too large")
    assert "videos/env" in line
    records = read_manifest(out)
    whole = [r for r in records if r.get("video") and "error" not in r]
    assert whole  # the episodes written before the limit are kept, and play in full
    for r in whole:
        assert decode(out / r["video"]).count == r["frames"]


def test_cli_errors_are_single_lines_even_when_the_message_is_not(tmp_path: Path, capsys) -> None:
    """An error whose message spans lines is printed on one."""
    from rlcapture.cli import main

    (tmp_path / "multiline_envs.py").write_text(BROKEN)
    sys.path.insert(0, str(tmp_path))
    try:
        assert main(["record", "--import", "multiline_envs", "--out", str(tmp_path / "o")]) == 2
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("multiline_envs", None)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1


def test_an_env_error_is_one_line_naming_the_log_and_keeps_what_finished(tmp_path):
    """The worker's traceback and Gymnasium's warnings go to OUT/rlcapture.log, not the terminal."""
    out = tmp_path / "o"
    proc = record(tmp_path, "rlcapture-envtest/StepFails-v0", "--import", "registered_envs", "-n", "1",
                  "--episodes", "5", "--out", str(out), "-q")  # fmt: skip
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "ValueError" in line and "diverged at step 2 of episode 2" in line
    assert line.endswith(f"; traceback in {out / 'rlcapture.log'}")
    log = (out / "rlcapture.log").read_text()
    assert "Traceback (most recent call last)" in log and "raise ValueError" in log
    assert "Received the following error from Worker-0" in log  # the Python API's warning, logged
    finished = [r for r in read_manifest(out) if r["end"] == "terminated"]
    assert [r["episode"] for r in finished] == [0, 1]
    for r in finished:
        assert decode(out / r["video"]).count == r["frames"]
