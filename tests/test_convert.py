"""Colour conversion (convert.py) and an env's encoder kept across episodes (video.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import decode

from rlcapture._backend import convert
from rlcapture._backend.convert import COLOR_RANGE, COLORSPACE, Converter
from rlcapture._backend.sinks import Ending, EpisodeStart, VideoSink
from rlcapture._backend.video import EpisodeVideo, StreamEncoder, VideoOptions

KINDS = ["swscale", pytest.param("opencv", marks=pytest.mark.skipif(not convert.opencv_available(), reason="no cv2"))]

# Saturated and grey colours: a wrong matrix (BT.709) or range (full) moves
# some of them by 10-40 levels; the right conversion is within rounding.
COLOURS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255],
     [255, 255, 255], [0, 0, 0], [128, 128, 128], [200, 80, 30], [30, 90, 200], [77, 77, 77]],
    np.uint8,
)
TOLERANCE = 3  # |RGB difference| inside a flat colour patch through yuv420p (rounding)


def patches(height: int, width: int, shift: int = 0) -> np.ndarray:
    """Flat colour patches on 8x8 cells: every 2x2 block is one colour."""
    y, x = np.mgrid[0:height, 0:width]
    idx = ((y // 8) * 7 + (x // 8) + shift) % len(COLOURS)
    return COLOURS[idx]


def inside(a: np.ndarray) -> np.ndarray:
    """The pixels at least 2 from a patch border: chroma filters (swscale's
    downsampling, the decoder's upsampling) blend neighbours across borders."""
    y, x = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    return a[((y % 8) >= 2) & ((y % 8) <= 5) & ((x % 8) >= 2) & ((x % 8) <= 5)]


def cartpole(n: int) -> list[np.ndarray]:
    gym = pytest.importorskip("gymnasium")
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    env.reset(seed=1)
    out = []
    for i in range(n):
        env.step(i % 2)
        out.append(env.render().copy())
    env.close()
    return out


def write(path: Path, pictures: list[np.ndarray], kind: str, **opts: object) -> None:
    h, w, c = pictures[0].shape
    options = VideoOptions(**opts)  # type: ignore[arg-type]
    enc = StreamEncoder(w, h, c, 30.0, options)
    enc.converter = Converter(c, w, h, options.pix_fmt, kind=kind)  # type: ignore[arg-type]
    video = EpisodeVideo(str(path), w, h, c, 30.0, options, encoder=enc)
    for step, p in enumerate(pictures):
        video.write(p, step, lambda: None)
    video.close()
    enc.close()


@pytest.mark.parametrize("kind", KINDS)
def test_colours_survive_and_the_stream_says_how_they_were_made(tmp_path: Path, kind: str) -> None:
    pictures = [patches(64, 96, shift) for shift in range(3)]
    write(tmp_path / "v.mp4", pictures, kind, crf=0)
    with av.open(str(tmp_path / "v.mp4")) as c:
        ctx = c.streams.video[0].codec_context
        assert (ctx.colorspace, ctx.color_range) == (COLORSPACE, COLOR_RANGE)
    video = decode(tmp_path / "v.mp4", keep=True)
    assert video.count == 3
    for got, want in zip(video.frames, pictures):
        assert np.abs(inside(got).astype(int) - inside(want)).max() <= TOLERANCE


@pytest.mark.parametrize("kind", KINDS)
def test_rendered_cartpole_decodes_close_to_its_pixels(tmp_path: Path, kind: str) -> None:
    pictures = cartpole(12)
    write(tmp_path / "v.mp4", pictures, kind)  # the default: crf 23, ultrafast
    video = decode(tmp_path / "v.mp4", keep=True)
    diff = np.concatenate([np.abs(g.astype(int) - w).ravel() for g, w in zip(video.frames, pictures)])
    # Measured (bench_convert.py): mean 0.04, 99.9th percentile 0-1 for both paths;
    # edges (the pole, the cart) carry the chroma subsampling's error.
    assert diff.mean() < 0.5
    assert np.percentile(diff, 99) <= 8


def test_opencv_and_swscale_agree_on_luma() -> None:
    if not convert.opencv_available():
        pytest.skip("no cv2")
    picture = cartpole(1)[0]
    h, w = picture.shape[:2]
    a = Converter(3, w, h, kind="opencv").frame(picture)
    b = Converter(3, w, h, kind="swscale").frame(picture)
    ya = a.to_ndarray()[:h]  # yuv420p as one (3h/2, w) plane array
    yb = b.to_ndarray()[:h]
    assert np.abs(ya.astype(int) - yb).max() <= 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(37, 51, 3), (40, 51, 3), (37, 50, 3), (33, 17, 1), (32, 48, 1)])
def test_odd_sizes_and_grey(tmp_path: Path, kind: str, shape: tuple[int, int, int]) -> None:
    h, w, c = shape
    pictures = [patches(h, w, s) if c == 3 else patches(h, w, s)[:, :, :1] for s in range(3)]
    write(tmp_path / "v.mp4", pictures, kind, crf=0)
    video = decode(tmp_path / "v.mp4", keep=True)
    assert video.count == 3 and (video.width, video.height) == (w + w % 2, h + h % 2)
    for got, want in zip(video.frames, pictures):
        got = got[:h, :w]
        if c == 1:  # grey: every channel carries the grey level
            want = np.repeat(want, 3, axis=2)
        # odd edges: the padded column/row shares its 2x2 chroma with the last one
        assert np.abs(inside(got).astype(int) - inside(want)).max() <= TOLERANCE


