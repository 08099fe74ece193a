"""The ``rlcapture`` command.

``rlcapture record ENV_ID`` evaluates a policy on N envs for K episodes and
records them: one video per episode in ``DIR/videos/``, one line per episode
in ``DIR/episodes.jsonl``, a summary at the end. Errors a user can fix are one
line on stderr and exit status 2; Ctrl-C stops cleanly with status 130.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ._backend.episode import FINISHED
from ._backend.manifest import read_manifest
from .config import RecordConfig
from .envs import make_env_fn
from .errors import RLCaptureError
from .policies import allocate_episodes, load_policy
from .stats import describe, summarize
from .triggers import as_schedule
from .vector import CaptureVectorEnv

__all__ = ["allocate_episodes", "load_policy", "main", "parse_seeds", "record_config"]

DEFAULT_ENV = "CartPole-v1"


class _Progress:
    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0
        self.start = time.perf_counter()

    def update(self, done: int, frames: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < (0.1 if self.tty else 5.0):
            return
        self.last = now
        width = 30
        filled = int(width * done / max(1, self.total))
        rate = frames / max(1e-9, now - self.start)
        line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} episodes, {rate:.0f} steps/s"
        if self.tty:
            self.stream.write("\r" + line)
            if force:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _encoders_arg(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    return _positive(int, 1, 64, "--encoders")(text)


def _positive(kind: type, low: float, high: float, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not (low <= value <= high) or (isinstance(value, float) and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{what} must be from {low:g} to {high:g}, got {text}")
        return value

    return parse


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: "0,1,2" (a list; "5," is the one seed 5) or "3" (a count: 0, 1, 2)."""
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        else:
            count = int(text)
            if not 1 <= count <= 10_000:
                raise argparse.ArgumentTypeError(f"--seeds count must be from 1 to 10000, got {text}")
            seeds = list(range(count))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds must be a count (3) or a list (0,1,2), got {text!r}"
        ) from None
    if not seeds or any(not 0 <= s < 2**63 for s in seeds):
        raise argparse.ArgumentTypeError(f"--seeds must hold seeds from 0 to 2**63-1, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds repeats a seed: {text!r}")
    return seeds


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--success-threshold must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"--success-threshold must be finite, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlcapture", description="Record what reinforcement-learning agents do."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser(
        "record",
        help="evaluate a policy and record one video per episode",
        description="Run K episodes on N parallel envs and record them.",
    )
    rec.add_argument("env_id", nargs="?", default=DEFAULT_ENV, help=f"Gymnasium env id (default {DEFAULT_ENV})")
    rec.add_argument("--num-envs", "-n", type=_positive(int, 1, 1024, "--num-envs"), default=2)
    rec.add_argument("--episodes", "-k", type=_positive(int, 1, 10**7, "--episodes"), default=10)
    rec.add_argument("--out", "-o", help="output folder (default runs/ENV_ID)")
    rec.add_argument("--seed", type=_positive(int, 0, 2**63 - 1, "--seed"), default=0)
    rec.add_argument(
        "--seeds",
        type=parse_seeds,
        help="several runs, one per seed, into OUT/seed-S/: a list (0,1,2) or a count (3: seeds 0..2)",
    )
    rec.add_argument(
        "--success-threshold",
        type=_finite,
        metavar="R",
        help="report the fraction of episodes with return >= R",
    )
    rec.add_argument("--record", default="all", help="all, none or every:M (default all)")
    rec.add_argument("--max-episode-steps", type=_positive(int, 1, 10**9, "--max-episode-steps"))
    rec.add_argument(
        "--policy", default="random", help="random (default), sb3:ALGO:path.zip or module:callable"
    )
    rec.add_argument(
        "--stochastic", action="store_true", help="SB3 policies: sample actions (default: deterministic)"
    )
    rec.add_argument("--fps", type=_positive(float, 0.1, 1000, "--fps"), help="default: the env's render_fps")
    rec.add_argument("--codec", default="libx264", help="FFmpeg encoder (default libx264)")
    rec.add_argument("--crf", type=_positive(int, 0, 63, "--crf"), default=23)
    rec.add_argument("--no-video", action="store_true", help="write no videos (use with --frames/--keyframes)")
    rec.add_argument(
        "--frames",
        type=_positive(int, 1, 10**9, "--frames"),
        metavar="K",
        help="also save every K-th step as PNG in OUT/frames/envE-episodeK/ (1: every frame)",
    )
    rec.add_argument(
        "--keyframes",
        nargs="?",
        const=True,
        type=_positive(int, 1, 10**9, "--keyframes"),
        metavar="K",
        help="save the first and last frame of each episode as PNG next to its video "
        "(and every K-th step if K is given)",
    )
    rec.add_argument(
        "--keep",
        default="all",
        metavar="RULES",
        help="which episodes keep their files: all (default), worst:K, best:K, failures, "
        "failures:R (return below R), sample:K or sample:P; combine with commas",
    )
    rec.add_argument("--mosaic", action="store_true", help="also write OUT/mosaic.mp4 with every env side by side")
    rec.add_argument("--envs-per-worker", type=_positive(int, 1, 1024, "--envs-per-worker"), default=1)
    rec.add_argument(
        "--encoders",
        type=_encoders_arg,
        default="auto",
        help="encoder processes, or auto (default: from the usable cores and --num-envs); "
        "env i is encoded by encoder i %% K",
    )
    rec.add_argument("--drop", action="store_true", help="drop frames rather than slow the envs")
    rec.add_argument("--step-timeout", type=_positive(float, 0.001, 1e6, "--step-timeout"))
    rec.add_argument(
        "--on-error",
        choices=("raise", "continue"),
        default="raise",
        help="when an env fails: stop (default) or go on without it, noting it in the manifest",
    )
    rec.add_argument("--overwrite", action="store_true", help="replace a recording already in --out")
    rec.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    plot = sub.add_parser(
        "plot",
        help="draw the return per episode of a recording into DIR/learning_curve.png",
        description="Draw every finished episode's return and a moving average (Pillow only).",
    )
    plot.add_argument("dir", help="a recording's folder (holding episodes.jsonl)")
    plot.add_argument("--x", choices=("episode", "time"), default="episode", help="x axis (default episode)")
    plot.add_argument("--window", type=_positive(int, 1, 10**7, "--window"), help="moving-average window")
    plot.add_argument("--output", help="PNG path (default DIR/learning_curve.png)")
    from .bench import add_parser as add_bench_parser

    add_bench_parser(sub)
    return parser


