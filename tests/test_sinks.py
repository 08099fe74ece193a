"""Each output of the encoder as a sink, fed numpy frames: no socket, no process."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import LOSSLESS, decode
from PIL import Image

from rlcapture._backend.encoder import EncoderConfig
from rlcapture._backend.images import ImageOptions
from rlcapture._backend.keep import parse_keep
from rlcapture._backend.mosaic import LABEL_HEIGHT
from rlcapture._backend.outputs import OutputOptions
from rlcapture._backend.sinks import (
    Ending,
    EpisodeStart,
    ImageSink,
    ManifestSink,
    MosaicSink,
    OutputWriteError,
    Sink,
    VideoSink,
    build_sinks,
)
from rlcapture._backend.video import VideoOptions

SHAPE = (37, 51, 3)  # odd: the video pads, the PNGs do not


def frames(n: int, shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def folders(out: Path) -> Path:
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "frames").mkdir(exist_ok=True)
    return out


class Slot:
    """Stands for a ring slot: counts how often it was freed, and blanks its pixels then."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels.copy()
        self.freed = 0

    def release(self) -> None:
        self.freed += 1
        self.pixels[:] = 0  # a producer would render the next frame into it


def feed(sink: Sink, handle: object, pictures: list[np.ndarray], first_step: int = 0) -> None:
    for step, picture in enumerate(pictures, first_step):
        slot = Slot(picture)
        sink.frame(handle, slot.pixels, step, slot.release)
        assert slot.freed <= 1


def ending(start: EpisodeStart, **record: object) -> Ending:
    return Ending(start.key, {"env": start.env, "episode": start.episode, **record})


# -- video ----------------------------------------------------------------------------
def test_video_sink_writes_the_frames_and_frees_each_slot_once(tmp_path: Path) -> None:
    sink = VideoSink(str(folders(tmp_path)), VideoOptions(**LOSSLESS))
    start = EpisodeStart(2, 5, "env2-episode5", SHAPE, 30.0)
    handle = sink.begin(start)
    pictures = frames(7)
    freed = []
    for step, picture in enumerate(pictures):
        slot = Slot(picture)
        sink.frame(handle, slot.pixels, step, slot.release)
        freed.append(slot.freed)
    assert freed == [1] * 7  # the video frees the slot itself, before it encodes
    end = ending(start)
    sink.end(handle, end)
    sink.close()
    assert end.error is None
    assert end.fields == {"video": "videos/env2-episode5.mp4"}
    assert end.files == [str(tmp_path / "videos" / "env2-episode5.mp4")]
    video = decode(tmp_path / end.fields["video"], keep=True)
    assert video.count == 7 and video.pts == [i * video.pts[1] for i in range(7)]  # pts: the step
    for got, want in zip(video.frames, pictures):
        assert np.array_equal(got[:37, :51], want)  # the blanked slot never reached the file


def test_video_sink_shares_codec_contexts_between_episodes_never_at_once(tmp_path: Path) -> None:
    """A context per episode recorded at once, handed on when one ends; every file its own."""
    sink = VideoSink(str(folders(tmp_path)), VideoOptions(**LOSSLESS))
    want: dict[str, list[np.ndarray]] = {}
    a, b = (EpisodeStart(e, 0, f"env{e}-episode0", SHAPE, 30.0) for e in (0, 1))
    ha, hb = sink.begin(a), sink.begin(b)  # two at once: two contexts
    want[a.name], want[b.name] = frames(5, seed=1), frames(4, seed=2)
    for step in range(5):  # interleaved, as envs step side by side
        feed(sink, ha, want[a.name][step : step + 1], step)
        if step < 4:
            feed(sink, hb, want[b.name][step : step + 1], step)
    sink.end(ha, ending(a))
    sink.end(hb, ending(b))
    assert sink.opened == 2
    for env in range(2, 6):  # envs taking turns reuse them, whichever env wrote last
        start = EpisodeStart(env, 3, f"env{env}-episode3", SHAPE, 30.0)
        handle = sink.begin(start)
        want[start.name] = frames(3, seed=env)
        feed(sink, handle, want[start.name])
        sink.end(handle, ending(start))
    assert sink.opened == 2 and len(sink.contexts) == 2
    other = EpisodeStart(6, 0, "env6-episode0", (20, 30, 3), 30.0)  # another size: its own
    handle = sink.begin(other)
    want[other.name] = frames(2, (20, 30, 3), seed=6)
    feed(sink, handle, want[other.name])
    sink.end(handle, ending(other))
    assert sink.opened == 3 and len(sink.contexts) == 2  # at most the peak: 2 at once
    sink.close()
    assert sink.contexts == []
    for name, pictures in want.items():
        video = decode(tmp_path / "videos" / f"{name}.mp4", keep=True)
        assert video.count == len(pictures), name
        h, w = pictures[0].shape[:2]
        for got, picture in zip(video.frames, pictures):
            assert np.array_equal(got[:h, :w], picture), name


