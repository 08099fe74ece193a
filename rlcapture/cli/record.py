"""``rlcapture record ENV_ID``: evaluate a policy on N envs for K episodes and record them.

One video per episode in ``DIR/videos/``, one line per episode in the manifest
of ``DIR``, what ran in ``DIR/run.json``, a summary at the end. Episode j
resets with seed ``--seed + j`` whichever env runs it (:func:`rlcapture.evaluate`).
With ``--seeds``, one such run per seed into ``DIR/seed-S/`` and a summary across
them. The flags are here; what they mean for the config is :mod:`.record_args`,
one run (here or on Ray) :mod:`.record_run`.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any, TextIO

from .._backend.run_folder import RunFolder
from ..results.summary import print_seeds, save_json, seeds_json
from .args import DEFAULT_ENV, bounded, encoders, finite
from .record_args import SeedCount, default_out, parse_seeds
from .record_run import record_one

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``record`` to the ``rlcapture`` parser's subparsers."""
    rec = sub.add_parser(
        "record",
        help="evaluate a policy and record one video per episode",
        description="Run K episodes on N parallel envs and record them.",
    )
    _env_arguments(rec)
    _evaluation_arguments(rec)
    _output_arguments(rec)
    _process_arguments(rec)
    _tracker_arguments(rec)
    _ray_arguments(rec)
    rec.set_defaults(run=run)
    return rec


def _env_arguments(rec: argparse.ArgumentParser) -> None:
    rec.add_argument(
        "env_id",
        nargs="?",
        default=DEFAULT_ENV,
        help=f"what gymnasium.make takes: an id (default {DEFAULT_ENV}), ALE/Pong-v5 with "
        "--import ale_py, or module:EnvName-v0",
    )
    rec.add_argument(
        "--env-kwargs",
        metavar="JSON",
        help='keyword arguments of the env, as a JSON object: \'{"continuous": true}\'',
    )
    rec.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (it registers envs, e.g. ale_py for ALE/Pong-v5); repeatable",
    )
    rec.add_argument("--max-episode-steps", type=bounded(int, 1, 10**9, "--max-episode-steps"))


#: Envs of a local ``rlcapture record`` without ``--num-envs``.
DEFAULT_NUM_ENVS = 2


def _evaluation_arguments(rec: argparse.ArgumentParser) -> None:
    rec.add_argument(
        "--num-envs",
        "-n",
        type=bounded(int, 1, 1024, "--num-envs"),
        default=None,
        help="envs run at once (default 2; with --ray: per actor, as many as the cluster's "
        "smallest node has CPUs)",
    )
    rec.add_argument("--episodes", "-k", type=bounded(int, 1, 10**7, "--episodes"), default=10)
    rec.add_argument("--seed", type=bounded(int, 0, 2**63 - 1, "--seed"), default=0)
    rec.add_argument(
        "--seeds",
        type=parse_seeds,
        help="several runs, one per seed, into OUT/seed-S/: a list (0,1000,2000) or a count "
        "(3: seeds 0, K, 2K for K episodes, so the runs share no episode)",
    )
    rec.add_argument(
        "--success-threshold",
        type=finite("--success-threshold"),
        metavar="R",
        help="report the fraction of episodes with return >= R",
    )
    rec.add_argument(
        "--policy", default="random", help="random (default), sb3:ALGO:path.zip or module:callable"
    )
    rec.add_argument(
        "--stochastic", action="store_true", help="SB3 policies: sample actions (default: deterministic)"
    )


