"""Where each process's time goes while CaptureVectorEnv records: running, waiting for a CPU, asleep.

Goal 3 of issue 11 (90 % of the ceiling) is lost to idle CPU at small N. This
says which process waits for what: from ``/proc/PID/schedstat`` (time on a
CPU and time runnable but waiting for one, in nanoseconds) and the context
switch counts of ``/proc/PID/status``, for the main process, each worker and
each encoder, over the steps after a warm-up. ``--policy`` sets the
encoders' scheduling (and ``nice-all:K`` the workers' too) after start, to
compare: each round runs every policy once, alternating.

    python benchmarks/bench_sched.py -n 2 --steps 1500 --rounds 3 --policies normal,nice-all:3

Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from statistics import median
from typing import Any

import rlcapture
from rlcapture._backend.encoder_count import usable_cores


def _sched(pid: int) -> tuple[float, float, int, int]:
    """Seconds on a CPU, seconds waiting for one, voluntary and involuntary switches."""
    with open(f"/proc/{pid}/schedstat") as f:
        on_cpu, waiting = (int(x) / 1e9 for x in f.read().split()[:2])
    counts = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                key, value = line.split(":")
                counts[key] = int(value)
    return on_cpu, waiting, counts["voluntary_ctxt_switches"], counts["nonvoluntary_ctxt_switches"]


def _apply(policy: str, workers: list[int], encoders: list[int]) -> None:
    if policy == "normal":
        return
    kind, _, value = policy.partition(":")
    if kind == "nice-all":
        for pid in workers + encoders:
            os.setpriority(os.PRIO_PROCESS, pid, int(value))
    elif kind == "nice-encoder":
        for pid in encoders:
            os.setpriority(os.PRIO_PROCESS, pid, int(value))
    elif kind in ("batch", "idle"):
        which = os.SCHED_BATCH if kind == "batch" else os.SCHED_IDLE
        for pid in encoders:
            os.sched_setscheduler(pid, which, os.sched_param(0))
    else:
        raise SystemExit(f"unknown policy {policy!r}: normal, nice-all:K, nice-encoder:K, batch, idle")


def run_once(env_id: str, n: int, steps: int, policy: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rlcapture-sched-") as out:
        env = rlcapture.make_vec(env_id, n, out)
        try:
            env.reset(seed=0)
            space = env.action_space
            space.seed(0)
            _apply(policy, env.worker_pids, env.recorder.encoder_pids)
            for _ in range(50):  # warm-up: imports, first renders, codec contexts
                env.step(space.sample())
            roles = {"main": os.getpid()}
            roles.update({f"worker {i}": p for i, p in enumerate(env.worker_pids)})
            roles.update({f"encoder {i}": p for i, p in enumerate(env.recorder.encoder_pids)})
            before = {role: _sched(pid) for role, pid in roles.items()}
            t0 = time.perf_counter()
            for _ in range(steps):
                env.step(space.sample())
            wall = time.perf_counter() - t0
            after = {role: _sched(pid) for role, pid in roles.items()}
        finally:
            env.close()
    cores = usable_cores()
    procs = {}
    for role in roles:
        on_cpu, waiting, vol, invol = (b - a for a, b in zip(before[role], after[role]))
        procs[role] = {
            "running_pct": 100 * on_cpu / wall,
            "waiting_for_cpu_pct": 100 * waiting / wall,
            "asleep_pct": 100 * (wall - on_cpu - waiting) / wall,
            "voluntary_switches_per_step": vol / steps,
            "involuntary_switches_per_step": invol / steps,
        }
    busy = sum(p["running_pct"] for p in procs.values()) / cores
    return {"policy": policy, "frames_per_s": steps * n / wall, "busy_pct": busy, "processes": procs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_id", nargs="?", default="CartPole-v1")
    parser.add_argument("-n", "--num-envs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1500, help="vector steps measured")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--policies", default="normal", help="comma-separated (see the docstring)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        raise SystemExit("bench_sched reads /proc: Linux only")
    policies = args.policies.split(",")
    runs = []
    for r in range(args.rounds):
        for policy in policies:
            result = run_once(args.env_id, args.num_envs, args.steps, policy)
            runs.append(result)
            print(
                f"round {r + 1} {policy:>14}: {result['frames_per_s']:.0f} frames/s, "
                f"{result['busy_pct']:.1f} % of the cores busy",
                file=sys.stderr,
            )
    print(f"{args.env_id}, N={args.num_envs}, {args.steps} steps, medians of {args.rounds} rounds")
    summary = {}
    for policy in policies:
        mine = [x for x in runs if x["policy"] == policy]
        rows = {
            role: {
                key: median(x["processes"][role][key] for x in mine)
                for key in mine[0]["processes"][role]
            }
            for role in mine[0]["processes"]
        }
        summary[policy] = {
            "frames_per_s": median(x["frames_per_s"] for x in mine),
            "busy_pct": median(x["busy_pct"] for x in mine),
            "processes": rows,
        }
        print(
            f"{policy}: {summary[policy]['frames_per_s']:.0f} frames/s, "
            f"{summary[policy]['busy_pct']:.1f} % busy"
        )
        for role, row in rows.items():
            print(
                f"  {role:<10} running {row['running_pct']:5.1f} %  waiting for a CPU "
                f"{row['waiting_for_cpu_pct']:5.1f} %  asleep {row['asleep_pct']:5.1f} %  "
                f"switches/step {row['voluntary_switches_per_step']:.2f} voluntary, "
                f"{row['involuntary_switches_per_step']:.2f} involuntary"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"env": args.env_id, "n": args.num_envs, "steps": args.steps, "runs": runs,
                 "medians": summary, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                f, indent=1,
            )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
