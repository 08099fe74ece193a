"""Permission errors as a user meets them: the command run by an unprivileged user.

Root writes into read-only folders, and CI runs as root, so these run the
real command (``python -m rlcapture.cli record``, in a subprocess) as
``nobody`` (``as_user.py``; as anyone else, as themselves). An output folder
the user cannot write to, and a folder made read-only while the run records:
one line on stderr, exit status 2, and nothing already written is lost (the
manifest's earlier lines stay, and their videos decode in full).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from as_user import USER, Unprivileged
from conftest import decode, read_manifest, wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def user() -> Iterator[Unprivileged]:
    with Unprivileged() as unprivileged:
        if unprivileged.reason:
            pytest.skip(unprivileged.reason)
        yield unprivileged


def one_line(stderr: str, returncode: int, *needles: str) -> str:
    """Exit status 2 and exactly one line on stderr, holding every needle."""
    assert returncode == 2, (returncode, stderr[-3000:])
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr[-3000:]
    (line,) = lines
    assert line.startswith("rlcapture: error: "), line
    for needle in needles:
        assert needle in line, line
    return line


def record(user: Unprivileged, out: Path, *argv: str) -> list[str]:
    return user.command(
        [
            sys.executable,
            "-m",
            "rlcapture.cli",
            "record",
            "CartPole-v1",
            "-q",
            "-o",
            str(out),
            *argv,
        ]
    )


@pytest.mark.parametrize("where", ["out", "parent"])
def test_an_unwritable_output_folder_is_one_line(user: Unprivileged, where: str) -> None:
    """The folder exists and is read-only, or its parent is: refused before anything runs."""
    locked = user.folder(f"locked-{where}", 0o555)
    out = locked if where == "out" else locked / "out"
    done = subprocess.run(
        record(user, out, "-n", "1", "-k", "1"),
        env=user.env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    one_line(done.stderr, done.returncode, str(out), "Permission denied")
    assert list(locked.iterdir()) == []  # nothing was written


@pytest.mark.parametrize("what", ["videos", "tree"])
def test_a_folder_made_read_only_mid_run_is_one_line_and_keeps_what_was_written(
    user: Unprivileged, what: str
) -> None:
    """``videos/`` (or the whole output) made read-only while the run records."""
    out = user.folder(f"out-{what}") / "run"
    proc = subprocess.Popen(
        record(user, out, "-n", "2", "-k", "100000", "--max-episode-steps", "12"),
        env=user.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        manifest = out / "episodes.jsonl"

        def lines() -> int:
            return manifest.read_text().count("\n") if manifest.exists() else 0

        assert wait_until(lambda: lines() >= 4 or proc.poll() is not None, 90.0), "no episodes"
        assert proc.poll() is None, proc.communicate()
        for folder in [out / "videos", out][: 2 if what == "tree" else 1]:
            folder.chmod(0o555)
        before = read_manifest(out)
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    line = one_line(stderr, proc.returncode, "Permission denied")
    assert "videos/env" in line, line
    after = read_manifest(out)
    assert after[: len(before)] == before  # every line written before is still there, unchanged
    for r in before:  # and its video plays in full
        assert decode(out / r["video"]).count == r["frames"], r
    for r in after:
        if r["video"] and "error" not in r:
            assert decode(out / r["video"]).count == r["frames"], r


def test_the_user_is_not_root(user: Unprivileged) -> None:
    """What makes the tests above mean something: the command runs without root's rights."""
    done = subprocess.run(
        user.command([sys.executable, "-c", "import os; print(os.geteuid(), os.getegid())"]),
        env=user.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    uid, gid = map(int, done.stdout.split())
    assert uid != 0 and gid != 0
    if user.root:
        import pwd

        assert uid == pwd.getpwnam(USER).pw_uid