def test_video_sink_refuses_a_taken_name_and_discards(tmp_path: Path) -> None:
    sink = VideoSink(str(folders(tmp_path)), VideoOptions())
    (tmp_path / "videos" / "env0-episode0.mp4").write_bytes(b"earlier run")
    with pytest.raises(FileExistsError):
        sink.begin(EpisodeStart(0, 0, "env0-episode0", SHAPE, 30.0))
    handle = sink.begin(EpisodeStart(0, 0, "env0-episode0.1", SHAPE, 30.0))
    sink.discard(handle)  # another sink could not take that name
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["env0-episode0.mp4"]
    assert (tmp_path / "videos" / "env0-episode0.mp4").read_bytes() == b"earlier run"


def test_video_sink_names_a_full_disk_and_what_it_kept(tmp_path: Path) -> None:
    sink = VideoSink(str(folders(tmp_path)), VideoOptions(gop=1))
    start = EpisodeStart(1, 0, "env1-episode0", SHAPE, 30.0)
    handle = sink.begin(start)
    full = os.open("/dev/full", os.O_WRONLY)
    try:  # the video's descriptor now leads to a device that is always full
        os.dup2(full, handle.video._file.fileno())
    finally:
        os.close(full)
    with pytest.raises(OutputWriteError) as info:
        feed(sink, handle, frames(30))
    msg = str(info.value)
    assert msg.startswith("writing videos/env1-episode0.mp4 failed after ")
    assert "bytes kept): [Errno 28] No space left on device" in msg
    assert info.value.errno == 28
    end = ending(start)
    sink.end(handle, end)  # the episode still gets its fields, with the error
    assert str(end.error) == msg and end.fields["video"] == "videos/env1-episode0.mp4"


# -- PNG frames and keyframes ---------------------------------------------------------
def png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def test_image_sink_writes_the_sequence_and_keyframes(tmp_path: Path) -> None:
    options = ImageOptions(every=2, keyframes=True, keyframe_every=3)
    sink = ImageSink(str(folders(tmp_path)), options, alone=False)
    start = EpisodeStart(0, 3, "env0-episode3", SHAPE, 30.0)
    handle = sink.begin(start)
    pictures = frames(8)
    feed(sink, handle, pictures)  # steps 0..7: the slot is freed after the call, by the loop
    end = ending(start)
    sink.end(handle, end)
    sink.close()
    assert end.error is None
    assert end.fields == {
        "images": "frames/env0-episode3",
        "image_count": 4,
        "keyframes": [f"videos/env0-episode3-step{s:06d}.png" for s in (0, 3, 6, 7)],
    }
    for step in (0, 2, 4, 6):
        assert np.array_equal(png(tmp_path / "frames" / "env0-episode3" / f"{step:06d}.png"), pictures[step])
    for path, step in zip(end.fields["keyframes"], (0, 3, 6, 7)):
        assert np.array_equal(png(tmp_path / path), pictures[step])
    assert sorted(end.files) == sorted(
        [str(tmp_path / p) for p in end.fields["keyframes"]] + [str(tmp_path / "frames" / "env0-episode3")]
    )


def test_image_sink_alone_claims_the_name_by_its_first_keyframe(tmp_path: Path) -> None:
    options = ImageOptions(keyframes=True)
    (folders(tmp_path) / "videos" / "env0-episode0-step000000.png").write_bytes(b"earlier")
    alone = ImageSink(str(tmp_path), options, alone=True)
    with pytest.raises(FileExistsError):
        alone.begin(EpisodeStart(0, 0, "env0-episode0", SHAPE, 30.0))
    alone.close()
    # beside a video, the video's name is the claim
    beside = ImageSink(str(tmp_path), ImageOptions(every=1), alone=False)
    handle = beside.begin(EpisodeStart(0, 0, "env0-episode0", SHAPE, 30.0))
    assert (tmp_path / "frames" / "env0-episode0").is_dir()
    beside.discard(handle)
    assert not (tmp_path / "frames" / "env0-episode0").exists()
    beside.close()


