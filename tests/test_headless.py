"""MuJoCo on a machine without a display, as a new user runs it: no DISPLAY, no MUJOCO_GL.

Each case runs ``rlcapture record`` in a subprocess whose environment has no
display and no OpenGL setting, with the real ``mujoco`` package (the test
extra) and Mesa's EGL and OSMesa (``.ci/run`` installs them with apt). The
videos are decoded and compared with what ``env.render()`` gives for the same
seed and actions, rendered in another process on the platform ``run.json``
names. Without EGL and OSMesa (their libraries hidden by empty files mounted
over them in a mount namespace of the run's own), the run ends in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PYTHON, decode, headless, read_manifest

#: Deterministic policies (a function of the observation), so the reference can act again.
POLICY = """
import numpy as np

def cheetah(obs):
    return np.tanh(np.asarray(obs)[:, :6]).astype(np.float32)

def hopper(obs):
    return np.tanh(np.asarray(obs)[:, :3]).astype(np.float32)
"""

#: Renders each recorded episode again with plain Gymnasium, for the comparison.
REFERENCE = """
import json, sys
import gymnasium as gym
import numpy as np
import headless_policies

env_id, policy, steps, records, out = sys.argv[1:6]
act = getattr(headless_policies, policy)
frames = {}
for r in json.loads(records):
    env = gym.make(env_id, render_mode="rgb_array", max_episode_steps=int(steps))
    obs, _ = env.reset(seed=r["seed"])
    shown = [env.render()]
    for _ in range(r["length"]):
        obs, *_ = env.step(act(obs[None])[0])
        shown.append(env.render())
    env.close()
    frames[f"{r['env']}-{r['episode']}"] = np.stack(shown)
np.savez(out, **frames)
"""


def record(cwd: Path, *argv: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, PYTHON, "-m", "rlcapture.cli", "record", *argv],
        cwd=cwd, env=headless(cwd), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env_id", "policy"), [("HalfCheetah-v5", "cheetah"), ("Hopper-v5", "hopper")]
)
def test_mujoco_records_headless_with_no_setting(tmp_path: Path, env_id: str, policy: str) -> None:
    (tmp_path / "headless_policies.py").write_text(POLICY)
    out, steps = tmp_path / "out", "12"
    proc = record(
        tmp_path, env_id, "-n", "2", "-k", "2", "--seed", "5", "--max-episode-steps", steps,
        "--policy", f"headless_policies:{policy}", "--out", str(out), "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    if env_id == "Hopper-v5":  # HalfCheetah's XML makes MuJoCo 3.3+ warn of its own accord
        assert proc.stderr == ""
    run = json.loads((out / "run.json").read_text())
    platform = run["gl"]["platform"]
    assert run["gl"]["source"] == "chosen" and platform in ("egl", "osmesa"), run["gl"]
    records = read_manifest(out)
    assert sorted(r["seed"] for r in records) == [5, 6]
    reference = tmp_path / "reference.npz"
    subprocess.run(
        [PYTHON, "-c", REFERENCE, env_id, policy, steps, json.dumps(records), str(reference)],
        cwd=tmp_path, env=headless(tmp_path, MUJOCO_GL=platform, PYOPENGL_PLATFORM=platform),
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    expected = np.load(reference)
    for r in records:
        want = expected[f"{r['env']}-{r['episode']}"]
        got = decode(out / r["video"], keep=True)
        assert got.count == len(want) == r["frames"] == r["length"] + 1
        assert want.std() > 10  # a scene, not a blank frame
        for shown, rendered in zip(got.frames, want):
            assert shown.shape == rendered.shape
            diff = np.abs(shown.astype(np.int16) - rendered).mean()
            assert diff < 3.0, diff  # H.264's loss, a level or two on average


def _libraries() -> list[str]:
    """The EGL and OSMesa libraries this machine loads (resolved: what a bind mount covers)."""
    found: set[str] = set()
    for folder in (
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ):
        for pattern in ("libEGL.so*", "libOSMesa.so*"):
            found.update(os.path.realpath(p) for p in Path(folder).glob(pattern))
    return sorted(found)


def test_without_egl_or_osmesa_the_run_ends_in_one_line(tmp_path: Path) -> None:
    """As on a server without Mesa: the libraries are replaced by empty files, for this run only."""
    libraries = _libraries()
    if not libraries or shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root, unshare and the EGL/OSMesa libraries to hide")
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespaces here")
    empty = tmp_path / "empty.so"
    empty.write_bytes(b"")
    mounts = " && ".join(f"mount --bind {empty} {lib}" for lib in libraries)
    out = tmp_path / "out"
    proc = record(
        tmp_path, "Hopper-v5", "-n", "2", "--max-episode-steps", "5", "--out", str(out), "-q",
        prefix=("unshare", "-m", "sh", "-c", f'{mounts} && exec "$0" "$@"'),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    line = lines[0]
    assert line.startswith("rlcapture: error: env ")
    for needle in (
        "MUJOCO_GL=egl",
        "MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa",
        "libegl1",
        "libosmesa6",
    ):
        assert needle in line, line
    assert json.loads((out / "run.json").read_text())["gl"] == {"platform": None, "source": "none"}
    # This process still finds them: the run's namespace hid them from it alone.
    assert all(Path(lib).stat().st_size > 0 for lib in libraries)


def test_the_users_setting_wins(tmp_path: Path) -> None:
    """MUJOCO_GL=osmesa set by the user: OSMesa, though EGL would load; PyOpenGL told to match."""
    out = tmp_path / "out"
    env = headless(tmp_path, MUJOCO_GL="osmesa")
    proc = subprocess.run(
        [PYTHON, "-m", "rlcapture.cli", "record", "Hopper-v5", "-n", "1", "-k", "1",
         "--max-episode-steps", "3", "--out", str(out), "-q"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["gl"] == {
        "platform": "osmesa",
        "source": "set",
    }
    assert decode(out / read_manifest(out)[0]["video"]).count == 4


def test_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """What is picked, by whom, and what is set, for each environment a process may have."""
    from rlcapture._backend import gl_platform

    monkeypatch.setattr(gl_platform, "_probe", lambda: "osmesa")
    assert gl_platform.choose({"DISPLAY": ":0"}).source == "display"
    assert gl_platform.choose({"WAYLAND_DISPLAY": "wayland-0"}).variables == {}
    picked = gl_platform.choose({})
    assert (picked.platform, picked.source) == ("osmesa", "chosen")
    assert picked.variables == {"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"}
    environ = {"PYOPENGL_PLATFORM": "osmesa"}  # half of the pair: the other completed to match
    assert gl_platform.prepare(environ).source == "set"
    assert environ == {"PYOPENGL_PLATFORM": "osmesa", "MUJOCO_GL": "osmesa"}
    environ = {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl", "DISPLAY": ":1"}
    assert gl_platform.prepare(environ).platform == "egl" and len(environ) == 3  # nothing changed
    monkeypatch.setattr(gl_platform, "_probe", lambda: None)
    environ = {}
    assert gl_platform.prepare(environ) == gl_platform.GLPlatform(None, "none") and environ == {}


@pytest.mark.skipif(sys.platform != "linux", reason="the probe loads Linux libraries")
def test_the_probe_finds_what_the_machine_has() -> None:
    """Here (the test machine has Mesa's EGL and OSMesa: .ci/run installs them) both load."""
    from rlcapture._backend import gl_platform

    if not any("libEGL" in lib for lib in _libraries()):
        pytest.skip("no EGL here")
    assert gl_platform.egl_loads()
    if any("libOSMesa" in lib for lib in _libraries()):
        assert gl_platform.osmesa_loads()