def _output_arguments(rec: argparse.ArgumentParser) -> None:
    rec.add_argument("--out", "-o", help="output folder (default runs/ENV_ID)")
    rec.add_argument("--overwrite", action="store_true", help="replace a recording already in --out")
    rec.add_argument("--record", default="all", help="all, none or every:M (default all)")
    rec.add_argument("--fps", type=bounded(float, 0.1, 1000, "--fps"), help="default: the env's render_fps")
    rec.add_argument("--codec", default="libx264", help="FFmpeg encoder (default libx264)")
    rec.add_argument("--crf", type=bounded(int, 0, 63, "--crf"), default=23)
    rec.add_argument("--no-video", action="store_true", help="write no videos (use with --frames/--keyframes)")
    rec.add_argument(
        "--frames",
        type=bounded(int, 1, 10**9, "--frames"),
        metavar="K",
        help="also save every K-th step as PNG in OUT/frames/envE-episodeK/ (1: every frame)",
    )
    rec.add_argument(
        "--keyframes",
        nargs="?",
        const=True,
        type=bounded(int, 1, 10**9, "--keyframes"),
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
    rec.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _process_arguments(rec: argparse.ArgumentParser) -> None:
    rec.add_argument("--envs-per-worker", type=bounded(int, 1, 1024, "--envs-per-worker"), default=1)
    rec.add_argument(
        "--encoders",
        type=encoders,
        default="auto",
        help="encoder processes, or auto (default: from the usable cores and --num-envs); "
        "env i is encoded by encoder i %% K",
    )
    rec.add_argument("--drop", action="store_true", help="drop frames rather than slow the envs")
    rec.add_argument("--step-timeout", type=bounded(float, 0.001, 1e6, "--step-timeout"))
    rec.add_argument(
        "--on-error",
        choices=("raise", "continue"),
        default="raise",
        help="when an env fails: stop (default) or go on without it, noting it in the manifest",
    )


def _tracker_arguments(rec: argparse.ArgumentParser) -> None:
    rec.add_argument(
        "--log",
        dest="loggers",
        action="append",
        metavar="TRACKER",
        help="also send each episode's statistics and video to wandb[:PROJECT], "
        "tensorboard[:DIR] or mlflow[:TRACKING_URI] (repeatable)",
    )
    rec.add_argument(
        "--upload-attempts",
        type=bounded(int, 1, 100, "--upload-attempts"),
        help="tries per upload before it is given up and named (default 3)",
    )
    rec.add_argument(
        "--upload-timeout",
        type=bounded(float, 0.1, 86400, "--upload-timeout"),
        metavar="SECONDS",
        help="how long the end of the run waits for uploads under way (default 60)",
    )


def _ray_arguments(rec: argparse.ArgumentParser) -> None:
    rec.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run the episodes on a Ray cluster: HOST:6379, ray://HOST:10001, or none to join "
        "(or start) a local Ray; --num-envs is then per actor",
    )
    rec.add_argument(
        "--ray-storage",
        choices=("auto", "shared", "stream"),
        default="auto",
        help="with --ray: nodes write into --out (shared), stream files back (stream), or detect (auto)",
    )
    rec.add_argument("--ray-scratch", metavar="DIR", help="with --ray-storage stream: node-local folder")


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``rlcapture record``; returns the exit status.

    With ``--seeds``, one run per seed into ``OUT/seed-S/`` (each its own
    recorder and manifest), a summary per seed, then one across seeds.
    """
    out = args.out or default_out(args.env_id)
    if args.num_envs is None and getattr(args, "ray", None) is None:
        args.num_envs = DEFAULT_NUM_ENVS
    if not args.seeds:
        code, _ = record_one(args, Path(out), args.seed, stdout, stderr)
        return code
    seeds = _spaced_seeds(args, stderr)
    per_seed: dict[int, list[float]] = {}
    code = 0
    start = time.perf_counter()
    # The top folder is locked for the whole run, cleared with --overwrite (an
    # earlier plain recording there included), and says which seeds it holds.
    top = RunFolder(out)
    top.open(args.overwrite, folders=())
    try:
        top.write_seeds_index(seeds)
        for seed in seeds:
            code, returns = record_one(args, top.seed(seed), seed, stdout, stderr)
            per_seed[seed] = returns
            if code:
                break
    finally:
        top.release()
    print_seeds(per_seed, args.success_threshold, stdout)
    save_json(
        top.summary,
        seeds_json(
            per_seed,
            args.success_threshold,
            env_id=args.env_id,
            seeds=list(per_seed),
            elapsed_s=round(time.perf_counter() - start, 3),
            interrupted=code == 130,
        ),
        stderr,
    )
    return code


def _spaced_seeds(args: argparse.Namespace, stderr: TextIO) -> list[int]:
    """The first seed of each run; a note on stderr where two given runs share episodes."""
    seeds = list(args.seeds)
    if isinstance(args.seeds, SeedCount):
        # Run S evaluates seeds S..S+K-1: counted runs start K apart, so no
        # two share an episode (0, K, 2K, ...).
        return [s * args.episodes for s in seeds]
    ordered = sorted(seeds)
    close = [(a, b) for a, b in itertools.pairwise(ordered) if b - a < args.episodes]
    if close:
        a, b = close[0]
        print(
            f"rlcapture: note: the runs of seeds {a} and {b} share episodes (a run with "
            f"seed S evaluates seeds S..S+{args.episodes - 1}); space the seeds at least "
            f"{args.episodes} apart, or give a count (--seeds {len(seeds)})",
            file=stderr,
        )
    return seeds