def test_image_sink_names_the_png_that_failed(tmp_path: Path) -> None:
    sink = ImageSink(str(folders(tmp_path)), ImageOptions(every=1), alone=False)
    start = EpisodeStart(4, 1, "env4-episode1", SHAPE, 30.0)
    handle = sink.begin(start)
    shutil.rmtree(tmp_path / "frames")  # the folder is gone before the first PNG
    feed(sink, handle, frames(2))
    end = ending(start)
    sink.end(handle, end)
    sink.close()
    assert str(end.error) == (
        "writing frames/env4-episode1/000000.png failed after 2 frames (2 frames kept): "
        "[Errno 2] No such file or directory"
    )
    assert end.fields["images"] == "frames/env4-episode1"  # named even when torn


# -- mosaic ---------------------------------------------------------------------------
def test_mosaic_sink_tiles_each_env_and_dims_ended_ones(tmp_path: Path) -> None:
    sink = MosaicSink(str(tmp_path), 2, VideoOptions(**LOSSLESS))
    shape = (40, 60, 3)
    starts = [EpisodeStart(e, 0, f"env{e}-episode0", shape, 30.0) for e in range(3)]
    handles = [sink.begin(s) for s in starts]
    assert handles[2] is None  # env 2 has no tile: the loop never calls it for that episode
    pictures = {e: frames(3, shape, seed=e) for e in range(2)}
    for step in range(3):
        for e in range(2):
            slot = Slot(pictures[e][step])
            sink.frame(handles[e], slot.pixels, step, slot.release)
    sink.end(handles[0], ending(starts[0]))
    last = frames(1, shape, seed=9)[0]
    sink.frame(handles[1], last, 3, lambda: None)  # env 1 goes on
    sink.close()
    video = decode(tmp_path / "mosaic.mp4", keep=True)
    assert (video.width, video.height) == (120, 40 + LABEL_HEIGHT)
    tiles = [video.frames[-1][LABEL_HEIGHT:, e * 60 : (e + 1) * 60] for e in range(2)]
    assert np.array_equal(tiles[0], pictures[0][2] // 2)  # ended: its last frame, dimmed
    assert np.array_equal(tiles[1], last)
    for step in range(3):
        for e in range(2):
            assert any(np.array_equal(f[LABEL_HEIGHT:, e * 60 : (e + 1) * 60], pictures[e][step]) for f in video.frames)


def test_mosaic_sink_takes_the_next_free_name(tmp_path: Path) -> None:
    (tmp_path / "mosaic.mp4").write_bytes(b"earlier run")
    sink = MosaicSink(str(tmp_path), 1, VideoOptions(), prefix="")
    start = EpisodeStart(0, 0, "env0-episode0", SHAPE, 30.0)
    feed(sink, sink.begin(start), frames(2))
    sink.close()
    assert decode(tmp_path / "mosaic.1.mp4").count == 2  # the second shown on close
    assert (tmp_path / "mosaic.mp4").read_bytes() == b"earlier run"


# -- manifest and keep rules ----------------------------------------------------------
def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def ended(out: Path, sink: ManifestSink, env: int, episode: int, ret: float, end: str = "terminated") -> Ending:
    """An episode that wrote a video and a frames folder, passed to ``sink``."""
    stem = f"env{env}-episode{episode}"
    video, folder = out / "videos" / f"{stem}.mp4", out / "frames" / stem
    video.write_bytes(b"v")
    folder.mkdir()
    e = Ending((env, episode), {"env": env, "episode": episode, "return": ret, "end": end, "recorded": True})
    e.fields.update(video=f"videos/{stem}.mp4", frames=3, images=f"frames/{stem}", image_count=3)
    e.files += [str(video), str(folder)]
    e.record.update(e.fields)
    sink.record(e)
    return e


def test_manifest_sink_writes_lines_in_field_order(tmp_path: Path) -> None:
    sink = ManifestSink(str(folders(tmp_path)))
    e = Ending((0, 0), {"env": 0, "episode": 0, "end": "closed", "producer": "p"}, recorded=False)
    e.record.update(video=None, frames=0)
    sink.record(e)
    sink.close()
    (line,) = lines(tmp_path / "episodes.jsonl")
    assert line == (
        '{"env": 0, "episode": 0, "seed": null, "return": null, "length": null, "time": null, '
        '"video": null, "frames": 0, "dropped": null, "end": "closed", "producer": "p"}'
    )


def test_manifest_sink_keeps_the_worst_and_deletes_the_rest(tmp_path: Path) -> None:
    out = folders(tmp_path)
    sink = ManifestSink(str(out), keep=parse_keep("worst:1"))
    ended(out, sink, 0, 0, 5.0)
    ended(out, sink, 0, 1, 9.0)  # not kept: deleted at once
    ended(out, sink, 0, 2, 1.0)  # pushes episode 0 out
    e = Ending((0, 3), {"env": 0, "episode": 3, "return": None, "end": "lost"}, recorded=False)
    sink.record(e)  # never recorded: never judged
    sink.close()
    records = [json.loads(line) for line in lines(out / "episodes.jsonl")]
    assert [(r["episode"], r.get("kept"), r.get("update")) for r in records] == [
        (0, True, None), (1, False, None), (2, True, None), (0, False, True), (3, None, None),
    ]  # fmt: skip
    discarded = records[1]
    assert discarded["video"] is None and discarded["images"] is None and discarded["image_count"] == 3
    assert discarded["why"] == "not kept by worst 1 by return"
    assert list(discarded)[-2:] == ["kept", "why"]
    assert records[3] == {"env": 0, "episode": 0, "update": True, "kept": False, "why": "pushed out of the worst 1 by return"}
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["env0-episode2.mp4"]
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["env0-episode2"]


def test_manifest_sink_keeps_the_episode_error_over_its_own(tmp_path: Path) -> None:
    out = folders(tmp_path)
    os.symlink("/dev/full", out / "episodes.jsonl")  # every line fails: ENOSPC
    sink = ManifestSink(str(out))
    torn = Ending((0, 0), {"env": 0, "episode": 0, "end": "terminated"})
    torn.fail(OutputWriteError(27, "writing videos/env0-episode0.mp4 failed ..."))
    sink.record(torn)  # the episode's error is the one reported: the loop raises it
    with pytest.raises(OutputWriteError, match=r"^writing episodes.jsonl failed after 0 lines: \[Errno 28\]"):
        sink.record(Ending((0, 1), {"env": 0, "episode": 1, "end": "terminated"}))
    aborting = Ending((0, 2), {"env": 0, "episode": 2, "end": "error"}, aborting=True)
    sink.record(aborting)  # on the way down: nothing raised
    sink.abort()


def test_manifest_sink_notices_its_folder_removed(tmp_path: Path) -> None:
    out = folders(tmp_path / "run")
    sink = ManifestSink(str(out))
    sink.check()
    shutil.rmtree(out)
    with pytest.raises(OutputWriteError) as info:
        sink.check()
    assert str(info.value) == (
        f"the output folder {out} was removed or moved (episodes.jsonl is gone) after 0 episodes; "
        "nothing more can be recorded there"
    )
    sink.check()  # said once
    sink.close()


# -- the list the encoder writes through ----------------------------------------------
def test_build_sinks_follows_the_config(tmp_path: Path) -> None:
    def kinds(**kwargs: object) -> list[type]:
        out = tmp_path / str(len(os.listdir(tmp_path)))
        folders(out)
        sinks = build_sinks(EncoderConfig(out_dir=str(out), token="t", **kwargs))  # type: ignore[arg-type]
        for sink in sinks:
            sink.close()
        return [type(s) for s in sinks]

    assert kinds(outputs=OutputOptions()) == [VideoSink, ManifestSink]
    everything = OutputOptions(images=ImageOptions(every=1, keyframes=True))
    # copies of the frame before the video, which frees the slot; the manifest last
    assert kinds(outputs=everything, mosaic=4) == [MosaicSink, ImageSink, VideoSink, ManifestSink]
    alone = OutputOptions(videos=False, images=ImageOptions(keyframes=True))
    assert kinds(outputs=alone) == [ImageSink, ManifestSink]
