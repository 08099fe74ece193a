"""The README's error examples, with the real command in a subprocess: all of stderr counted.

``test_cli.py`` checks these messages in-process through capsys, which does
not see what worker and encoder processes write to the terminal. Here each
is run as a user runs it (``python -m rlcapture.cli record ...``) and the
whole of stderr must be the one ``rlcapture: error:`` line, with exit status
2. The examples are read from the README, so a new one there fails here
until it has a case.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from as_user import Unprivileged
from conftest import REPO

pytestmark = pytest.mark.timeout(180)

TESTS = Path(__file__).resolve().parent
README = (REPO / "README.md").read_text()

#: The README's sentence listing the mistakes that get one line and exit status 2.
MISTAKES = re.search(r"Mistakes \(([^)]*)\)\s+get a one-line error and exit status 2", README)
#: The missing tracker package's line, as the README quotes it.
MISSING_TRACKER = re.search(
    r"a\s+missing one is one line before anything starts: `([^`]*)`", README
)


def test_the_readme_lists_the_examples_checked_here() -> None:
    assert MISTAKES is not None and MISSING_TRACKER is not None
    listed = [m.strip() for m in re.split(r",\s*", " ".join(MISTAKES.group(1).split()))]
    assert listed == [
        "an unknown env id",
        "an env that cannot render to an array",
        "an unwritable folder",
    ], listed  # each one has a case below
    assert "values outside are refused in\none line naming the range found" in README


def cli(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``rlcapture record ARGV`` in a fresh Python, tests' env modules importable."""
    base = {
        "PYTHONPATH": f"{REPO}:{TESTS}",
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
    }
    return subprocess.run(
        [sys.executable, "-m", "rlcapture.cli", "record", "-q", *argv],
        cwd=tmp_path, env={**base, **env}, capture_output=True, text=True, timeout=150,
    )  # fmt: skip


def only_line(done: subprocess.CompletedProcess[str]) -> str:
    """The whole of stderr is one ``rlcapture: error:`` line; exit status 2."""
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert done.stderr.endswith("\n") and done.stderr.count("\n") == 1, done.stderr[-3000:]
    line = done.stderr.rstrip("\n")
    assert line.startswith("rlcapture: error: "), line
    return line


def test_an_unknown_env_id(tmp_path: Path) -> None:
    line = only_line(cli(tmp_path, "NoSuchEnv-v0", "-o", str(tmp_path / "out")))
    assert "unknown env id 'NoSuchEnv-v0'" in line
    assert not (tmp_path / "out").exists()


def test_an_env_that_cannot_render_to_an_array(tmp_path: Path) -> None:
    done = cli(
        tmp_path, "rlcapture-envtest/HumanOnly-v0", "--import", "registered_envs",
        "-n", "2", "-o", str(tmp_path / "out"),
    )  # fmt: skip
    line = only_line(done)
    assert "cannot render to an array" in line and "render_mode='rgb_array'" in line, line


def test_float_frames_outside_0_1(tmp_path: Path) -> None:
    """Raised in a worker, after Gymnasium's env checker has seen a float frame."""
    done = cli(
        tmp_path, "rlcapture-envtest/FloatFrames-v0", "--import", "registered_envs",
        "-n", "2", "-k", "2", "-o", str(tmp_path / "out"),
    )  # fmt: skip
    line = only_line(done)
    assert "float frames must hold values in [0, 1], this one holds [255, 255]" in line, line


def test_an_output_folder_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    line = only_line(cli(tmp_path, "-n", "1", "-k", "1", "-o", str(tmp_path / "file" / "out")))
    assert "cannot use output folder" in line, line


def test_an_unwritable_folder_as_a_user(tmp_path: Path) -> None:
    """The folder's permissions, as a user meets them (not root): ``as_user.py``."""
    with Unprivileged() as user:
        if user.reason:
            pytest.skip(user.reason)
        locked = user.folder("locked", 0o555)
        argv = [sys.executable, "-m", "rlcapture.cli", "record", "-q", "-n", "1", "-k", "1"]
        done = subprocess.run(
            user.command([*argv, "-o", str(locked / "out")]),
            env=user.env(), capture_output=True, text=True, timeout=150,
        )  # fmt: skip
        line = only_line(done)
        assert str(locked / "out") in line and "Permission denied" in line, line


def test_a_missing_tracker_package(tmp_path: Path) -> None:
    """The README's line, word for word, with mlflow hidden from the import system."""
    assert MISSING_TRACKER is not None
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['mlflow'] = None\n")
    done = cli(
        tmp_path, "-n", "1", "-k", "1", "-o", str(tmp_path / "out"), "--log", "mlflow",
        PYTHONPATH=f"{hide}:{REPO}:{TESTS}",
    )  # fmt: skip
    assert only_line(done) == f"rlcapture: error: {MISSING_TRACKER.group(1)}"
    assert not (tmp_path / "out").exists()
