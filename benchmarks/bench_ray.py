"""What running an evaluation through Ray costs, against a local run on the same cores (issue 13).

Part 1, cold start: ``evaluate_on_ray`` with no Ray running (it starts a
local Ray, runs, stops it): the seconds to the first task, and the whole call.

Part 2, steady state: with one local Ray started here (``num_cpus`` = the
cores), alternating repetitions of

- ``local``: :func:`rlcapture.evaluate`, ``num_envs`` = cores;
- ``ray-1x{N}``: one actor with ``num_envs`` = cores, one task (only Ray's
  overhead: the actor, the polls, the renames);
- ``ray-1x{N}-tasks``: the same cut into ``--tasks`` tasks (the per-task cost:
  each task starts its vector env and encoder again);
- ``ray-{N}x1``: one actor per core, one env each (the default shape);
- ``ray-{N}x1-stream``: the same with files copied through Ray in chunks.

Wall time and CPU seconds of the whole process tree (driver, Ray's own
processes, actors, workers, encoders) per env step; ratios against the local
run of the same repetition, medians over repeats.

Part 3, the driver's share per episode (what grows with nodes): the driver's
own CPU per episode in the runs above, and micro-timings of one manifest line
and one keep decision.

Part 4, calls: the driver's CPU per actor call (a poll that answers at once)
and the idle driver's CPU with Ray connected. (The ``driver_cpu_ms_per_episode``
of part 2 includes this script's CPU sampler thread: read it as an upper bound.)

Part 5, streaming: a ``--stream-mib`` file copied from an actor to the driver
with the run's chunked transfer (4 MiB chunks, 8 in flight): MiB/s and the
driver's CPU per chunk.

    python benchmarks/bench_ray.py [--episodes 200] [--steps 200] [--repeats 3] [--tasks 8]
                                   [--parts calls,cold,steady,stream]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from rlcapture._backend.encoder_count import usable_cores  # noqa: E402
from rlcapture.bench.measure import machine_info, self_cpu, time_per_call  # noqa: E402


class _TreeCPU:
    """CPU of this process tree over a call, sampling every descendant while it lives.

    Ray's raylet does not collect its workers' usage when they exit (an actor
    killed at the end of a run takes its CPU seconds with it), so
    :func:`tree_cpu` alone misses them: each descendant's CPU is read every
    50 ms and its last reading counted (a process living less than that is
    missed, a few ms each; a process's own time only, since its children
    are sampled themselves).
    """

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.seen: dict[tuple[int, float], float] = {}
        self.first: dict[tuple[int, float], float] = {}
        self.stop = threading.Event()
        self.base = self_cpu()
        self._sample()
        self.first = dict(self.seen)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        for p in self.psutil.Process().children(recursive=True):
            try:
                key = (p.pid, p.create_time())
                t = p.cpu_times()  # its own time only: what it reaped was sampled too
                self.seen[key] = max(self.seen.get(key, 0.0), t.user + t.system)
            except self.psutil.Error:
                pass

    def _loop(self) -> None:
        while not self.stop.wait(0.05):
            self._sample()

    def total(self) -> float:
        self.stop.set()
        self.thread.join()
        self._sample()
        own = self_cpu() - self.base  # not reaped_cpu(): the children it reaped were sampled
        return own + sum(v - self.first.get(k, 0.0) for k, v in self.seen.items())


def _timed(fn: Any) -> tuple[Any, float, float, float]:
    cpu = _TreeCPU()
    w0, d0 = time.perf_counter(), self_cpu()
    result = fn()
    return result, time.perf_counter() - w0, cpu.total(), self_cpu() - d0


def cold(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    from rlcapture.cluster import evaluate_on_ray

    t0 = time.perf_counter()
    result = evaluate_on_ray(
        "CartPole-v1", seeds=range(8), num_envs=1, out=tmp / "cold", max_episode_steps=args.steps,
        init_options={"num_cpus": usable_cores()},
    )
    return {"startup_s": result.startup, "total_s": time.perf_counter() - t0, "episodes": len(result.episodes)}


def steady(args: argparse.Namespace, tmp: Path) -> dict[str, list[dict[str, float]]]:
    import ray

    import rlcapture
    from rlcapture.cluster import evaluate_on_ray

    n = usable_cores()
    seeds = range(args.episodes)
    common = {"max_episode_steps": args.steps}
    variants = {
        "local": lambda out: rlcapture.evaluate("CartPole-v1", seeds=seeds, num_envs=n, out=out, **common),
        f"ray-1x{n}": lambda out: evaluate_on_ray(
            "CartPole-v1", seeds=seeds, num_envs=n, actors=1, num_cpus=n, task_size=len(seeds), out=out, **common
        ),
        f"ray-1x{n}-tasks": lambda out: evaluate_on_ray(
            "CartPole-v1", seeds=seeds, num_envs=n, actors=1, num_cpus=n,
            task_size=-(-len(seeds) // args.tasks), out=out, **common
        ),
        f"ray-{n}x1": lambda out: evaluate_on_ray("CartPole-v1", seeds=seeds, num_envs=1, out=out, **common),
        f"ray-{n}x1-stream": lambda out: evaluate_on_ray(
            "CartPole-v1", seeds=seeds, num_envs=1, out=out, storage="stream", scratch=str(tmp), **common
        ),
    }
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    # As evaluate_on_ray starts Ray itself: workers at the driver's priority (Ray's default is nice 15).
    ray.init(num_cpus=n, include_dashboard=False, logging_level="ERROR",
             _system_config={"worker_niceness": args.niceness})
    try:
        for rep in range(args.repeats):
            order = list(variants) if rep % 2 == 0 else list(reversed(variants))
            for name in order:
                out = tmp / f"{name}-{rep}"
                result, wall, cpu, driver = _timed(lambda name=name, out=out: variants[name](out))
                eps = result.episodes
                steps = sum(int(getattr(e, "length", None) or e["length"]) for e in eps) if eps else 0
                row = {"wall_s": wall, "cpu_s": cpu, "driver_cpu_s": driver, "steps": steps, "episodes": len(eps)}
                if hasattr(result, "startup"):
                    row.update(startup_s=result.startup, tasks=result.tasks, streamed_mib=result.streamed_bytes / 2**20,
                               chunks=result.streamed_chunks)
                rows[name].append(row)
                print(f"  rep {rep} {name:16s} {wall:6.2f} s wall, {cpu:6.2f} s CPU, {steps} steps", flush=True)
    finally:
        ray.shutdown()
    return rows


def stream(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """Copy one file from an actor on a local Ray with the driver's chunked transfer, as a run does."""
    import ray

    from rlcapture.cluster.actor import EvalActor
    from rlcapture.cluster.transfer import DEFAULT_CHUNK, DEFAULT_WINDOW, FileCopy, Transfers

    size = args.stream_mib << 20
    src = tmp / "big.bin"
    src.write_bytes(os.urandom(size))
    ray.init(num_cpus=usable_cores(), include_dashboard=False, logging_level="ERROR")
    try:
        actor = ray.remote(EvalActor).options(num_cpus=0, max_concurrency=4).remote(0)
        ray.get(actor.hello.remote())
        rows = []
        for rep in range(args.repeats):
            transfers = Transfers(DEFAULT_CHUNK, DEFAULT_WINDOW)
            copy = FileCopy(0, 0, str(src), str(tmp / f"copy{rep}.bin"), size)
            t0, c0 = time.perf_counter(), self_cpu()
            transfers.add(copy)
            refs: dict[Any, tuple[FileCopy, int, int]] = {}
            done = False
            while not done:
                for c, offset, length in transfers.requests():
                    refs[actor.read.remote(c.remote, offset, length)] = (c, offset, length)
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=10)
                for ref in ready:
                    c, offset, length = refs.pop(ref)
                    done = transfers.received(c, offset, ray.get(ref), length) or done
            wall, cpu = time.perf_counter() - t0, self_cpu() - c0
            rows.append({"wall_s": wall, "driver_cpu_s": cpu, "mib_per_s": args.stream_mib / wall,
                         "chunks": transfers.chunks})
            os.unlink(copy.local)
            print(f"  rep {rep} stream {args.stream_mib} MiB: {args.stream_mib / wall:.0f} MiB/s, "
                  f"driver {1e3 * cpu / transfers.chunks:.2f} ms CPU per 4 MiB chunk", flush=True)
        ray.kill(actor)
    finally:
        ray.shutdown()
    return {
        "mib_per_s": statistics.median(r["mib_per_s"] for r in rows),
        "driver_cpu_ms_per_chunk": statistics.median(1e3 * r["driver_cpu_s"] / r["chunks"] for r in rows),
        "runs": rows,
    }


