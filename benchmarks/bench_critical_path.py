#!/usr/bin/env python
"""Is recording off the critical path? Step latency with a policy that takes time.

A policy that sleeps T ms per batch (a stand-in for a policy on an accelerator:
the CPU is free meanwhile) steps N = 4 CartPole-v1 envs (random actions), with:

* ``none``: ``CaptureVectorEnv(record="none")``, nothing rendered;
* ``render``: the same over envs that render inside ``step`` and drop the
  frame (what rendering on the critical path costs, with no encoding);
* ``all``: rlcapture recording every frame; workers answer ``step`` first and
  render afterwards, and the encoder runs in its own process;
* ``all-nice``: the same with the encoder process reniced to 19 by this script
  (an experiment: does deferring encoding to idle CPU shorten the steps?);
* ``all-now`` / ``all-gate``: ``all`` with ``render_after_batch`` forced off
  (each worker renders as soon as it answered) or on (workers render once
  every worker answered); ``all`` takes the default (on when workers
  outnumber cores);
* ``every``: rlcapture recording 1 episode in 20 (``record="every:20"``).

For each it reports step latency (the time ``envs.step`` takes, p50 and p99),
throughput (env-steps/s over the stepping loop, and with ``close`` included),
and, from timestamps taken inside the workers (``CLOCK_MONOTONIC``, the same
clock in every process), where the rendering happened: the share of render
time that fell inside the policy's sleep (between a step's return and the
next call) rather than inside ``envs.step``. Each run is a fresh process;
variants alternate (order rotated each repeat); medians over repeats.

    python benchmarks/bench_critical_path.py               # T = 0 2 5 20 ms, 3 repeats
    python benchmarks/bench_critical_path.py --quick
"""

from __future__ import annotations

import argparse
import datetime as _dt
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

from rlcapture.bench import measure  # noqa: E402

measure.headless()  # inherited by workers and trials
VARIANTS = ("none", "render", "all-now", "all-gate")


