"""The Recorder (output folder, options, encoder) fed by FrameProducers in this process."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from as_user import Unprivileged
from conftest import LOSSLESS, decode, read_manifest, wait_until

import rlcapture
from rlcapture._backend.manifest import FIELDS
from rlcapture._backend.producer import FrameProducer
from rlcapture._backend.run_folder import KeptFilesWarning

pytestmark = pytest.mark.timeout(60)


def noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def record_episode(
    rec: rlcapture.Recorder, frames: list[np.ndarray], env: int = 0, episode: int = 0, **kw
) -> None:
    producer = FrameProducer(rec.endpoint, [env], **kw)
    try:
        for step, frame in enumerate(frames):
            assert producer.frame(env, episode, step, frame)
        producer.end(
            {"env": env, "episode": episode, "length": len(frames) - 1, "end": "terminated"}
        )
    finally:
        producer.close()


# -- options ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        {"fps": 0},
        {"fps": -1.0},
        {"fps": float("nan")},
        {"fps": 1e6},
        {"crf": 64},
        {"crf": -1},
        {"crf": 1.5},
        {"gop": 0},
        {"slots": 0},
        {"slots": 5000},
        {"timeout": 0},
        {"codec": "no-such-codec"},
        {"codec": "aac"},  # an audio encoder
        {"codec": "libx264rgb", "pix_fmt": "yuv420p"},  # a pixel format it does not take
        {"codec": "libx264", "pix_fmt": "no-such-format"},
        {"name_prefix": "a/b"},
        {"name_prefix": "..evil"},
        {"name_prefix": "x\\y"},
        {"name_prefix": "nul\0"},
        {"name_prefix": "new\nline"},
        {"name_prefix": "p" * 101},
    ],
)
def test_bad_options_are_config_errors(tmp_path: Path, options: dict) -> None:
    out = tmp_path / "out"
    with pytest.raises(rlcapture.ConfigError) as info:
        rlcapture.Recorder(out, **options)
    assert isinstance(info.value, ValueError)
    assert not out.exists(), "a refused option must not create the folder"


def test_bad_codec_message_suggests_one(tmp_path: Path) -> None:
    with pytest.raises(rlcapture.ConfigError, match="libx264"):
        rlcapture.Recorder(tmp_path / "out", codec="no-such-codec")
    with pytest.raises(rlcapture.ConfigError, match="rgb24"):
        rlcapture.Recorder(tmp_path / "out", codec="libx264rgb")  # lists what it takes


def test_bad_start_method(tmp_path: Path) -> None:
    with pytest.raises(rlcapture.ConfigError, match="start method"):
        rlcapture.Recorder(tmp_path / "out", context="no-such-method")


# -- the output folder -----------------------------------------------------------------
def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("what", ["manifest", "videos", "both"])
def test_existing_recording_is_refused_and_untouched(tmp_path: Path, what: str) -> None:
    out = tmp_path / "out"
    (out / "videos").mkdir(parents=True)
    if what in ("manifest", "both"):
        (out / "episodes.jsonl").write_text('{"env": 0}\n')
    if what in ("videos", "both"):
        (out / "videos" / "env0-episode0.mp4").write_bytes(b"old video")
    (out / "notes.txt").write_text("mine")
    for p in out.rglob("*"):  # an old time: any write now would show, whatever the clock's grain
        os.utime(p, ns=(10**9, 10**9))
    before = _snapshot(out)
    with pytest.raises(rlcapture.OutputExistsError, match="overwrite=True") as info:
        rlcapture.Recorder(out)
    assert isinstance(info.value, FileExistsError)
    assert isinstance(info.value, rlcapture.OutputError)
    after = {k: v for k, v in _snapshot(out).items() if k != ".rlcapture.lock"}
    assert after == before


def test_overwrite_replaces_the_recording(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with rlcapture.Recorder(out) as rec:
        record_episode(rec, [noise((32, 32, 3), i) for i in range(3)], episode=5)
    old_video = out / "videos" / "env0-episode5.mp4"
    assert old_video.exists()
    (out / "notes.txt").write_text("mine")
    with pytest.warns(KeptFilesWarning, match="notes.txt"), rlcapture.Recorder(out, overwrite=True) as rec:
        record_episode(rec, [noise((32, 32, 3), i) for i in range(2)], episode=0)
    assert not old_video.exists()
    assert (out / "notes.txt").read_text() == "mine"  # only the recording is replaced
    [line] = read_manifest(out)
    assert line["episode"] == 0 and line["frames"] == 2
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["env0-episode0.mp4"]


def test_empty_existing_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "out" / "videos").mkdir(parents=True)
    with rlcapture.Recorder(tmp_path / "out") as rec:
        pass
    assert rec.summary == {"frames": 0, "episodes": 0, "videos": 0}
    assert read_manifest(tmp_path / "out") == []


def test_output_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(rlcapture.OutputError, match="cannot use output folder") as info:
        rlcapture.Recorder(tmp_path / "file" / "out")
    assert isinstance(info.value, OSError)
    with pytest.raises(rlcapture.OutputError):
        rlcapture.Recorder(tmp_path / "file")


UNWRITABLE = """
import sys
from pathlib import Path
import rlcapture

