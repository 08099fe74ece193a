"""One run of ``rlcapture record``, on this machine or (``--ray``) on a Ray cluster, summarized.

Both print the same summary and write the same ``summary.json``; the progress
bar is drawn from the first step on, so an error before it is one line alone.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .._backend.manifest import MANIFEST
from .._backend.run_folder import RunFolder
from ..evaluate import evaluate
from ..policies import allocate_episodes
from ..results.progress import RunProgress
from ..results.summary import print_run, save_json, stats_dict, summarize_run
from ..triggers import as_schedule
from .record_args import evaluation_options
from .run_log import logged_to_folder

__all__ = ["record_one"]


def record_one(
    args: argparse.Namespace, out: Path, seed: int, stdout: TextIO, stderr: TextIO
) -> tuple[int, list[float]]:
    """One evaluation: episode j resets with seed ``seed + j`` (j < --episodes), on any env.

    Returns the exit status and the finished episodes' returns.
    """
    schedule = as_schedule(args.record, envs=args.num_envs or 1)
    if getattr(args, "ray", None) is not None:
        return _record_on_ray(args, out, seed, schedule, stdout, stderr)
    start = time.perf_counter()
    bars: list[RunProgress] = []
    seen = [0, 0]  # env steps, episodes ended

    def tick(done: int, total: int, steps: int, lengths: Sequence[int]) -> None:
        if not bars:
            bars.append(_progress(args, seed, stderr))
        for length in lengths:
            bars[0].episode_ended(length)
        seen[:] = [steps, done]
        bars[0].update(steps, done)

    try:
        with logged_to_folder(out):
            result = _evaluate(args, out, seed, schedule, tick)
    except BaseException:
        if bars:
            bars[0].__exit__(None, None, None)
        raise
    if bars:
        bars[0].close(*seen)
    elapsed = time.perf_counter() - start
    summary = summarize_run(out, args.success_threshold)
    print_run(summary, _label(args, seed), args.num_envs, elapsed, result.interrupted, stdout)
    for env, message in sorted(result.errors.items()):
        print(f"  failed   env {env}: {message} (the run went on without it)", file=stdout)
    _save_summary(
        args, out, seed, summary, elapsed, result.interrupted, stderr,
        failed_envs={str(env): message for env, message in sorted(result.errors.items())},
    )  # fmt: skip
    _report_uploads(result.recording, stdout)
    return (130 if result.interrupted else 0), summary.returns


def _progress(args: argparse.Namespace, seed: int, stderr: TextIO) -> RunProgress:
    envs = args.num_envs or 1  # --ray without --num-envs: sized on the cluster, unknown here
    longest = max(allocate_episodes(args.episodes, min(envs, args.episodes)))
    label = f"seed {seed}" if args.seeds else ""
    return RunProgress(args.episodes, envs, longest, stderr, enabled=not args.quiet, label=label)


def _label(args: argparse.Namespace, seed: int) -> str:
    return args.env_id if not args.seeds else f"{args.env_id} seed {seed}"


def _save_summary(
    args: argparse.Namespace,
    out: Path,
    seed: int,
    summary: Any,
    elapsed: float,
    interrupted: bool,
    stderr: TextIO,
    **extra: Any,
) -> None:
    """Write ``OUT/summary.json`` for one recording (local or on Ray), if it left a folder."""
    if summary.records or out.is_dir():
        save_json(
            RunFolder(out).summary,
            summary.to_json(
                env_id=args.env_id,
                seed=seed,
                num_envs=args.num_envs,
                policy=args.policy,
                elapsed_s=round(elapsed, 3),
                interrupted=interrupted,
                per_seed={str(seed): stats_dict(summary.description)},
                **extra,
            ),
            stderr,
        )


def _evaluate(
    args: argparse.Namespace, out: Path, seed: int, schedule: Any, tick: Callable[..., None]
) -> Any:
    """``rlcapture.evaluate`` with the arguments of ``rlcapture record``."""
    return evaluate(
        args.env_id,
        None if args.policy == "random" else args.policy,
        **evaluation_options(args, out, seed, schedule),
        progress=tick,
        run_info={"command": "record", "seed": seed, "episodes": args.episodes},
    )


def _record_on_ray(
    args: argparse.Namespace, out: Path, seed: int, schedule: Any, stdout: TextIO, stderr: TextIO
) -> tuple[int, list[float]]:
    """``--ray``: the same evaluation, its seeds run by actors over a Ray cluster, one manifest."""
    from ..cluster import RayEvaluation

    # The bar starts with the first progress, once the cluster took the run: a
    # refusal on joining (an actor no node can hold) is then the only line.
    bars: list[RunProgress] = []
    seen = [0, 0]  # env steps, episodes settled

    def tick(done: int, steps: int) -> None:
        seen[:] = [steps, done]
        if not bars:
            bars.append(_progress(args, seed, stderr))
        bars[0].update(steps, done)

    run = RayEvaluation(
        args.env_id,
        None if args.policy == "random" else args.policy,
        **evaluation_options(args, out, seed, schedule),
        address=args.ray,
        storage=args.ray_storage,
        scratch=args.ray_scratch,
        progress=tick,
    )
    try:
        result = run.run()
    except KeyboardInterrupt:
        result = run.result
    except BaseException:
        for bar in bars:
            bar.__exit__(None, None, None)
        raise
    for bar in bars:
        bar.close(*seen)
    summary = summarize_run(out, args.success_threshold)
    print_run(summary, _label(args, seed), run.num_envs, result.elapsed, result.interrupted, stdout)
    print(
        f"  ray      {len(result.nodes)} nodes, {result.actors} actors, {result.tasks} tasks, "
        f"first task after {result.startup:.1f} s",
        file=stdout,
    )
    print(f"  storage  {result.describe_storage()}", file=stdout)
    for event in result.events:
        print(f"  event    {event}", file=stdout)
    _save_summary(
        args, out, seed, summary, result.elapsed, result.interrupted, stderr,
        ray={"nodes": len(result.nodes), "actors": result.actors, "tasks": result.tasks},
    )  # fmt: skip
    return (130 if result.interrupted else 0), summary.returns


def _report_uploads(summary: dict[str, Any], stdout: TextIO) -> None:
    """One line per tracker: what it took, or what it missed and why."""
    for spec, counts in summary.get("uploads", {}).items():
        if not counts["not_sent"]:
            print(f"  tracker  {spec}: {counts['sent']} uploads sent", file=stdout)
    for line in summary.get("not_uploaded", ()):
        print(f"  NOT SENT {line} (see not_uploaded in {MANIFEST})", file=stdout)