def _now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def _make_timed(log_dir: str, render_in_step: bool):
    """A factory of CartPole envs that log when they step and render."""
    import gymnasium as gym
    import numpy as np

    class Timed(gym.Wrapper):
        def __init__(self) -> None:
            super().__init__(gym.make("CartPole-v1", render_mode="rgb_array"))
            self.renders: list[tuple[float, float]] = []
            self.steps: list[tuple[float, float]] = []

        def _render_timed(self) -> Any:
            t0 = _now()
            frame = self.env.render()
            self.renders.append((t0, _now()))
            return frame

        def reset(self, **kwargs: Any) -> Any:
            out = self.env.reset(**kwargs)
            if render_in_step:
                self._render_timed()
            return out

        def step(self, action: Any) -> Any:
            t0 = _now()
            out = self.env.step(action)
            self.steps.append((t0, _now()))
            if render_in_step:
                self._render_timed()
            return out

        def render(self) -> Any:
            return self._render_timed()

        def close(self) -> None:
            for kind, rows in (("renders", self.renders), ("steps", self.steps)):
                if rows:
                    name = f"{kind}-{os.getpid()}-{id(self)}.npy"
                    np.save(os.path.join(log_dir, name), np.asarray(rows))
            super().close()

    return Timed


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    import rlcapture

    variant, n, steps, sleep_ms = spec["variant"], spec["n"], spec["steps"], spec["sleep_ms"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-critical-"))
    logs = tmp / "logs"
    logs.mkdir()
    try:
        Timed = _make_timed(str(logs), render_in_step=variant == "render")
        warm = Timed()  # rendering's imports (pygame) before the workers fork
        warm.reset(seed=0)
        warm.env.render()
        warm.env.close()
        record = "all" if variant.startswith("all") else "every:20" if variant == "every" else "none"
        gate = {"all-gate": True, "all-now": False}.get(variant)  # else the default (auto)
        envs = rlcapture.CaptureVectorEnv(
            [Timed] * n, tmp / "out", record=record, render_after_batch=gate
        )
        if variant == "all-nice":
            os.setpriority(os.PRIO_PROCESS, envs.recorder.encoder_pid, 19)
        envs.action_space.seed(spec["seed"])
        pause = sleep_ms / 1e3
        calls = np.empty(steps)
        returns = np.empty(steps)
        t0 = _now()
        envs.reset(seed=spec["seed"])
        t_reset = _now()
        for k in range(steps):
            actions = envs.action_space.sample()
            if pause:
                time.sleep(pause)  # the policy: the CPU is free meanwhile
            calls[k] = _now()
            envs.step(actions)
            returns[k] = _now()
        t_loop = _now()
        envs.close()
        t_end = _now()
        renders = [np.load(p) for p in logs.glob("renders-*.npy")]
        renders_arr = np.concatenate(renders) if renders else np.empty((0, 2))
        env_steps_log = [np.load(p) for p in logs.glob("steps-*.npy")]
        starts = np.concatenate(env_steps_log)[:, 0] if env_steps_log else np.empty(0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    latency = 1e3 * (returns - calls)
    # Windows where the caller is in the policy: from the reset's return, or a
    # step's return, to the next step call.
    policy_windows = np.stack([np.concatenate([[t_reset], returns[:-1]]), calls], axis=1)
    step_windows = np.stack([calls, returns], axis=1)

    def overlap(intervals: Any, windows: Any) -> float:
        """Total time of ``intervals`` inside ``windows`` (both sorted, disjoint windows)."""
        total = 0.0
        starts = windows[:, 0]
        for a, b in intervals:
            i = max(0, int(np.searchsorted(starts, a, side="right")) - 1)
            while i < len(windows) and windows[i, 0] < b:
                lo, hi = max(a, windows[i, 0]), min(b, windows[i, 1])
                if hi > lo:
                    total += hi - lo
                i += 1
        return total

    render_total = float((renders_arr[:, 1] - renders_arr[:, 0]).sum()) if len(renders_arr) else 0.0
    in_policy = overlap(renders_arr, policy_windows) if len(renders_arr) else 0.0
    in_step = overlap(renders_arr, step_windows) if len(renders_arr) else 0.0
    after_loop = (
        float(np.clip(renders_arr[:, 1] - np.maximum(renders_arr[:, 0], t_loop), 0, None).sum())
        if len(renders_arr)
        else 0.0
    )
    # When did the slowest worker start its env.step, counted from the call?
    # Near 0 when workers wait for nothing; late when one waits for a CPU
    # (behind the others' rendering) or is still busy with its last frame.
    k = np.searchsorted(calls, starts, side="right") - 1
    ok = (k >= 0) & (starts <= returns[np.clip(k, 0, None)])
    last_start = np.zeros(steps)
    np.maximum.at(last_start, k[ok], 1e3 * (starts[ok] - calls[k[ok]]))
    env_steps = n * steps
    return {
        "last_worker_start_p50_ms": float(np.percentile(last_start, 50)),
        "last_worker_start_p99_ms": float(np.percentile(last_start, 99)),
        **spec,
        "p50_ms": float(np.percentile(latency, 50)),
        "p90_ms": float(np.percentile(latency, 90)),
        "p99_ms": float(np.percentile(latency, 99)),
        "mean_ms": float(latency.mean()),
        "loop_s": t_loop - t0,
        "close_s": t_end - t_loop,
        "steps_per_s_loop": env_steps / (t_loop - t0),
        "steps_per_s_with_close": env_steps / (t_end - t0),
        "renders": len(renders_arr),
        "render_ms_mean": 1e3 * render_total / max(1, len(renders_arr)),
        "render_share_in_policy": in_policy / render_total if render_total else None,
        "render_share_in_step": in_step / render_total if render_total else None,
        "render_share_after_loop": after_loop / render_total if render_total else None,
    }


def _log(text: str) -> None:
    print(f"  {text}", flush=True)


def run_trial(spec: dict[str, Any], max_load: float | None = 0.3) -> dict[str, Any]:
    """Run a trial in a fresh process on a quiet machine (waits, and redoes disturbed runs)."""
    argv = [str(Path(__file__).resolve()), "--trial", json.dumps(spec)]
    try:
        return measure.retry_quiet(
            lambda _attempt: measure.run_trial_process(argv, 600, cwd=ROOT), max_load, _log
        )
    except measure.TrialFailed as exc:
        raise RuntimeError(f"trial {spec} failed: {exc}\n{exc.detail}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sleep-ms", default="0,2,5,20", help="policy times T, ms (default 0,2,5,20)")
    ap.add_argument("--num-envs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=500, help="vector steps per run (default 500)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 repeat, 150 steps")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "critical_path.json"))
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="none, render, all, all-nice, all-now, all-gate, every (default: %(default)s)",
    )
    ap.add_argument(
        "--max-other-load", type=float, default=0.3,
        help="wait for other programs to use fewer cores than this before each run, and "
        "redo disturbed runs (default 0.3; 0: do not wait, on a machine that is never quiet)",
    )  # fmt: skip
    ap.add_argument("--trial", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.trial:
        return measure.trial_main(trial, args.trial)
    variants = [v for v in args.variants.split(",") if v]
    repeats = 1 if args.quick else args.repeats
    steps = 150 if args.quick else args.steps
    sleeps = [float(x) for x in args.sleep_ms.split(",")]
    n = args.num_envs
    date = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    print(
        f"# {date}  {os.cpu_count()} cores  N={n}  {steps} vector steps per run  {repeats} repeats"
    )
    trials = []
    for rep in range(repeats):
        k = rep % len(variants)
        order = variants[k:] + variants[:k]
        for t in sleeps:
            for v in order:
                spec = {
                    "variant": v,
                    "n": n,
                    "steps": steps,
                    "sleep_ms": t,
                    "seed": rep,
                    "repeat": rep,
                }
                r = run_trial(spec, args.max_other_load or None)
                trials.append(r)
                print(
                    f"  rep {rep} T={t:4.0f} ms {v:8s} p50 {r['p50_ms']:6.2f} ms p99 "
                    f"{r['p99_ms']:6.2f} ms  {r['steps_per_s_loop']:7.0f} steps/s  "
                    f"render in policy {100 * (r['render_share_in_policy'] or 0):5.1f}%  "
                    f"other load {r['other_load_cores']:.2f} cores",
                    flush=True,
                )
    rows = []
    for t in sleeps:
        for v in variants:
            rs = [x for x in trials if x["sleep_ms"] == t and x["variant"] == v]
            med = {k: measure.median([x[k] for x in rs]) for k in (
                "p50_ms", "p90_ms", "p99_ms", "last_worker_start_p50_ms",
                "last_worker_start_p99_ms", "steps_per_s_loop", "steps_per_s_with_close",
                "close_s", "render_ms_mean", "render_share_in_policy", "render_share_in_step",
                "render_share_after_loop", "other_load_cores")}  # fmt: skip
            rows.append({"sleep_ms": t, "variant": v, **med})
    print(
        f"\nN={n} CartPole-v1, {steps} vector steps, median of {repeats}; "
        "latency = time in envs.step; render shares from in-worker timestamps"
    )
    print(
        "in policy / in step / after: where render time fell (the policy's sleep, envs.step, "
        "after the loop); last start: from the step call to the slowest worker's env.step"
    )
    print(
        f"{'T ms':>5} {'variant':<8} {'p50 ms':>7} {'p99 ms':>7} {'steps/s':>8} "
        f"{'w/ close':>8} {'render ms':>9} {'in policy':>9} {'in step':>8} {'after':>6} "
        f"{'last start p50/p99 ms':>21}"
    )

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.0f}%"

    for r in rows:
        print(
            f"{r['sleep_ms']:5.0f} {r['variant']:<8} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
            f"{r['steps_per_s_loop']:8.0f} {r['steps_per_s_with_close']:8.0f} "
            f"{(r['render_ms_mean'] or 0):9.2f} {pct(r['render_share_in_policy']):>9} "
            f"{pct(r['render_share_in_step']):>8} {pct(r['render_share_after_loop']):>6} "
            f"{r['last_worker_start_p50_ms']:10.2f}/{r['last_worker_start_p99_ms']:<10.2f}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": date, "n": n, "steps": steps, "repeats": repeats,
                               "medians": rows, "trials": trials}, indent=2) + "\n")  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