def _default_out(env_id: str) -> str:
    return str(Path("runs") / re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id).strip("._") or "env")


def record(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``rlcapture record``; returns the exit status.

    With ``--seeds``, one run per seed into ``OUT/seed-S/`` (each its own
    recorder and manifest), a summary per seed, then one across seeds.
    """
    out = args.out or _default_out(args.env_id)
    if not args.seeds:
        code, returns = _record_one(args, Path(out), args.seed, stdout, stderr)
        return code
    per_seed: dict[int, list[float]] = {}
    code = 0
    for seed in args.seeds:
        code, returns = _record_one(args, Path(out) / f"seed-{seed}", seed, stdout, stderr)
        per_seed[seed] = returns
        if code:
            break
    _report_seeds(per_seed, args.success_threshold, stdout)
    return code


def _report_seeds(per_seed: dict[int, list[float]], threshold: float | None, stdout: TextIO) -> None:
    print(f"across {len(per_seed)} seeds ({', '.join(map(str, per_seed))}):", file=stdout)
    for seed, returns in per_seed.items():
        print(f"  seed {seed:<4} {len(returns)} episodes: {describe([returns], threshold=threshold)}", file=stdout)
    groups = list(per_seed.values())
    total = sum(len(g) for g in groups)
    print(f"  all       {total} episodes: {describe(groups, threshold=threshold)}", file=stdout)
    means = [float(np.mean(g)) for g in groups if g]
    if len(means) > 1:
        print(
            f"  per-seed means {', '.join(f'{m:.2f}' for m in means)}: std {np.std(means, ddof=1):.2f}",
            file=stdout,
        )


def record_config(args: argparse.Namespace, **overrides: Any) -> RecordConfig:
    """The :class:`RecordConfig` that ``rlcapture record``'s arguments ask for.

    An argument whose destination is named like a config option (``--codec``,
    ``--drop``, ``--keep``, ...) is that option, so a new option needs only
    its flag here; the few named otherwise are mapped below. Arguments left
    unset (None) keep the config's defaults; ``overrides`` win over all.
    ``--mosaic`` stays True (a tile per env), which the vector env resolves.
    """
    options = {
        name: getattr(args, name)
        for name in RecordConfig.option_names()
        if getattr(args, name, None) is not None
    }
    options["videos"] = not getattr(args, "no_video", False)
    options.update(overrides)
    return RecordConfig.from_options(**options)


def _record_one(
    args: argparse.Namespace, out: Path, seed: int, stdout: TextIO, stderr: TextIO
) -> tuple[int, list[float]]:
    """One recording with one seed; returns the exit status and the finished episodes' returns."""
    schedule = as_schedule(args.record)
    env_fn = make_env_fn(args.env_id, max_episode_steps=args.max_episode_steps)
    quotas = allocate_episodes(args.episodes, args.num_envs)
    start = time.perf_counter()
    envs = CaptureVectorEnv(
        [env_fn] * args.num_envs,
        out,
        config=record_config(args, keep_seed=seed),
        record=schedule,
        episodes_per_env=quotas,
        envs_per_worker=args.envs_per_worker,
        step_timeout=args.step_timeout,
        overwrite=args.overwrite,
        on_error=args.on_error,
    )
    interrupted = False
    steps = 0
    try:
        policy = load_policy(args.policy, envs, seed, deterministic=not args.stochastic)
        progress = None if args.quiet else _Progress(args.episodes, stderr)
        done = np.zeros(args.num_envs, dtype=np.int64)
        target = np.asarray(quotas)
        obs, _ = envs.reset(seed=seed)
        while ((done < target) & ~envs.failed).any():
            obs, _r, _te, _tr, info = envs.step(policy(obs))
            steps += args.num_envs
            if "_episode" in info:
                done += info["_episode"] & (done < target)
            if progress:
                progress.update(int(done.sum()), steps)
        if progress:
            progress.update(int(done.sum()), steps, force=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        envs.close()
    elapsed = time.perf_counter() - start
    label = args.env_id if not args.seeds else f"{args.env_id} seed {seed}"
    returns = _report(out, label, args.num_envs, elapsed, interrupted, stdout, args.success_threshold)
    for env, message in sorted(envs.errors.items()):
        print(f"  failed   env {env}: {message} (the run went on without it)", file=stdout)
    return (130 if interrupted else 0), returns


def _report(
    out: Path,
    env_id: str,
    num_envs: int,
    elapsed: float,
    interrupted: bool,
    stdout: TextIO,
    threshold: float | None = None,
) -> list[float]:
    try:
        lines = read_manifest(out / "episodes.jsonl")
    except FileNotFoundError:
        lines = []
    finished = [r for r in lines if r.get("end") in FINISHED]
    returns = summarize([float(r["return"]) for r in finished])
    lengths = [int(r["length"]) for r in finished]
    frames = sum(int(r.get("frames") or 0) for r in lines)
    dropped = sum(int(r.get("dropped") or 0) for r in lines)
    videos = sum(1 for r in lines if r.get("video"))
    judged = [r for r in lines if "kept" in r]
    head = "interrupted: kept" if interrupted else "recorded"
    print(f"{env_id}: {head} {len(finished)} episodes over {num_envs} envs in {elapsed:.1f} s", file=stdout)
    print(f"  return   {returns}", file=stdout)
    values = [float(r["return"]) for r in finished]
    if values:
        print(f"  stats    {describe([values], threshold=threshold)}", file=stdout)
    if lengths:
        print(f"  length   {sum(lengths) / len(lengths):.1f} mean", file=stdout)
    print(
        f"  frames   {frames} recorded, {dropped} dropped, {frames / max(elapsed, 1e-9):.0f} frames/s",
        file=stdout,
    )
    if judged:
        kept = [r for r in judged if r["kept"]]
        print(f"  kept     {len(kept)} of {len(judged)} episodes' files:", file=stdout)
        for r in kept:
            ret = r.get("return")
            value = f"return {ret:g}" if isinstance(ret, (int, float)) else "no return"
            print(f"           env {r['env']} episode {r['episode']} ({value}): {r['why']}", file=stdout)
    images = sum(int(r.get("image_count") or 0) for r in lines if r.get("images"))
    keyframes = sum(len(r.get("keyframes") or ()) for r in lines)
    print(f"  output   {out}/videos ({videos} videos), {out}/episodes.jsonl", file=stdout)
    if images:
        print(f"           {images} PNG frames in {out}/frames", file=stdout)
    if keyframes:
        print(f"           {keyframes} PNG keyframes in {out}/videos", file=stdout)
    mosaics = sorted(out.glob("*mosaic*.mp4"))
    if mosaics:
        print(f"           overview {mosaics[-1]}", file=stdout)
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlcapture`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "record":
            return record(args, sys.stdout, sys.stderr)
        if args.command == "plot":
            from .plot import plot_manifest

            png = plot_manifest(args.dir, path=args.output, x=args.x, window=args.window)
            print(f"wrote {png}", file=sys.stdout)
            return 0
        if args.command == "bench":
            from .bench import bench

            return bench(args, sys.stdout, sys.stderr)
    except RLCaptureError as exc:
        print(f"rlcapture: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlcapture: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
