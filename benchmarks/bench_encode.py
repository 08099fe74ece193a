"""The encoder's per-frame work against the fastest loop written for the same frames.

In this process, one thread, on CartPole-v1 600x400 renders (a random
policy's), CPU ms per frame (``process_time``), for episodes of ``--short``
and ``--long`` frames:

``tight``
    The fastest loop I could write: OpenCV I420 into a numpy buffer,
    ``VideoFrame.from_numpy_buffer``, ``CodecContext.encode`` of one codec
    context kept for the whole run (a forced keyframe per episode), packets
    muxed into a new fragmented MP4 per episode (``add_stream_from_template``).
    No checks, no slot release, no sink.
``rlcapture``
    What the encoder process does per frame once a frame is in its ring:
    :class:`~rlcapture._backend.sinks.VideoSink` ``begin``/``frame``/``end``
    (the env's encoder kept across episodes; conversion as chosen by
    ``convert.py``).
``rlcapture-swscale``
    The same with the swscale conversion (the fallback without OpenCV).
``per-episode``
    How it was before: a new libx264 encoder and container per episode and
    swscale (``EpisodeVideo`` with no shared encoder, swscale converter).

Episodes of 1 frame as well: their CPU per frame minus the long episodes'
is what an episode costs by itself (ms/episode). The variants alternate
within each repeat; medians over ``--repeats``.

    python benchmarks/bench_encode.py [--repeats 5] [--frames 1000] [--short 20] [--long 500] [--neighbor render]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench_convert import cartpole_frames  # noqa: E402

from rlcapture.bench.measure import machine_info  # noqa: E402

Runner = Callable[[list[np.ndarray], int, str], None]
MOVFLAGS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}


def tight(frames: list[np.ndarray], episode: int, folder: str) -> None:
    import av
    import cv2
    from av.video.frame import PictureType

    cv2.setNumThreads(1)
    h, w = frames[0].shape[:2]
    holder = av.open(io.BytesIO(), "w", format="mp4")
    opts = {"crf": "23", "preset": "ultrafast", "threads": "1", "tune": "zerolatency", "forced-idr": "1"}
    tmpl = holder.add_stream("libx264", rate=30, options=opts)
    tmpl.width, tmpl.height, tmpl.pix_fmt, tmpl.time_base = w, h, "yuv420p", Fraction(1, 30)
    tmpl.codec_context.thread_count = 1
    tmpl.codec_context.gop_size = 30
    holder.start_encoding()
    ctx = tmpl.codec_context
    cvt, code = cv2.cvtColor, cv2.COLOR_RGB2YUV_I420
    from_buf = av.VideoFrame.from_numpy_buffer
    pts = 0
    for k, start in enumerate(range(0, len(frames), episode)):
        out = av.open(os.path.join(folder, f"t{k}.mp4"), "w", format="mp4", options=MOVFLAGS)
        stream = out.add_stream_from_template(tmpl)
        base = pts
        for i, f in enumerate(frames[start : start + episode]):
            vf = from_buf(cvt(f, code), format="yuv420p")
            vf.pts = pts
            pts += 1
            if i == 0:
                vf.pict_type = PictureType.I
            for p in ctx.encode(vf):
                p.pts -= base
                p.dts -= base
                p.stream = stream
                out.mux(p)
        out.close()
    holder.close()


def _sink_runner(kind: str | None, share: bool) -> Runner:
    def run(frames: list[np.ndarray], episode: int, folder: str) -> None:
        from rlcapture._backend import video as video_mod
        from rlcapture._backend.convert import Converter
        from rlcapture._backend.sinks import Ending, EpisodeStart, VideoSink
        from rlcapture._backend.video import EpisodeVideo, StreamEncoder, VideoOptions

        os.makedirs(os.path.join(folder, "videos"), exist_ok=True)
        shape = frames[0].shape
        if not share:  # before: a new encoder and container per episode, swscale
            opts = VideoOptions()
            for k, start in enumerate(range(0, len(frames), episode)):
                enc = StreamEncoder(shape[1], shape[0], 3, 30.0, opts)
                enc.converter = Converter(3, shape[1], shape[0], kind="swscale")
                v = EpisodeVideo(os.path.join(folder, f"p{k}.mp4"), shape[1], shape[0], 3, 30.0, opts, encoder=enc)
                for step, f in enumerate(frames[start : start + episode]):
                    v.write(f, step, _nothing)
                v.close()
                enc.close()
            return
        sink = VideoSink(folder, VideoOptions())
        original = video_mod.Converter
        if kind is not None:
            video_mod.Converter = lambda c, w, h, fmt: Converter(c, w, h, fmt, kind=kind)  # type: ignore[assignment,misc]
        try:
            for k, start in enumerate(range(0, len(frames), episode)):
                st = EpisodeStart(0, k, f"env0-episode{k}", shape, 30.0)
                handle = sink.begin(st)
                for step, f in enumerate(frames[start : start + episode]):
                    sink.frame(handle, f, step, _nothing)
                sink.end(handle, Ending(st.key, {"env": 0, "episode": k}))
            sink.close()
        finally:
            video_mod.Converter = original  # type: ignore[misc]

    return run


def _nothing() -> None:
    pass


VARIANTS: dict[str, Runner] = {
    "tight": tight,
    "rlcapture": _sink_runner(None, True),
    "rlcapture-swscale": _sink_runner("swscale", True),
    "per-episode": _sink_runner("swscale", False),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--short", type=int, default=20)
    ap.add_argument("--long", type=int, default=500)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--neighbor", choices=("none", "render"), default="none",
        help="render: a process renders CartPole in a loop meanwhile, as workers do beside "
        "an encoder in a recording run (cores share caches and memory bandwidth)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    neighbor = _start_neighbor() if args.neighbor == "render" else None
    try:
        return _measure(args)
    finally:
        if neighbor is not None:
            neighbor.kill()
            neighbor.wait()


_NEIGHBOR = """
import gymnasium as gym
env = gym.make("CartPole-v1", render_mode="rgb_array")
env.reset(seed=0)
while True:
    env.render()
    _, _, term, trunc, _ = env.step(env.action_space.sample())
    if term or trunc:
        env.reset()
