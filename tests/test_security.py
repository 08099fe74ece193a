"""What a recording exposes and where it can write.

Recordings show what an agent did, so they are private to their owner (files
0600, folders rlcapture creates 0700, whatever the umask); and nothing a user
or a producer passes (a name prefix, an env id, manifest fields) can put a file
outside the output folder or overwrite one that is there.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import read_manifest

import rlcapture
from rlcapture._backend.producer import FrameProducer

pytestmark = pytest.mark.timeout(60)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def record_a_little(rec: rlcapture.Recorder, envs: int = 2, steps: int = 3) -> None:
    cap = rlcapture.BatchCapture(rec, num_envs=envs)
    frames = np.full((envs, 16, 16, 3), 100, np.uint8)
    cap.reset(frames)
    for t in range(steps):
        last = t == steps - 1
        cap.step(frames, np.ones(envs), np.full(envs, last), np.zeros(envs, bool))
    cap.close()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def open_umask():
    """A umask that takes nothing away: modes then come from rlcapture alone."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_created_folder_and_files_are_private(tmp_path: Path, open_umask) -> None:
    out = tmp_path / "new" / "out"
    with rlcapture.Recorder(out, name_prefix="p_") as rec:
        assert mode(out) == 0o700
        assert mode(out / "videos") == 0o700
        assert mode(out / ".rlcapture.lock") == 0o600
        record_a_little(rec)
    videos = sorted((out / "videos").iterdir())
    assert len(videos) == 2
    for path in [*videos, out / "episodes.jsonl"]:
        assert mode(path) == 0o600, (path, oct(mode(path)))
    assert files_under(out) == {
        ".rlcapture.lock",
        "episodes.jsonl",
        "videos",
        "videos/p_env0-episode0.mp4",
        "videos/p_env1-episode0.mp4",
    }


def test_an_existing_folder_keeps_its_mode(tmp_path: Path, open_umask) -> None:
    """The user's own folder is theirs: rlcapture does not chmod it (its files are still 0600)."""
    out = tmp_path / "mine"
    out.mkdir(mode=0o750)
    with rlcapture.Recorder(out) as rec:
        record_a_little(rec, envs=1)
    assert mode(out) == 0o750
    assert mode(out / "videos") == 0o700
    assert all(mode(p) == 0o600 for p in (out / "videos").iterdir())


@pytest.mark.parametrize(
    "prefix",
    [
        "..",
        "../x",
        "a/b",
        "/abs",
        "x\\y",
        "nul\0",
        "new\nline",
        "tab\t",
        "a b",
        "a;rm -rf ~",
        "$(id)",
        "`id`",
        "a|b",
        "a&b",
        "x>y",
        "x<y",
        "*",
        "?",
        "'q'",
        '"q"',
        "~user",
        "a\u00a0b",  # a no-break space looks like a space
    ],
)
def test_unsafe_name_prefixes_are_refused(tmp_path: Path, prefix: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(rlcapture.ConfigError, match="name prefix"):
        rlcapture.Recorder(out, name_prefix=prefix)
    assert not out.exists()  # refused before anything was created
    assert list(tmp_path.iterdir()) == []


def test_plain_prefixes_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with rlcapture.Recorder(out, name_prefix="run-1.seed=3,a+b@x_é_") as rec:
        record_a_little(rec, envs=1)
    assert files_under(out / "videos") == {"run-1.seed=3,a+b@x_é_env0-episode0.mp4"}


@pytest.mark.parametrize(
    "env_id", ["../../x", "/etc/passwd", "CartPole-v1/../../x", "..", "x\0y", "a;touch pwned"]
)
def test_env_ids_are_names_not_paths(tmp_path: Path, env_id: str) -> None:
    out = tmp_path / "out"
    cwd = os.getcwd()
    with pytest.raises((rlcapture.EnvError, rlcapture.ConfigError)):
        rlcapture.make_vec(env_id, 1, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    assert os.getcwd() == cwd


def test_producer_fields_cannot_choose_paths(tmp_path: Path) -> None:
    """The encoder names videos from integer tags; a producer's record cannot redirect them."""
    out = tmp_path / "out"
    frame = np.full((8, 8, 3), 7, np.uint8)
    with rlcapture.Recorder(out) as rec:
        producer = FrameProducer(rec.endpoint, [0, 1], name="../../evil")
        for step in range(3):
            assert producer.frame(0, 0, step, frame)
        producer.end(
            {"env": 0, "episode": 0, "video": "../../evil.mp4", "frames": 99, "end": "terminated"}
        )
        producer.end({"env": 1, "episode": 0, "video": "/etc/passwd", "end": "terminated"})
        producer.close()
    records = read_manifest(out)
    assert [(r["env"], r["video"], r["frames"]) for r in records] == [
        (0, "videos/env0-episode0.mp4", 3),
        (1, None, 0),
    ]
    assert files_under(tmp_path) == {
        "out",
        "out/.rlcapture.lock",
        "out/episodes.jsonl",
        "out/videos",
        "out/videos/env0-episode0.mp4",
    }


def test_an_existing_file_or_link_is_never_written_through(tmp_path: Path) -> None:
    """Videos are created with O_EXCL: a file or symlink already at a video's name is left alone."""
    out = tmp_path / "out"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    with rlcapture.Recorder(out) as rec:
        # Planted after the recorder checked the folder, before the first frame.
        os.symlink(victim, out / "videos" / "env0-episode0.mp4")
        (out / "videos" / "env1-episode0.mp4").write_bytes(b"mine")
        record_a_little(rec)
    assert victim.read_bytes() == b"precious"
    assert (out / "videos" / "env1-episode0.mp4").read_bytes() == b"mine"
    videos = sorted(r["video"] for r in read_manifest(out))
    assert videos == ["videos/env0-episode0.1.mp4", "videos/env1-episode0.1.mp4"]