def test_without_opencv_swscale_converts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError
    monkeypatch.setattr(convert, "_cv2", None)
    monkeypatch.setattr(convert, "_cv2_tried", False)
    assert not convert.opencv_available()
    conv = Converter(3, 96, 64)
    assert conv.kind == "swscale"
    with pytest.raises(ImportError, match="fast"):
        Converter(3, 96, 64, kind="opencv")
    pictures = [patches(64, 96, s) for s in range(2)]
    write(tmp_path / "v.mp4", pictures, "auto", crf=0)
    for got, want in zip(decode(tmp_path / "v.mp4", keep=True).frames, pictures):
        assert np.abs(inside(got).astype(int) - inside(want)).max() <= TOLERANCE


# -- one encoder per env, kept across its episodes ----------------------------------
def run_episodes(sink: VideoSink, plan: list[tuple[int, int, int]], shape=(40, 60, 3)) -> dict:
    """Episodes (env, episode, frames) written frame by frame, envs interleaved."""
    handles = {}
    pictures = {}
    for env, episode, n in plan:
        start = EpisodeStart(env, episode, f"env{env}-episode{episode}", shape, 30.0)
        handles[(env, episode)] = (start, sink.begin(start))
        pictures[(env, episode)] = [patches(shape[0], shape[1], env * 5 + episode + i)[:, :, : shape[2]] for i in range(n)]
    longest = max(n for _, _, n in plan)
    for i in range(longest):
        for key, (_, handle) in handles.items():
            if i < len(pictures[key]):
                sink.frame(handle, pictures[key][i].copy(), 10 + i, lambda: None)
    for start, handle in handles.values():
        sink.end(handle, Ending(start.key, {"env": start.env, "episode": start.episode}))
    return pictures


def check_stands_alone(path: Path, pictures: list[np.ndarray]) -> None:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        packets = [p for p in c.demux(stream) if p.size]
        assert packets[0].is_keyframe
        first_pts = packets[0].pts
    video = decode(path, keep=True)
    assert video.count == len(pictures)
    step = video.pts[1] - video.pts[0] if video.count > 1 else 1
    assert video.pts == [first_pts + i * step for i in range(video.count)]  # steps 10, 11, ...
    for got, want in zip(video.frames, pictures):
        want = want if want.shape[2] == 3 else np.repeat(want, 3, axis=2)
        got = got[: want.shape[0], : want.shape[1]]
        assert np.abs(inside(got).astype(int) - inside(want)).max() <= TOLERANCE


def test_an_env_keeps_its_encoder_and_every_file_stands_alone(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    sink = VideoSink(str(tmp_path), VideoOptions(crf=0))
    first = run_episodes(sink, [(0, 0, 5), (1, 0, 3)])
    encoders = set(sink.contexts)
    second = run_episodes(sink, [(0, 1, 1), (1, 1, 7)])
    third = run_episodes(sink, [(0, 2, 4), (1, 2, 2)])
    assert set(sink.contexts) == encoders and sink.opened == 2  # the same codec contexts, reused
    assert all(enc.usable for enc in encoders)
    sink.close()
    assert not any(enc.usable for enc in encoders)
    for pictures in (first, second, third):
        for (env, episode), pics in pictures.items():
            check_stands_alone(tmp_path / "videos" / f"env{env}-episode{episode}.mp4", pics)


def test_a_codec_that_holds_frames_back_gets_a_new_encoder(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    # preset medium without zerolatency: B-frames and lookahead hold frames back
    sink = VideoSink(str(tmp_path), VideoOptions(crf=0, preset="medium", extra={"tune": "film"}))
    first = run_episodes(sink, [(0, 0, 9)])
    assert sink.opened == 1 and sink.contexts == []  # drained into the first file, closed
    second = run_episodes(sink, [(0, 1, 6)])
    assert sink.opened == 2
    sink.close()
    for pictures in (first, second):
        for (env, episode), pics in pictures.items():
            check_stands_alone(tmp_path / "videos" / f"env{env}-episode{episode}.mp4", pics)


def test_a_new_size_or_rate_gets_a_new_encoder(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    sink = VideoSink(str(tmp_path), VideoOptions(crf=0))
    a = run_episodes(sink, [(0, 0, 3)])
    (enc,) = sink.contexts
    b = run_episodes(sink, [(0, 1, 3)], shape=(38, 62, 1))
    (other,) = sink.contexts  # one episode at a time: the old size is let go
    assert other is not enc and not enc.usable and sink.opened == 2
    sink.close()
    check_stands_alone(tmp_path / "videos" / "env0-episode0.mp4", a[(0, 0)])
    check_stands_alone(tmp_path / "videos" / "env0-episode1.mp4", b[(0, 1)])
