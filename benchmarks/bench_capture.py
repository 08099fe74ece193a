#!/usr/bin/env python
"""Benchmark of rlcapture's capture engine against Gymnasium's video recorders.

Three parts, each variant run side by side, alternating the order across
repeats, medians quoted:

1. Throughput and peak memory when recording every frame of CartPole-v1
   (rgb_array, 600x400) with N = 2, 4, 8 envs and random actions:

   * ``rlcapture``: ``rlcapture.make_vec(..., record="all")``;
   * ``gym-vec``: ``gymnasium.wrappers.vector.RecordVideo`` around an
     ``AsyncVectorEnv`` (all envs tiled into one video, every frame kept);
   * ``gym-worker``: ``gymnasium.wrappers.RecordVideo`` inside each
     ``AsyncVectorEnv`` worker (one video per episode and env).

   The timed region runs from ``reset`` to the return of ``close``, so every
   video is finished when the clock stops. frames/s = env steps/s (every step
   renders one frame). Memory is the peak of the PSS summed over the whole
   process tree (this process and all its descendants, ffmpeg included),
   sampled every ~50 ms by a low-priority thread.

   Part 1 also runs rlcapture without the sampler: reading ``smaps_rollup``
   costs the kernel ~1 ms per process, 6-15 % of a core here, which shows on
   two cores.

2. Peak memory against episode length: Pendulum-v1 (never terminates; episodes
   end by truncation at ``max_episode_steps``) with N=2, a short and a long
   episode length, the same number of steps.

3. The encoder alone against a tight PyAV loop on the same pre-rendered frames
   and settings (libx264, yuv420p, ultrafast, crf 23, 1 thread, gop = fps).

Every trial runs in a fresh Python process (so memory and allocator state do
not leak between variants), which samples its own process tree. Outputs go to
temporary folders that are deleted after each trial. On a machine shared with
other jobs, each trial first waits for the rest of the machine to go quiet and
is run again if other work took CPU during it (``--no-wait`` turns this off);
every trial records how much CPU other work took meanwhile.

    python benchmarks/bench_capture.py            # full run (~6-7 min on 2 idle cores)
    python benchmarks/bench_capture.py --quick    # smoke run (~30 s)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# How every figure is taken (process-tree PSS and CPU, other programs' load,
# trials in fresh processes) is shared with `rlcapture bench`.
from rlcapture.bench import measure  # noqa: E402

measure.headless()  # inherited by workers and trials

VARIANTS = ("rlcapture", "gym-vec", "gym-worker")
#: Part 1 also runs rlcapture without the PSS sampler, to show the sampler's cost.
UNSAMPLED = "rlcapture-unsampled"
LABELS = {
    "rlcapture": "rlcapture make_vec",
    UNSAMPLED: "rlcapture, no PSS sampler",
    "gym-vec": "gym vector RecordVideo",
    "gym-worker": "gym RecordVideo per worker",
}


# --------------------------------------------------------------------------------------
# trials (each runs in its own process)
# --------------------------------------------------------------------------------------
def _make_env(variant: str, env_id: str, n: int, folder: Path, max_episode_steps: int | None):
    import gymnasium as gym

    extra = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    if variant == "rlcapture":
        import rlcapture

        return rlcapture.make_vec(env_id, n, folder, record="all", **extra)
    if variant == "gym-vec":
        from gymnasium.wrappers.vector import RecordVideo as VecRecordVideo

        envs = gym.make_vec(env_id, n, vectorization_mode="async", render_mode="rgb_array", **extra)
        # A new video starts at every episode of env 0 (episode_trigger always
        # True, video_length 0 = whole episodes): every step of the run is
        # captured, all envs tiled into one frame.
        return VecRecordVideo(
            envs, str(folder), episode_trigger=lambda e: True, disable_logger=True
        )
    if variant == "gym-worker":
        from gymnasium.wrappers import RecordVideo

        def fn(i: int):
            def make():
                env = gym.make(env_id, render_mode="rgb_array", **extra)
                return RecordVideo(
                    env,
                    str(folder / f"env{i}"),
                    episode_trigger=lambda e: True,
                    disable_logger=True,
                )

            return make

        return gym.vector.AsyncVectorEnv([fn(i) for i in range(n)])
    raise ValueError(variant)


def trial_capture(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of one variant: construct, reset, step, close; time and memory."""
    variant, n, steps = spec["variant"], spec["n"], spec["steps"]
    env_id, mes = spec["env_id"], spec.get("max_episode_steps")
    # Import what the variant needs first (and only that, so memory is not
    # inflated by the other variants' modules): timing and CPU start after.
    import gymnasium.wrappers.vector  # noqa: F401

    if variant == "rlcapture":
        import rlcapture  # noqa: F401
    else:
        import moviepy.video.io.ImageSequenceClip  # noqa: F401

    tmp = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    folder = tmp / "out"
    try:
        interval = spec.get("interval", 0.05) if spec.get("sample", True) else None
        # A fixed interval (backoff 0): part 1 measures what such a sampler costs.
        with measure.TreePSS(interval, backoff=0) as mem:
            cpu0 = measure.self_cpu() + measure.reaped_cpu()
            busy0 = measure.machine_busy_s()
            t0 = time.perf_counter()
            envs = _make_env(variant, env_id, n, folder, mes)
            t1 = time.perf_counter()
            envs.action_space.seed(0)
            envs.reset(seed=0)
            for _ in range(steps):
                envs.step(envs.action_space.sample())
            t2 = time.perf_counter()
            envs.close()
            t3 = time.perf_counter()
            own = measure.self_cpu() + measure.reaped_cpu() - cpu0
            busy = measure.machine_busy_s() - busy0
            cpu = own - mem.cpu_s
        videos, frames, size = measure.video_frames(folder)
        env_steps = n * steps
        return {
            **spec,
            "setup_s": t1 - t0,
            "run_s": t3 - t1,
            "close_s": t3 - t2,
            "fps": env_steps / (t3 - t1),
            "fps_with_setup": env_steps / (t3 - t0),
            "cpu_s": cpu,
            "cpu_ms_per_frame": 1e3 * cpu / env_steps,
            "peak_pss_mb": mem.peak / measure.MB if interval is not None else None,
            "baseline_pss_mb": mem.baseline / measure.MB,
            "pss_samples": mem.samples,
            "pss_sampling_ms": 1e3 * mem.busy_s / max(1, mem.samples),
            "sampler_cpu_s": mem.cpu_s,
            # CPU the rest of the machine used meanwhile (other people's jobs):
            # cores' worth, averaged over the run. Near 0 on a quiet machine.
            "foreign_cores": max(0.0, busy - own) / (t3 - t0),
            "sampler_cpu_share": mem.cpu_s / (t3 - t0),
            "max_procs": mem.max_procs,
            "videos": videos,
            "frames_written": frames,
            "bytes_written": size,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _render_frames(count: int) -> list[Any]:
    import gymnasium as gym

    env = gym.make("CartPole-v1", render_mode="rgb_array")
    env.reset(seed=0)
    env.action_space.seed(0)
    frames = [env.render()]
    while len(frames) < count:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        frames.append(env.render())
        if term or trunc:
            env.reset()
    env.close()
    return frames


def _tight_loop(frames: list[Any], path: Path, fps: int, zero_copy: bool = False) -> float:
    """The reference encoder loop; ``zero_copy`` wraps the arrays instead of copying
    them (``from_numpy_buffer``) and converts with one swscale thread, as the
    rlcapture encoder does."""
    import av
    from av.video.reformatter import VideoReformatter

    h, w, _ = frames[0].shape
    t0 = time.perf_counter()
    container = av.open(str(path), "w")
    stream = container.add_stream(
        "libx264", rate=fps, options={"crf": "23", "preset": "ultrafast", "threads": "1"}
    )
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.codec_context.thread_count = 1
    stream.codec_context.gop_size = fps
    reformatter = VideoReformatter()
    for i, pixels in enumerate(frames):
        if zero_copy:
            frame = av.VideoFrame.from_numpy_buffer(pixels, format="rgb24")
            out = reformatter.reformat(frame, format="yuv420p", threads=1)
        else:
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            out = reformatter.reformat(frame, format="yuv420p")
        out.pts = i
        container.mux(stream.encode(out))
    container.mux(stream.encode(None))
    container.close()
    return time.perf_counter() - t0


def _rlcapture_encoder(frames: list[Any], folder: Path, fps: int) -> float:
    import rlcapture
    from rlcapture._backend.producer import FrameProducer

    rec = rlcapture.Recorder(folder)
    try:
        p = FrameProducer(rec.endpoint, [0], name="bench", fps=fps)
        t0 = time.perf_counter()
        for step, pixels in enumerate(frames):
            p.frame(0, 0, step, pixels)
        p.end(
            {
                "env": 0,
                "episode": 0,
                "seed": None,
                "return": 0.0,
                "length": len(frames) - 1,
                "time": 0.0,
                "dropped": 0,
                "end": "terminated",
            }
        )
        p.close()
        summary = rec.close()
        dt = time.perf_counter() - t0
    finally:
        rec.close()
    if summary.get("frames") != len(frames):
        raise RuntimeError(f"rlcapture encoded {summary} instead of {len(frames)} frames")
    return dt


def trial_encoder(spec: dict[str, Any]) -> dict[str, Any]:
    """Both encoder variants on the same frames, alternating, ``repeats`` times."""
    count, fps, repeats = spec["frames"], spec["fps"], spec["repeats"]
    frames = _render_frames(count)
    # Warm up (codec libraries, page cache, lazy imports); not timed.
    warm = Path(tempfile.mkdtemp(prefix="bench-encoder-"))
    try:
        _tight_loop(frames[:50], warm / "a.mp4", fps)
        _tight_loop(frames[:50], warm / "b.mp4", fps, zero_copy=True)
        _rlcapture_encoder(frames[:50], warm / "out", fps)
    finally:
        shutil.rmtree(warm, ignore_errors=True)
    runs: list[dict[str, Any]] = []
    for rep in range(repeats):
        variants = ["tight", "rlcapture", "tight-zero-copy"]
        order = variants[rep % 3 :] + variants[: rep % 3]
        for variant in order:
            tmp = Path(tempfile.mkdtemp(prefix="bench-encoder-"))
            try:
                if variant.startswith("tight"):
                    dt = _tight_loop(frames, tmp / "tight.mp4", fps, variant == "tight-zero-copy")
                else:
                    dt = _rlcapture_encoder(frames, tmp / "out", fps)
                _, written, _ = measure.video_frames(tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            runs.append(
                {
                    "variant": variant,
                    "repeat": rep,
                    "seconds": dt,
                    "fps": count / dt,
                    "frames_written": written,
                }
            )
    h, w, _ = frames[0].shape
    return {**spec, "width": w, "height": h, "runs": runs}


def _spin(count: int) -> float:
    t0 = time.perf_counter()
    x = 0
    for i in range(count):
        x += i
    return time.perf_counter() - t0


def effective_cores(count: int = 10_000_000) -> dict[str, float]:
    """How many cores the machine really gives now (virtual machines share theirs).

    Times a fixed pure-Python loop alone, then in one process per core at once:
    ``cores * alone / together`` is 2.0 on an idle two-core machine and drops
    when the host takes CPU away.
    """
    import multiprocessing as mp

    cores = os.cpu_count() or 1
    alone = min(_spin(count) for _ in range(2))
    ctx = mp.get_context("fork")
    with ctx.Pool(cores) as pool:
        t0 = time.perf_counter()
        pool.map(_spin, [count] * cores)
        together = time.perf_counter() - t0
    return {
        "alone_s": alone,
        "together_s": together,
        "effective_cores": round(cores * alone / together, 2),
    }


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------
#: A machine shared with other jobs gives noisy figures: before each trial wait
#: (up to ``max_wait`` s) until the rest of the machine uses less than
#: ``threshold`` cores, and run a trial again (up to ``retries`` times) when
#: other work took more than ``threshold`` cores during it.
QUIET = {"threshold": 0.25, "max_wait": 300.0, "retries": 2, "enabled": True}


def run_trial(kind: str, spec: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """Run one trial in a fresh process, on a quiet machine where possible."""
    argv = [str(Path(__file__).resolve()), "--trial", kind, json.dumps(spec)]
    try:
        result = measure.retry_quiet(
            lambda _attempt: measure.run_trial_process(argv, timeout, cwd=ROOT),
            QUIET["threshold"] if QUIET["enabled"] else None,
            _log,
            retries=int(QUIET["retries"]),
            max_wait=QUIET["max_wait"],
        )
    except measure.TrialFailed as exc:
        raise RuntimeError(f"trial {kind} {spec} failed: {exc}\n{exc.detail}") from None
    result["disturbed"] = bool(result["other_load_cores"] >= QUIET["threshold"])
    return result


def _mb(value: float | None) -> str:
    return "    n/a" if value is None else f"{value:7.1f}"


def _machine_info() -> dict[str, Any]:
    try:
        import moviepy

        moviepy_version = moviepy.__version__
    except Exception:  # noqa: BLE001 - any import failure means "not installed"
        moviepy_version = None
    return {**measure.machine_info(), "moviepy": moviepy_version}


def _log(msg: str) -> None:
    print(msg, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per variant (default 3)")
    ap.add_argument(
        "--steps", type=int, default=None, help="vector steps per run in part 1 (default 300)"
    )
    ap.add_argument(
        "--envs", default=None, help="comma-separated env counts for part 1 (default 2,4,8)"
    )
    ap.add_argument(
        "--mem-steps", type=int, default=None, help="vector steps per run in part 2 (default 600)"
    )
    ap.add_argument(
        "--mem-lengths",
        default=None,
        help="short,long episode lengths for part 2 (default 100,600)",
    )
    ap.add_argument("--enc-frames", type=int, default=None, help="frames in part 3 (default 300)")
    ap.add_argument("--parts", default="1,2,3", help="which parts to run (default 1,2,3)")
    ap.add_argument(
        "--json",
        default=str(ROOT / "benchmarks" / "results" / "capture.json"),
        help="where to write the results",
    )
    ap.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait for a quiet machine nor rerun trials that other work disturbed",
    )
    ap.add_argument("--trial", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.trial:
        run = {"capture": trial_capture, "encoder": trial_encoder}[args.trial[0]]
        return measure.trial_main(run, args.trial[1])

    q = args.quick
    QUIET["enabled"] = not args.no_wait
    repeats = args.repeats or (1 if q else 3)
    steps = args.steps or (60 if q else 300)
    ns = [int(x) for x in (args.envs or ("2,4" if q else "2,4,8")).split(",")]
    mem_steps = args.mem_steps or (200 if q else 600)
    short, long_ = (int(x) for x in (args.mem_lengths or ("50,200" if q else "100,600")).split(","))
    enc_frames = args.enc_frames or (100 if q else 300)
    parts = {int(x) for x in args.parts.split(",")}

    started = time.perf_counter()
    info = _machine_info()
    results: dict[str, Any] = {
        "machine": info,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {
            "quick": q,
            "repeats": repeats,
            "steps": steps,
            "envs": ns,
            "mem_steps": mem_steps,
            "mem_lengths": [short, long_],
            "enc_frames": enc_frames,
            "pss_interval_s": 0.05,
            "quiet": dict(QUIET),
        },
    }
    results["calibration_before"] = effective_cores()
    _log(f"# {info['date']}  {info['nproc']} cores  {info['cpu_model']}")
    _log(
        f"# effective cores now (pure-Python loop, {info['nproc']} at once vs alone): "
        f"{results['calibration_before']['effective_cores']}"
    )
    _log(
        f"# python {info['python']}  gymnasium {info['gymnasium']}  av {info['av']}  "
        f"moviepy {info['moviepy']}"
    )

    # -- part 1 ----------------------------------------------------------------------------
    if 1 in parts:
        trials: list[dict[str, Any]] = []
        for rep in range(repeats):
            labels = [*VARIANTS, UNSAMPLED]
            order = labels[rep % 4 :] + labels[: rep % 4]
            for n in ns:
                for label in order:
                    variant = "rlcapture" if label == UNSAMPLED else label
                    spec = {
                        "part": 1,
                        "label": label,
                        "variant": variant,
                        "sample": label != UNSAMPLED,
                        "n": n,
                        "steps": steps,
                        "env_id": "CartPole-v1",
                        "repeat": rep,
                    }
                    r = run_trial("capture", spec)
                    trials.append(r)
                    _log(
                        f"  [1] rep {rep} N={n} {label:19s} {r['fps']:7.1f} frames/s  "
                        f"peak PSS {_mb(r['peak_pss_mb'])} MB  ({r['run_s']:.2f} s, "
                        f"{r['videos']} videos, {r['frames_written']} frames, "
                        f"other work {r['other_load_cores']:.2f} cores)"
                    )
        table = []
        for n in ns:
            row: dict[str, Any] = {"n": n}
            for v in [*VARIANTS, UNSAMPLED]:
                rs = [t for t in trials if t["n"] == n and t["label"] == v]
                row[v] = {
                    "fps": measure.median([t["fps"] for t in rs]),
                    "peak_pss_mb": measure.median([t["peak_pss_mb"] for t in rs]),
                    "cpu_ms_per_frame": measure.median([t["cpu_ms_per_frame"] for t in rs]),
                    "sampler_cpu_share": measure.median([t["sampler_cpu_share"] for t in rs]),
                }
            row["ratio_vs_gym_vec"] = row["rlcapture"]["fps"] / row["gym-vec"]["fps"]
            row["ratio_vs_gym_worker"] = row["rlcapture"]["fps"] / row["gym-worker"]["fps"]
            table.append(row)
        results["throughput"] = {"trials": trials, "medians": table}

    # -- part 2 ----------------------------------------------------------------------------
    if 2 in parts:
        trials = []
        combos = [(v, L) for v in ("rlcapture", "gym-vec") for L in (short, long_)]
        for rep in range(repeats):
            order = combos[rep % len(combos) :] + combos[: rep % len(combos)]
            for variant, length in order:
                spec = {
                    "part": 2,
                    "variant": variant,
                    "n": 2,
                    "steps": mem_steps,
                    "env_id": "Pendulum-v1",
                    "max_episode_steps": length,
                    "repeat": rep,
                }
                r = run_trial("capture", spec)
                trials.append(r)
                _log(
                    f"  [2] rep {rep} {variant:10s} episode {length:5d}  "
                    f"peak PSS {r['peak_pss_mb']:7.1f} MB  {r['fps']:7.1f} frames/s "
                    f"({r['videos']} videos, other work {r['other_load_cores']:.2f} cores)"
                )
        table = []
        for variant in ("rlcapture", "gym-vec"):
            for length in (short, long_):
                rs = [
                    t
                    for t in trials
                    if t["variant"] == variant and t["max_episode_steps"] == length
                ]
                table.append(
                    {
                        "variant": variant,
                        "episode_length": length,
                        "steps": mem_steps,
                        "peak_pss_mb": measure.median([t["peak_pss_mb"] for t in rs]),
                        "fps": measure.median([t["fps"] for t in rs]),
                    }
                )
        results["memory_vs_episode_length"] = {"trials": trials, "medians": table}

    # -- part 3 ----------------------------------------------------------------------------
    if 3 in parts:
        r = run_trial("encoder", {"part": 3, "frames": enc_frames, "fps": 50, "repeats": repeats})
        for run in r["runs"]:
            _log(f"  [3] rep {run['repeat']} {run['variant']:10s} {run['fps']:7.1f} frames/s")
        tight = measure.median([x["fps"] for x in r["runs"] if x["variant"] == "tight"])
        rlc = measure.median([x["fps"] for x in r["runs"] if x["variant"] == "rlcapture"])
        zc = measure.median([x["fps"] for x in r["runs"] if x["variant"] == "tight-zero-copy"])
        results["encoder"] = {
            "trials": r,
            "medians": {
                "tight_fps": tight,
                "rlcapture_fps": rlc,
                "fraction": rlc / tight,
                "tight_zero_copy_fps": zc,
                "fraction_vs_zero_copy": rlc / zc,
            },
        }

    every = [
        *results.get("throughput", {}).get("trials", []),
        *results.get("memory_vs_episode_length", {}).get("trials", []),
        *([results["encoder"]["trials"]] if "encoder" in results else []),
    ]
    results["disturbed_trials"] = sum(1 for t in every if t.get("disturbed"))
    results["trials_run"] = len(every)
    _log(
        f"# trials disturbed by other work on the machine: {results['disturbed_trials']} "
        f"of {results['trials_run']}"
    )
    results["calibration_after"] = effective_cores()
    _log(f"# effective cores at the end: {results['calibration_after']['effective_cores']}")
    results["wall_s"] = time.perf_counter() - started
    print_tables(results)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    _log(f"\nwrote {out}  (total {results['wall_s']:.0f} s)")
    return 0


def print_tables(results: dict[str, Any]) -> None:
    s = results["settings"]
    if "throughput" in results:
        print(
            f"\n1. CartPole-v1 600x400, every frame recorded, {s['steps']} vector steps, "
            f"median of {s['repeats']}"
        )
        print("   frames/s (= env steps/s, reset..close) | peak PSS of the process tree, MB")
        hdr = f"   {'N':>2} | " + " | ".join(f"{LABELS[v]:>26}" for v in VARIANTS)
        print(hdr + " | rlc/gym-vec | rlc/gym-worker")
        for row in results["throughput"]["medians"]:
            cells = " | ".join(
                f"{row[v]['fps']:9.1f} f/s {row[v]['peak_pss_mb']:7.0f} MB " for v in VARIANTS
            )
            print(
                f"   {row['n']:>2} | {cells} | {row['ratio_vs_gym_vec']:10.2f}x | "
                f"{row['ratio_vs_gym_worker']:13.2f}x"
            )
        print(
            "   CPU ms per frame (all processes, sampler excluded): "
            + "; ".join(
                f"N={row['n']}: "
                + ", ".join(f"{v} {row[v]['cpu_ms_per_frame']:.1f}" for v in VARIANTS)
                for row in results["throughput"]["medians"]
            )
        )
        print(
            "   rlcapture without the PSS sampler (same runs otherwise): "
            + "; ".join(
                f"N={row['n']}: {row[UNSAMPLED]['fps']:.1f} f/s "
                f"({row[UNSAMPLED]['fps'] / row['gym-vec']['fps']:.2f}x gym-vec, "
                f"{row[UNSAMPLED]['fps'] / row['gym-worker']['fps']:.2f}x gym-worker)"
                for row in results["throughput"]["medians"]
            )
        )
        print(
            "   sampler CPU (share of one core): "
            + "; ".join(
                f"N={row['n']}: "
                + ", ".join(f"{v} {100 * row[v]['sampler_cpu_share']:.0f}%" for v in VARIANTS)
                for row in results["throughput"]["medians"]
            )
        )
    if "memory_vs_episode_length" in results:
        print(
            f"\n2. Pendulum-v1 500x500, N=2, {s['mem_steps']} vector steps, "
            f"median of {s['repeats']}"
        )
        print(f"   {'variant':>22} | {'episode length':>14} | {'peak PSS MB':>11} | frames/s")
        for row in results["memory_vs_episode_length"]["medians"]:
            print(
                f"   {LABELS[row['variant']]:>22} | {row['episode_length']:>14} | "
                f"{row['peak_pss_mb']:11.0f} | {row['fps']:8.1f}"
            )
    if "encoder" in results:
        m = results["encoder"]["medians"]
        t = results["encoder"]["trials"]
        print(
            f"\n3. Encoder alone, {t['frames']} CartPole frames {t['width']}x{t['height']}, "
            f"libx264 ultrafast crf 23, 1 thread, median of {s['repeats']}"
        )
        print(f"   tight PyAV loop (from_ndarray)           {m['tight_fps']:7.1f} frames/s")
        print(
            f"   tight PyAV loop (zero-copy, 1 sws thread) {m['tight_zero_copy_fps']:7.1f} frames/s"
        )
        print(
            f"   rlcapture Recorder + FrameProducer        {m['rlcapture_fps']:7.1f} frames/s  "
            f"= {100 * m['fraction']:.1f}% of the tight loop, "
            f"{100 * m['fraction_vs_zero_copy']:.1f}% of the zero-copy loop"
        )


if __name__ == "__main__":
    sys.exit(main())