"""


def _start_neighbor() -> subprocess.Popen[bytes]:
    """A process rendering CartPole frames for as long as the measurement runs."""
    proc = subprocess.Popen([sys.executable, "-c", _NEIGHBOR], stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # its imports done: rendering from here on
    if proc.poll() is not None:
        raise SystemExit(f"the neighbour process exited with status {proc.returncode}")
    return proc


def _measure(args: argparse.Namespace) -> int:
    base = cartpole_frames(200)
    frames = [base[i % len(base)] for i in range(args.frames)]
    names = [v for v in args.variants.split(",") if v]
    lengths = [1, args.short, args.long]
    times: dict[tuple[str, int], list[float]] = {(v, n): [] for v in names for n in lengths}
    load = []
    for rep in range(args.repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for v in order:
            for n in lengths:
                folder = tempfile.mkdtemp(prefix="bench-encode-")
                try:
                    run = frames[:200] if n == 1 else frames  # 200 one-frame files are plenty
                    t0 = time.process_time()
                    VARIANTS[v](run, n, folder)
                    times[(v, n)].append((time.process_time() - t0) / len(run) * 1e3)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
        load.append(os.getloadavg()[0])
    rows = {}
    print(f"CPU ms per frame, median of {args.repeats}; {args.frames} frames 600x400 in episodes of N frames")
    print(f"{'variant':20s} {'N=1':>8s} {'N=' + str(args.short):>8s} {'N=' + str(args.long):>8s} {'short/long':>10s} {'vs tight':>9s} {'ms/episode':>10s}")
    tight_long = statistics.median(times[("tight", args.long)]) if "tight" in names else None
    for v in names:
        one = statistics.median(times[(v, 1)])
        s = statistics.median(times[(v, args.short)])
        lo = statistics.median(times[(v, args.long)])
        per_episode = one - lo  # a 1-frame episode: one frame plus the episode's own cost
        rows[v] = {"one_ms": one, "short_ms": s, "long_ms": lo, "short_over_long": s / lo, "vs_tight": (lo / tight_long) if tight_long else None, "episode_ms": per_episode}
        vt = f"{lo / tight_long:9.2f}" if tight_long else ""
        print(f"{v:20s} {one:8.3f} {s:8.3f} {lo:8.3f} {s / lo:10.3f} {vt:>9s} {per_episode:10.2f}")
    print(f"load average during the runs: {min(load):.1f}-{max(load):.1f}; neighbour: {args.neighbor}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_info(), "args": vars(args) | {"json": str(args.json)}, "rows": rows, "load": load}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
