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
    outs = [p.parent for p in tmp_path.glob("runs/*/episodes.jsonl")]
    assert outs, "every example records into runs/"
    for out in outs:
        for r in read_manifest(out):
            if r["video"] and r["end"] in ("terminated", "truncated"):
                assert decode(out / r["video"]).count == r["length"] + 1