def calls(args: argparse.Namespace) -> dict[str, float]:
    """The driver's CPU per actor call (a poll answering at once) and Ray's idle driver CPU."""
    import ray

    from rlcapture.cluster.actor import EvalActor

    ray.init(num_cpus=usable_cores(), include_dashboard=False, logging_level="ERROR",
             _system_config={"worker_niceness": args.niceness})
    try:
        time.sleep(2.0)
        c0, t0 = self_cpu(), time.perf_counter()
        time.sleep(5.0)
        idle = (self_cpu() - c0) / (time.perf_counter() - t0)
        actor = ray.remote(EvalActor).options(num_cpus=0, max_concurrency=4).remote(0)
        ray.get(actor.hello.remote())
        n = 500
        c0, t0 = self_cpu(), time.perf_counter()
        for _ in range(n):
            ray.get(actor.poll.remote(0.0))
        row = {"idle_driver_cores": idle, "call_cpu_ms": 1e3 * (self_cpu() - c0) / n,
               "call_wall_ms": 1e3 * (time.perf_counter() - t0) / n}
        ray.kill(actor)
    finally:
        ray.shutdown()
    print(f"  {row}", flush=True)
    return row


def micro() -> dict[str, float]:
    from rlcapture._backend.keep import KeepPolicy, parse_keep
    from rlcapture._backend.manifest import ManifestWriter

    with tempfile.TemporaryDirectory() as d:
        m = ManifestWriter(os.path.join(d, "episodes.jsonl"))
        line = {"env": 0, "episode": 1, "seed": 1, "return": 21.0, "length": 21, "video": "videos/seed1.mp4",
                "frames": 22, "end": "terminated", "node": "0123456789ab", "actor": 3, "task": 7}
        manifest_us = 1e6 * time_per_call(lambda: m.write(line), 2000, 3)
        m.close()
    keep = KeepPolicy(parse_keep("worst:10,best:10"))
    counter = iter(range(10**9))
    record = {"end": "terminated", "return": 0.0}

    def decide() -> None:
        j = next(counter)
        record["return"] = float(j % 997)
        keep.decide((0, j), record)

    keep_us = 1e6 * time_per_call(decide, 2000, 3)
    return {"manifest_line_us": manifest_us, "keep_decision_us": keep_us}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=200, help="max_episode_steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--stream-mib", type=int, default=256, help="size of the file the stream part copies")
    parser.add_argument("--parts", default="calls,cold,steady,stream", help="which parts to run (and micro, always)")
    parser.add_argument("--niceness", type=int, default=0, help="Ray's worker_niceness in the steady part")
    parser.add_argument("--output", default=str(HERE / "results" / "ray.json"))
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    report: dict[str, Any] = {"machine": machine_info(), "args": vars(args), "micro": micro()}
    print(f"micro: {report['micro']}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "stream" in parts:
            print("stream:", flush=True)
            report["stream"] = stream(args, tmp)
        if "calls" in parts:
            print("calls:", flush=True)
            report["calls"] = calls(args)
        if "cold" in parts:
            print("cold start:", flush=True)
            report["cold"] = cold(args, tmp)
            print(f"  {report['cold']}", flush=True)
        if "steady" in parts:
            print("steady state:", flush=True)
            rows = steady(args, tmp)
            report.update(_summarize(args, rows))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


def _summarize(args: argparse.Namespace, rows: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    local = rows["local"]
    for name, runs in rows.items():
        ratio = statistics.median(r["wall_s"] / base["wall_s"] for r, base in zip(runs, local))
        cpu_ratio = statistics.median(r["cpu_s"] / base["cpu_s"] for r, base in zip(runs, local))
        cpu_per_step_ms = statistics.median(1e3 * r["cpu_s"] / max(1, r["steps"]) for r in runs)
        driver_ms = statistics.median(1e3 * r["driver_cpu_s"] / max(1, r["episodes"]) for r in runs)
        summary[name] = {
            "wall_s": statistics.median(r["wall_s"] for r in runs),
            "wall_vs_local": ratio,
            "cpu_vs_local": cpu_ratio,
            "cpu_ms_per_step": cpu_per_step_ms,
            "driver_cpu_ms_per_episode": driver_ms,
            "startup_s": statistics.median(r.get("startup_s", 0.0) for r in runs),
        }
    n = usable_cores()
    one, many = summary[f"ray-1x{n}"], summary[f"ray-1x{n}-tasks"]
    per_task = (many["wall_s"] - one["wall_s"]) / max(1, args.tasks - 1)
    print(f"{'variant':18s} {'wall':>7s} {'vs local':>9s} {'CPU vs local':>13s} {'CPU ms/step':>12s} "
          f"{'driver ms/ep':>13s} {'startup':>8s}")
    for name, s in summary.items():
        print(f"{name:18s} {s['wall_s']:6.2f}s {s['wall_vs_local']:8.3f}x {s['cpu_vs_local']:12.3f}x "
              f"{s['cpu_ms_per_step']:12.3f} {s['driver_cpu_ms_per_episode']:13.2f} {s['startup_s']:7.2f}s")
    print(f"per-task cost {per_task:.2f} s")
    return {"runs": rows, "summary": summary, "per_task_s": per_task}


if __name__ == "__main__":
    main()
