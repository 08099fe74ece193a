"""rgb24 -> yuv420p for the encoder: swscale (PyAV), OpenCV, a numba kernel.

Every candidate converts the same CartPole-v1 600x400 frames (a random
episode's renders) into the three planes x264 takes, in this process, one
thread. Reported per candidate: median ms per frame over ``--repeats`` (each a
pass over all frames), its ratio to swscale measured in the same run, and how
far its planes are from an exact float BT.601 limited-range conversion with
2x2 box-averaged chroma (max |difference| of Y and of U/V): swscale filters
the chroma, OpenCV's I420 takes the top-left pixel of each 2x2 block.

Then the whole encode (conversion + libx264 ultrafast + fragmented-MP4 mux of
one file) per candidate, and the colour error of the decoded video against
the rendered pixels (mean, 99.9th percentile and max of |RGB difference|).

    python benchmarks/bench_convert.py [--repeats 7] [--frames 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from rlcapture.bench.measure import machine_info  # noqa: E402

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def cartpole_frames(n: int) -> list[np.ndarray]:
    import gymnasium as gym

    env = gym.make("CartPole-v1", render_mode="rgb_array")
    env.reset(seed=0)
    frames = []
    rng = np.random.default_rng(0)
    while len(frames) < n:
        _, _, term, trunc, _ = env.step(int(rng.integers(2)))
        frames.append(env.render().copy())
        if term or trunc:
            env.reset()
    env.close()
    return frames


def swscale() -> Callable[[np.ndarray], object]:
    import av
    from av.video.reformatter import VideoReformatter

    r = VideoReformatter()

    def conv(rgb: np.ndarray) -> object:
        frame = av.VideoFrame.from_numpy_buffer(rgb, format="rgb24")
        return r.reformat(frame, format="yuv420p", threads=1)

    return conv


def sws_planes(out: object) -> Planes:
    planes = []
    for p, (w, h) in zip(out.planes, ((out.width, out.height), (out.width // 2, out.height // 2), (out.width // 2, out.height // 2))):  # type: ignore[attr-defined]
        planes.append(np.frombuffer(p, np.uint8).reshape(h, p.line_size)[:, :w])
    return planes[0], planes[1], planes[2]


def opencv() -> Callable[[np.ndarray], np.ndarray]:
    import cv2

    cv2.setNumThreads(1)
    return lambda rgb: cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)


def i420_planes(buf: np.ndarray, h: int, w: int) -> Planes:
    flat = buf.reshape(-1)
    y = flat[: h * w].reshape(h, w)
    u = flat[h * w : h * w * 5 // 4].reshape(h // 2, w // 2)
    v = flat[h * w * 5 // 4 :].reshape(h // 2, w // 2)
    return y, u, v


def numba_kernel() -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False, nogil=True, fastmath=True)
    def kernel(rgb: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - jitted
        h, w = rgb.shape[0], rgb.shape[1]
        ys = out[: h * w].reshape(h, w)
        us = out[h * w : h * w * 5 // 4].reshape(h // 2, w // 2)
        vs = out[h * w * 5 // 4 :].reshape(h // 2, w // 2)
        for j in range(h // 2):
            r0 = rgb[2 * j]
            r1 = rgb[2 * j + 1]
            y0 = ys[2 * j]
            y1 = ys[2 * j + 1]
            for i in range(w // 2):
                rs = 0
                gs = 0
                bs = 0
                for row, yrow in ((r0, y0), (r1, y1)):
                    for k in range(2):
                        r = np.int32(row[2 * i + k, 0])
                        g = np.int32(row[2 * i + k, 1])
                        b = np.int32(row[2 * i + k, 2])
                        yrow[2 * i + k] = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
                        rs += r
                        gs += g
                        bs += b
                us[j, i] = ((-38 * rs - 74 * gs + 112 * bs + 512) >> 10) + 128
                vs[j, i] = ((112 * rs - 94 * gs - 18 * bs + 512) >> 10) + 128

    def conv(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        out = np.empty(h * w * 3 // 2, np.uint8)
        kernel(rgb, out)
        return out

    return conv


def exact(rgb: np.ndarray) -> Planes:
    f = rgb.astype(np.float64)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape
    box = lambda p: p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    return y, box(u), box(v)


def plane_error(planes: Planes, ref: Planes) -> tuple[float, float]:
    ey = float(np.abs(planes[0].astype(float) - ref[0]).max())
    euv = max(float(np.abs(planes[k].astype(float) - ref[k]).max()) for k in (1, 2))
    return ey, euv


def per_frame_ms(fn: Callable[[np.ndarray], object], frames: list[np.ndarray], repeats: int) -> float:
    for f in frames[:5]:
        fn(f)
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        for f in frames:
            fn(f)
        times.append((time.process_time() - t0) / len(frames) * 1e3)
    return statistics.median(times)


def encode_file(kind: str, frames: list[np.ndarray], folder: str) -> bytes:
    """One fragmented MP4 of ``frames`` with the candidate's conversion (rlcapture's writer)."""
    from rlcapture._backend.convert import Converter
    from rlcapture._backend.video import EpisodeVideo, StreamEncoder, VideoOptions

    h, w = frames[0].shape[:2]
    enc = StreamEncoder(w, h, 3, 30.0, VideoOptions())
    enc.converter = Converter(3, w, h, kind=kind)  # type: ignore[arg-type]
    path = os.path.join(folder, f"{kind}.mp4")
    if os.path.exists(path):
        os.unlink(path)
    video = EpisodeVideo(path, w, h, 3, 30.0, VideoOptions(), encoder=enc)
    for step, f in enumerate(frames):
        video.write(f, step, lambda: None)
    video.close()
    enc.close()
    with open(path, "rb") as fh:
        return fh.read()


def decode_error(data: bytes, frames: list[np.ndarray]) -> tuple[float, float, float]:
    import av

    with av.open(io.BytesIO(data)) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(got) == len(frames), (len(got), len(frames))
    diff = np.concatenate([np.abs(g.astype(int) - f.astype(int)).ravel() for g, f in zip(got, frames)])
    return float(diff.mean()), float(np.percentile(diff, 99.9)), float(diff.max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    frames = cartpole_frames(args.frames)
    h, w = frames[0].shape[:2]
    ref = exact(frames[3])
    cands: dict[str, Callable[[np.ndarray], object]] = {"swscale": swscale(), "opencv": opencv()}
    nb = numba_kernel()
    if nb is not None:
        t0 = time.perf_counter()
        nb(frames[0])
        print(f"numba compile: {time.perf_counter() - t0:.2f} s")
        cands["numba"] = nb
    rows: dict[str, dict[str, float]] = {}
    # interleave candidates over repeats so load changes hit all of them
    per: dict[str, list[float]] = {k: [] for k in cands}
    for _ in range(args.repeats):
        for name, fn in cands.items():
            per[name].append(per_frame_ms(fn, frames, 1))
    for name, fn in cands.items():
        out = fn(frames[3])
        planes = sws_planes(out) if name == "swscale" else i420_planes(out, h, w)  # type: ignore[arg-type]
        ey, euv = plane_error(planes, ref)
        rows[name] = {"ms": statistics.median(per[name]), "y_err": ey, "uv_err": euv}
    base = rows["swscale"]["ms"]
    print(f"{'conversion':10s} {'ms/frame':>9s} {'vs sws':>7s} {'Y err':>6s} {'UV err':>7s}")
    for name, r in rows.items():
        r["ratio"] = r["ms"] / base
        print(f"{name:10s} {r['ms']:9.3f} {r['ratio']:7.2f} {r['y_err']:6.2f} {r['uv_err']:7.2f}")
    # whole encode per frame and decoded colour error
    enc: dict[str, dict[str, float]] = {}
    kinds = ["swscale", "opencv"]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    tmp = tempfile.mkdtemp(prefix="bench-convert-")
    for _ in range(max(3, args.repeats // 2)):
        for k in kinds:
            t0 = time.process_time()
            encode_file(k, frames, tmp)
            times[k].append((time.process_time() - t0) / len(frames) * 1e3)
    for k in kinds:
        mean, p999, top = decode_error(encode_file(k, frames, tmp), frames)
        enc[k] = {"ms": statistics.median(times[k]), "decoded_mean_err": mean, "decoded_p999_err": p999, "decoded_max_err": top}
    print(f"\n{'encode':10s} {'ms/frame':>9s} {'vs sws':>7s} {'mean|d|':>8s} {'p99.9':>6s} {'max':>4s}  (convert+x264+mux, decoded vs rendered RGB)")
    for k, r in enc.items():
        r["ratio"] = r["ms"] / enc["swscale"]["ms"]
        print(f"{k:10s} {r['ms']:9.3f} {r['ratio']:7.2f} {r['decoded_mean_err']:8.3f} {r['decoded_p999_err']:6.0f} {r['decoded_max_err']:4.0f}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_info(), "convert": rows, "encode": enc}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
