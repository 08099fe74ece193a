"""The README's examples run, and CI runs the README's test command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, decode, read_manifest

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
COMMANDS = re.findall(r"```bash\n(.*?)\n```", README, re.S)


def test_ci_runs_the_readme_test_command() -> None:
    assert "pytest" in COMMANDS[1]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert COMMANDS[1] in ci, ".ci/run must call the README's test command exactly"
    assert COMMANDS[0].startswith("python -m pip install") and "rlcapture record CartPole-v1" in COMMANDS[0]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path, subprocess_env) -> None:
    script = tmp_path / "example.py"
    script.write_text(BLOCKS[index])
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=subprocess_env,
        capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outs = [p.parent for p in tmp_path.glob("runs/**/episodes.jsonl")]
    assert outs, "every example records into runs/"
    for out in outs:
        for r in read_manifest(out):
            if r["video"] and r["end"] in ("terminated", "truncated"):
                assert decode(out / r["video"]).count == r["length"] + 1


@pytest.mark.timeout(600)
def test_readme_commands_run(tmp_path: Path, subprocess_env) -> None:
    """Every ``rlcapture record``/``plot``/``report``/``replay`` line of the README runs, in order, in one folder.

    The block that saves an SB3 model runs first (the acceptance command
    evaluates that zip); ``rlcapture bench`` lines are left to the bench tests.
    """
    import shlex

    from rlcapture import read_manifest as read_folded

    first = COMMANDS[0].split("&&")[1].strip()  # the quick start's recording
    lines = [first] + [
        line
        for block in COMMANDS[2:]
        for line in block.splitlines()
        if line.startswith(("rlcapture record", "rlcapture plot", "rlcapture report", "rlcapture replay")) and "ENV_ID" not in line
    ]
    assert any("--keep worst:3" in line and "sb3:PPO:" in line for line in lines)
    (train,) = [b for b in BLOCKS if "model.save(" in b]
    pytest.importorskip("stable_baselines3")
    script = tmp_path / "train.py"
    script.write_text(train)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=subprocess_env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rlcapture = [sys.executable, "-m", "rlcapture.cli"]
    for line in lines:
        words = shlex.split(line.split("#")[0])
        done = subprocess.run([*rlcapture, *words[1:], *(["-q"] if words[1] == "record" else [])],
                              cwd=tmp_path, env=subprocess_env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0, f"{line}\n{done.stderr}"
    # the acceptance command: 3 seeds x 20 episodes, the 3 worst kept, keyframes
    for seed in (0, 20, 40):  # --seeds 3 with -k 20: runs K apart (issue 10)
        out = tmp_path / "runs" / "ppo-eval" / f"seed-{seed}"
        records = read_folded(out / "episodes.jsonl")
        assert len(records) == 20
        kept = [r for r in records if r["kept"]]
        assert len(kept) == 3
        assert sorted(r["return"] for r in kept) == sorted(r["return"] for r in records)[:3]
        for r in kept:
            assert decode(out / r["video"]).count == r["length"] + 1
            assert len(r["keyframes"]) == 2 and all((out / k).exists() for k in r["keyframes"])
        assert len(list((out / "videos").glob("*.mp4"))) == 3