locked = Path(sys.argv[1])
for out, needle in ((locked / "out", "write"), (locked, "")):
    try:
        rlcapture.Recorder(out)
    except rlcapture.OutputError as exc:
        assert needle in str(exc), exc
    else:
        raise AssertionError(f"{out} was accepted")
"""


def test_unwritable_folder() -> None:
    """As a user (root ignores folder permissions): ``as_user.py``."""
    with Unprivileged() as user:
        if user.reason:
            pytest.skip(user.reason)
        locked = user.folder("locked", stat.S_IRUSR | stat.S_IXUSR)
        done = subprocess.run(
            user.command([sys.executable, "-c", UNWRITABLE, str(locked)]),
            env=user.env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert list(locked.iterdir()) == []


def test_one_run_per_folder(tmp_path: Path) -> None:
    with (
        rlcapture.Recorder(tmp_path / "out"),
        pytest.raises(rlcapture.OutputError, match="another rlcapture run"),
    ):
        rlcapture.Recorder(tmp_path / "out")
    with rlcapture.Recorder(tmp_path / "out2"):
        pass
    # Once closed, the folder's lock is free. A run that ended before its
    # first episode (an empty manifest) does not block the rerun (issue 10);
    # one that recorded an episode does.
    with rlcapture.Recorder(tmp_path / "out") as rec:
        record_episode(rec, [noise((8, 8, 3), 0)])
    with pytest.raises(rlcapture.OutputExistsError):
        rlcapture.Recorder(tmp_path / "out")
    with rlcapture.Recorder(tmp_path / "out", overwrite=True):
        pass


def test_close_is_idempotent(tmp_path: Path) -> None:
    rec = rlcapture.Recorder(tmp_path / "out")
    assert "encoder pid" in repr(rec)
    pid = rec.encoder_pid
    record_episode(rec, [noise((8, 8, 3), 0)])
    summary = rec.close()
    assert summary == {"frames": 1, "episodes": 1, "videos": 1}
    assert rec.close() == summary
    rec.check()  # a closed recorder has nothing to report
    assert "closed" in repr(rec)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- frames in, videos out ---------------------------------------------------------------
def test_lossless_round_trip_under_backpressure(tmp_path: Path) -> None:
    """Two slots, many big frames: the producer must wait, and no pixel is overwritten early."""
    frames = [noise((240, 320, 3), i) for i in range(24)]
    with rlcapture.Recorder(tmp_path / "out", **LOSSLESS) as rec:
        record_episode(rec, frames, slots=2)
    [line] = read_manifest(tmp_path / "out")
    assert line["frames"] == len(frames) and line["video"] == "videos/env0-episode0.mp4"
    assert list(line)[: len(FIELDS)] == list(FIELDS)
    got = decode(tmp_path / "out" / line["video"], keep=True)
    assert (got.width, got.height, got.count) == (320, 240, len(frames))
    for i, (a, b) in enumerate(zip(got.frames, frames)):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {i}")


def test_odd_sizes_gray_and_rgba(tmp_path: Path) -> None:
    gray = [noise((33, 17), i) for i in range(3)]  # 2-D: grayscale
    rgba = [noise((20, 30, 4), i) for i in range(3)]
    with rlcapture.Recorder(tmp_path / "out", **LOSSLESS) as rec:
        record_episode(rec, gray, env=0)
        record_episode(rec, rgba, env=1)
    g = decode(tmp_path / "out/videos/env0-episode0.mp4", keep=True)
    assert (g.width, g.height, g.count) == (18, 34, 3)  # padded to even sizes
    for a, b in zip(g.frames, gray):
        np.testing.assert_array_equal(a[:33, :17], np.repeat(b[:, :, None], 3, axis=2))
        np.testing.assert_array_equal(a[:33, 17], a[:33, 16])  # edge repeated
        np.testing.assert_array_equal(a[33], a[32])
    c = decode(tmp_path / "out/videos/env1-episode0.mp4", keep=True)
    assert (c.width, c.height, c.count) == (30, 20, 3)
    for a, b in zip(c.frames, rgba):
        np.testing.assert_array_equal(a, b[:, :, :3])  # alpha dropped


def test_default_codec_plays_and_is_close(tmp_path: Path) -> None:
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[:, :48] = (200, 40, 40)
    frame[:, 48:] = (30, 160, 220)
    with rlcapture.Recorder(tmp_path / "out", fps=12.5, name_prefix="run-1_") as rec:
        record_episode(rec, [frame] * 5)
    [line] = read_manifest(tmp_path / "out")
    assert line["video"] == "videos/run-1_env0-episode0.mp4"
    path = tmp_path / "out" / line["video"]
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert abs(float(stream.average_rate) - 12.5) < 1e-6
    got = decode(path)
    assert got.count == 5
    assert np.abs(got.first.astype(int) - frame).mean() < 3


def test_keyframe_interval(tmp_path: Path) -> None:
    frames = [noise((32, 32, 3), 0)] * 12
    with rlcapture.Recorder(tmp_path / "out", gop=5) as rec:
        record_episode(rec, frames)
    with av.open(str(tmp_path / "out/videos/env0-episode0.mp4")) as c:
        keys = [i for i, pkt in enumerate(p for p in c.demux(video=0) if p.size) if pkt.is_keyframe]
    assert keys[:3] == [0, 5, 10]


def test_frame_size_change_needs_a_new_episode(tmp_path: Path) -> None:
    small, big = noise((24, 32, 3), 0), noise((48, 64, 3), 1)
    with rlcapture.Recorder(tmp_path / "out", **LOSSLESS) as rec:
        producer = FrameProducer(rec.endpoint, [0, 1], slots=2)
        try:
            producer.frame(0, 0, 0, small)
            producer.frame(1, 0, 0, big)  # another env may differ
            with pytest.raises(
                rlcapture.FrameError, match="changed mid-episode from 32x24x3 to 64x48x3"
            ):
                producer.frame(0, 0, 1, big)
            assert producer.frame(0, 0, 1, small)  # the producer still works
            producer.end({"env": 0, "episode": 0})
            # A new episode may change size; its frames are larger than the
            # ring's slots, so the producer swaps in a larger ring.
            for step in range(5):
                assert producer.frame(0, 1, step, noise((96, 128, 3), step))
            producer.end({"env": 0, "episode": 1})
            producer.end({"env": 1, "episode": 0})
        finally:
            producer.close()
    lines = {(r["env"], r["episode"]): r for r in read_manifest(tmp_path / "out")}
    assert lines[(0, 0)]["frames"] == 2 and lines[(1, 0)]["frames"] == 1
    assert lines[(0, 1)]["frames"] == 5
    got = decode(tmp_path / "out/videos/env0-episode1.mp4", keep=True)
    assert (got.width, got.height, got.count) == (128, 96, 5)
    for step, frame in enumerate(got.frames):
        np.testing.assert_array_equal(frame, noise((96, 128, 3), step))


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (np.full((8, 8, 3), 1.5, np.float32), "uint8"),  # floats outside [0, 1]
        (np.zeros((8, 8, 3), np.int64), "uint8"),
        (np.zeros((8, 8, 5), np.uint8), "shape"),
        (np.zeros((8, 8, 3, 1), np.uint8), "shape"),
        (np.zeros((8,), np.uint8), "shape"),
        (np.zeros((0, 8, 3), np.uint8), "out of range"),
        (np.zeros((8, 20000), np.uint8), "out of range"),
        (None, "render_mode"),
        ([np.zeros((8, 8, 3), np.uint8)], "not one frame"),
        ("pixels", "uint8"),
    ],
)
def test_bad_frames_are_frame_errors(tmp_path: Path, frame, match: str) -> None:
    with rlcapture.Recorder(tmp_path / "out") as rec:
        producer = FrameProducer(rec.endpoint, [3])
        try:
            with pytest.raises(rlcapture.FrameError, match=match) as info:
                producer.frame(3, 0, 7, frame)
            assert "env 3 episode 0 step 7" in str(info.value)
            assert isinstance(info.value, ValueError)
            assert producer.frame(3, 0, 7, np.zeros((8, 8, 3), np.uint8))  # still usable
            producer.end({"env": 3, "episode": 0})
        finally:
            producer.close()
    [line] = read_manifest(tmp_path / "out")
    assert line["frames"] == 1


def all_slots_free(producer: FrameProducer) -> bool:
    """Whether the encoder has given back every slot of ``producer``'s ring (credits read)."""
    producer._take_credits(wait=False)
    index = producer._index
    return index is not None and index.free == producer.slots


