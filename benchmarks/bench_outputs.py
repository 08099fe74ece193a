"""What the outputs of issue 4 cost: mosaic composing (numpy vs numba), PNGs, keep rules.

Part 1, in this process: shrinking one 600x400 CartPole frame into a mosaic
tile, by Pillow's ``reduce`` (what rlcapture uses), a numpy box average
(reshape and sum), numpy's strided pick
(nearest, lower quality) and a numba box average (if numba is installed),
plus the mosaic's label drawing and a Pillow PNG of the frame. Medians of
``--repeats`` timings of ``--loops`` calls each.

Part 2, end to end: ``rlcapture record``-like runs of CartPole-v1 (N envs,
random policy, every frame recorded) with video only, +keyframes, +PNG every
frame, +mosaic and keep=worst:3, alternating repetitions, each run in a fresh
process; reports env-steps/s as a ratio to the video-only run of the same
repetition (the machine is shared: ratios of neighbours, medians).

    python benchmarks/bench_outputs.py [--num-envs 4] [--steps 1500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from rlcapture.bench.measure import run_trial_process, time_per_call, trial_main  # noqa: E402


def _frame() -> np.ndarray:
    import gymnasium as gym

    env = gym.make("CartPole-v1", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(0)
    frame = env.render()
    env.close()
    return frame


def _timeit(fn, loops: int, repeats: int) -> float:
    """Median ms per call."""
    return 1e3 * time_per_call(fn, loops, repeats)


def micro(loops: int, repeats: int) -> dict[str, float]:
    import io

    from PIL import Image

    from rlcapture._backend.mosaic import Mosaic, shrink

    frame = _frame()
    out: dict[str, float] = {}
    for f in (2, 3):
        tile = np.zeros((400 // f, 600 // f, 3), np.uint8)
        out[f"Pillow reduce f={f} (used)"] = _timeit(lambda f=f, tile=tile: shrink(frame, f, tile), loops, repeats)

        def numpy_box(f: int = f, tile: np.ndarray = tile) -> None:
            h, w = tile.shape[:2]
            block = frame[: h * f, : w * f].reshape(h, f, w, f, 3)
            total = block.sum(axis=(1, 3), dtype=np.uint32)
            np.copyto(tile, (total + (f * f) // 2) // (f * f), casting="unsafe")

        out[f"numpy box f={f}"] = _timeit(numpy_box, loops, repeats)
        out[f"numpy stride f={f}"] = _timeit(
            lambda f=f, tile=tile: np.copyto(tile, frame[: tile.shape[0] * f : f, : tile.shape[1] * f : f]),
            loops,
            repeats,
        )
        try:
            import numba

            @numba.njit(cache=False, nogil=True)
            def box(src, f, dst):  # pragma: no cover - benchmark only
                h, w = dst.shape[0], dst.shape[1]
                n = f * f
                for y in range(h):
                    for x in range(w):
                        for c in range(3):
                            s = 0
                            for dy in range(f):
                                for dx in range(f):
                                    s += src[y * f + dy, x * f + dx, c]
                            dst[y, x, c] = (s + n // 2) // n

            box(frame, f, tile)  # compile outside the timing
            out[f"numba box f={f}"] = _timeit(lambda f=f, tile=tile: box(frame, f, tile), loops, repeats)
        except ImportError:
            pass
    mosaic = Mosaic(os.devnull, 4, 30.0, None)  # type: ignore[arg-type]
    strip = np.zeros((14, 300, 3), np.uint8)
    out["label (Pillow text)"] = _timeit(lambda: mosaic._draw_label(strip, "env 3  episode 12"), loops, repeats)
    image = Image.fromarray(frame)
    out["PNG 600x400 level 1"] = _timeit(
        lambda: image.save(io.BytesIO(), format="PNG", compress_level=1), max(1, loops // 10), repeats
    )
    return out


VARIANTS = {
    "video": {},
    "video+keyframes": {"keyframes": True},
    "video+png every frame": {"frames": 1},
    "video+mosaic": {"mosaic": True},
    "video+keep worst:3": {"keep": "worst:3"},
}

def trial(spec: dict) -> dict:
    """One end-to-end run, in its own process: ``spec`` is n, steps and the recording options."""
    import rlcapture

    n, steps = spec["n"], spec["steps"]
    with tempfile.TemporaryDirectory() as out:
        envs = rlcapture.make_vec("CartPole-v1", n, out, **spec["options"])
        envs.action_space.seed(0)
        t = time.perf_counter()
        envs.reset(seed=0)
        for _ in range(steps // n):
            envs.step(envs.action_space.sample())
        envs.close()
        return {"seconds": time.perf_counter() - t, "steps": steps // n * n}


def end_to_end(n: int, steps: int, repeats: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {k: [] for k in VARIANTS}
    names = list(VARIANTS)
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            spec = {"n": n, "steps": steps, "options": VARIANTS[name]}
            argv = [str(Path(__file__).resolve()), "--trial", json.dumps(spec)]
            res = run_trial_process(argv, 600, cwd=HERE.parent)
            rates[name].append(res["steps"] / res["seconds"])
            print(f"  repeat {r}: {name:<24} {rates[name][-1]:7.0f} steps/s", file=sys.stderr)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loops", type=int, default=200)
    parser.add_argument("--json", default=str(HERE / "results" / "outputs.json"))
    parser.add_argument("--trial", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial:
        sys.exit(trial_main(trial, args.trial))
    costs = micro(args.loops, args.repeats)
    print("per call, ms (median):")
    for name, ms in costs.items():
        print(f"  {name:<24} {ms:8.3f}")
    rates = end_to_end(args.num_envs, args.steps, args.repeats)
    base = rates["video"]
    print(f"CartPole-v1, N={args.num_envs}, {args.steps} env-steps, every frame recorded:")
    summary = {}
    for name, values in rates.items():
        ratios = [v / b for v, b in zip(values, base)]
        summary[name] = {"steps_per_s": statistics.median(values), "ratio": statistics.median(ratios)}
        print(f"  {name:<24} {summary[name]['steps_per_s']:7.0f} steps/s  {summary[name]['ratio']:.2f}x video only")
    Path(args.json).write_text(
        json.dumps(
            {
                "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "args": vars(args),
                "micro_ms": costs,
                "end_to_end": {"raw": rates, "summary": summary},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
