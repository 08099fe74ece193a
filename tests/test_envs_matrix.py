"""One env of each family users record, from the command line, on a headless machine.

Classic control, Box2D, Atari (ale-py), MuJoCo (Gymnasium's), MiniGrid and
dm_control (through Shimmy), each recorded by ``rlcapture record`` in a
subprocess with no display and no OpenGL setting, as a new user on a server
runs it, and each video decoded. Short on purpose (one episode of a few
steps): the whole matrix costs seconds, and what it checks is that each
family installs, registers, renders and encodes, not how long it runs. The
install line of each is in the README's "Environments" section.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import PYTHON, decode, headless, read_manifest

#: (env id, modules to import); every package is in the test extra, so none is skipped.
MATRIX = {
    "classic-control": ("CartPole-v1", ()),
    "box2d": ("LunarLander-v3", ()),
    "atari": ("ALE/Pong-v5", ("ale_py",)),
    "mujoco": ("HalfCheetah-v5", ()),
    "minigrid": ("MiniGrid-Empty-5x5-v0", ("minigrid",)),
    "dm-control": ("dm_control/cartpole-balance-v0", ("shimmy",)),
}

#: What these libraries print of their own accord (not errors): ALE's banner, and
#: MuJoCo 3.3+ on HalfCheetah's model (one line and a blank one per process).
OWN_WORDS = (
    "A.L.E: Arcade Learning Environment",
    "[Powered by Stella]",
    "WARNING: compiler attribute 'settotalmass'",
)


@pytest.mark.parametrize("family", list(MATRIX))
def test_each_family_records_from_the_cli(tmp_path: Path, family: str) -> None:
    env_id, imports = MATRIX[family]
    env = headless()
    out = tmp_path / "out"
    argv = [
        env_id,
        "-n",
        "1",
        "-k",
        "1",
        "--seed",
        "3",
        "--max-episode-steps",
        "6",
        "--out",
        str(out),
        "-q",
    ]
    for module in imports:
        argv += ["--import", module]
    proc = subprocess.run(
        [PYTHON, "-m", "rlcapture.cli", "record", *argv],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    noise = [
        line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(OWN_WORDS)
    ]
    assert not noise, proc.stderr[-3000:]
    (record,) = read_manifest(out)
    assert record["seed"] == 3 and record["end"] in ("terminated", "truncated")
    assert 1 <= record["length"] <= 6 and record["frames"] == record["length"] + 1
    video = decode(out / record["video"], keep=True)
    assert video.count == record["frames"]
    assert video.width >= 64 and video.height >= 64
    assert max(float(np.std(f)) for f in video.frames) > 5  # a scene, not a blank frame