def test_drop_mode_counts_every_frame(tmp_path: Path) -> None:
    """Big noise frames and two slots: the encoder falls behind and frames are dropped."""
    fps = 30
    frames = [noise((1024, 1024, 3), i) for i in range(4)]
    with rlcapture.Recorder(tmp_path / "out", fps=fps) as rec:
        producer = FrameProducer(rec.endpoint, [0], drop=True, slots=2)
        accepted: list[int] = []
        offered = 0
        try:
            for burst in range(3):
                for i in range(12):
                    step = burst * 12 + i
                    offered += 1
                    if producer.frame(0, 0, step, frames[step % 4]):
                        accepted.append(step)
                # Let the encoder catch up between bursts: until every slot is free again.
                assert wait_until(lambda: all_slots_free(producer), 30.0)
            dropped = offered - len(accepted)
            producer.end({"env": 0, "episode": 0, "dropped": dropped, "length": offered - 1})
        finally:
            producer.close()
    assert dropped > 0, "the encoder kept up; the test did not exercise dropping"
    assert len(accepted) >= 3 * 2  # each burst starts with two free slots
    [line] = read_manifest(tmp_path / "out")
    assert line["dropped"] == dropped
    assert line["frames"] == len(accepted) == offered - dropped
    got = decode(tmp_path / "out" / line["video"])
    assert got.count == line["frames"]
    # A dropped frame leaves a gap in time: the kept frames keep their steps.
    with av.open(str(tmp_path / "out" / line["video"])) as c:
        times = [round(f.time * fps) for f in c.decode(video=0)]
    assert times == accepted


def test_close_with_a_producer_still_attached(tmp_path: Path) -> None:
    rec = rlcapture.Recorder(tmp_path / "out")
    producer = FrameProducer(rec.endpoint, [0])
    try:
        for step in range(3):
            producer.frame(0, 0, step, noise((16, 16, 3), step))
        summary = rec.close(timeout=0.5)  # the producer never says goodbye (how fast: benchmarks/bench_promptness.py)
        assert summary["frames"] == 3
        [line] = read_manifest(tmp_path / "out")
        assert line["end"] == "lost" and line["frames"] == 3
        assert decode(tmp_path / "out" / line["video"]).count == 3
        with pytest.raises(rlcapture.EncoderError):
            for step in range(3, 50):
                producer.frame(0, 0, step, noise((16, 16, 3), step))
    finally:
        producer.close()
