"""Steps/s beside trackers that hang or crawl, against the same run with no tracker (issue 23).

The promise: uploads never block the recording. ``tests/test_trackers.py``
asserts only that such a run ends within the upload timeout and names what
was not sent; the cost on the step path is measured here, where a loaded
machine's noise can be seen and repeated.

Each trial is a fresh process recording CartPole-v1 (N envs, random policy,
every episode) for ``--steps`` vector steps; the figure is vector steps per
second over the step loop (``close()`` waits for the uploads by design: its
time is printed apart). Conditions, alternated within each repetition:

- ``none``: no tracker;
- ``hang``: MLflow and W&B (online mode, a fake key) pointed at a local
  server that accepts and never answers;
- ``crawl``: the same, at a server that answers one byte a second.

Reported: each condition's median steps/s, and its ratio to ``none`` of the
same repetition (neighbours on a shared machine), median over repetitions.
The issue's target is a ratio within 5 % of 1.

    python benchmarks/bench_hanging_tracker.py [--num-envs 4] [--steps 1500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from slow_servers import SlowServer  # noqa: E402

CONDITIONS = ("none", "hang", "crawl")

TRIAL = """
import json, sys, time
import numpy as np
import rlcapture

out, n, steps, timeout, specs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
env = rlcapture.make_vec("CartPole-v1", n, out, loggers=specs, upload_timeout=timeout,
                         upload_attempts=2)
rng = np.random.default_rng(0)
env.reset(seed=0)
for _ in range(50):  # warm up: the first frames, the uploader's start
    env.step(rng.integers(0, 2, n))
t0 = time.perf_counter()
for _ in range(steps):
    env.step(rng.integers(0, 2, n))
loop = time.perf_counter() - t0
t1 = time.perf_counter()
env.close()
print(json.dumps({"steps_per_s": steps / loop, "close_s": time.perf_counter() - t1,
                  "not_uploaded": env.recorder.summary.get("not_uploaded", [])}))
"""


def trial(condition: str, num_envs: int, steps: int, timeout: float, tmp: str) -> dict:
    """One run in a fresh process; its steps/s and close time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    specs: list[str] = []
    server = None
    if condition != "none":
        server = SlowServer(condition)
        env.update(
            WANDB_MODE="online",
            WANDB_BASE_URL=server.url,
            WANDB_API_KEY="x" * 40,
            WANDB_DIR=tmp,
        )
        specs = [f"mlflow:{server.url}", "wandb:slow"]
    out = tempfile.mkdtemp(dir=tmp)
    try:
        done = subprocess.run(
            [sys.executable, "-c", TRIAL, out, str(num_envs), str(steps), str(timeout), *specs],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        if server is not None:
            server.close()
    if done.returncode != 0:
        raise RuntimeError(f"{condition} trial failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--upload-timeout", type=float, default=5.0)
    parser.add_argument("--output", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {c: [] for c in CONDITIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            order = CONDITIONS if rep % 2 == 0 else tuple(reversed(CONDITIONS))
            for condition in order:
                got = trial(condition, args.num_envs, args.steps, args.upload_timeout, tmp)
                runs[condition].append(got)
                print(
                    f"rep {rep} {condition:5s} {got['steps_per_s']:8.1f} steps/s, "
                    f"close {got['close_s']:.1f} s, not sent: {len(got['not_uploaded'])} trackers",
                    flush=True,
                )
    print(f"\nCartPole-v1, {args.num_envs} envs, {args.steps} vector steps per run")
    print(f"{'condition':10s} {'steps/s (median)':>17s} {'ratio to none':>14s} {'close s':>8s}")
    figures = {}
    for condition in CONDITIONS:
        rates = [r["steps_per_s"] for r in runs[condition]]
        ratios = [
            r["steps_per_s"] / n["steps_per_s"] for r, n in zip(runs[condition], runs["none"])
        ]
        closes = [r["close_s"] for r in runs[condition]]
        figures[condition] = {
            "steps_per_s": statistics.median(rates),
            "ratio": statistics.median(ratios),
            "ratios": ratios,
            "close_s": statistics.median(closes),
        }
        print(
            f"{condition:10s} {statistics.median(rates):17.1f} {statistics.median(ratios):14.3f} "
            f"{statistics.median(closes):8.1f}"
        )
    if args.output:
        info = {
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "args": {k: str(v) for k, v in vars(args).items()},
        }
        args.output.write_text(json.dumps({"info": info, "figures": figures}, indent=1))


if __name__ == "__main__":
    main()
