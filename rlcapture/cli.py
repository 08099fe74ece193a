"""The ``rlcapture`` command.

``rlcapture record ENV_ID`` evaluates a policy on N envs for K episodes and
records them: one video per episode in ``DIR/videos/``, one line per episode
in ``DIR/episodes.jsonl``, a summary at the end. Errors a user can fix are one
line on stderr and exit status 2; Ctrl-C stops cleanly with status 130.
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ._backend.manifest import read_manifest
from .envs import make_env_fn
from .errors import ConfigError, RLCaptureError
from .stats import summarize
from .triggers import as_schedule
from .vector import CaptureVectorEnv

__all__ = ["main", "load_policy", "allocate_episodes"]

DEFAULT_ENV = "CartPole-v1"


def allocate_episodes(total: int, num_envs: int) -> list[int]:
    """Split ``total`` episodes over envs up front (as SB3's ``evaluate_policy``).

    Fixing each env's share before the run keeps short episodes from being
    over-represented, which happens when the first K episodes to finish are kept.
    """
    return [(total + i) // num_envs for i in range(num_envs)]


class RandomPolicy:
    """Samples the action space; seeded, so the same seed gives the same run."""

    def __init__(self, action_space: Any, seed: int | None) -> None:
        self.space = action_space
        self.space.seed(seed)

    def __call__(self, obs: Any) -> Any:
        return self.space.sample()


def load_policy(spec: str, envs: CaptureVectorEnv, seed: int | None) -> Callable[[Any], Any]:
    """Make the policy named on the command line.

    Args:
        spec: "random", or "module:callable" naming a function (or object) that
            maps a batch of observations to a batch of actions.
    """
    if spec == "random":
        return RandomPolicy(envs.action_space, seed)
    if ":" not in spec:
        raise ConfigError(f"unknown policy {spec!r}: use 'random' or 'module:callable'")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import policy module {module_name!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"module {module_name!r} has no {attr!r}")
    if not callable(obj):
        raise ConfigError(f"policy {spec!r} is not callable")
    return obj


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
    rec.add_argument("--record", default="all", help="all, none or every:M (default all)")
    rec.add_argument("--max-episode-steps", type=_positive(int, 1, 10**9, "--max-episode-steps"))
    rec.add_argument("--policy", default="random", help="random (default) or module:callable")
    rec.add_argument("--fps", type=_positive(float, 0.1, 1000, "--fps"), help="default: the env's render_fps")
    rec.add_argument("--codec", default="libx264", help="FFmpeg encoder (default libx264)")
    rec.add_argument("--crf", type=_positive(int, 0, 63, "--crf"), default=23)
    rec.add_argument("--envs-per-worker", type=_positive(int, 1, 1024, "--envs-per-worker"), default=1)
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
    return parser


def _default_out(env_id: str) -> str:
    return str(Path("runs") / re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id).strip("._") or "env")


def record(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``rlcapture record``; returns the exit status."""
    out = args.out or _default_out(args.env_id)
    schedule = as_schedule(args.record)
    env_fn = make_env_fn(args.env_id, max_episode_steps=args.max_episode_steps)
    quotas = allocate_episodes(args.episodes, args.num_envs)
    start = time.perf_counter()
    envs = CaptureVectorEnv(
        [env_fn] * args.num_envs,
        out,
        record=schedule,
        episodes_per_env=quotas,
        envs_per_worker=args.envs_per_worker,
        step_timeout=args.step_timeout,
        fps=args.fps,
        codec=args.codec,
        crf=args.crf,
        drop=args.drop,
        overwrite=args.overwrite,
        on_error=args.on_error,
    )
    interrupted = False
    steps = 0
    try:
        policy = load_policy(args.policy, envs, args.seed)
        progress = None if args.quiet else _Progress(args.episodes, stderr)
        done = np.zeros(args.num_envs, dtype=np.int64)
        target = np.asarray(quotas)
        obs, _ = envs.reset(seed=args.seed)
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
    _report(Path(out), args.env_id, args.num_envs, elapsed, interrupted, stdout)
    for env, message in sorted(envs.errors.items()):
        print(f"  failed   env {env}: {message} (the run went on without it)", file=stdout)
    return 130 if interrupted else 0


def _report(out: Path, env_id: str, num_envs: int, elapsed: float, interrupted: bool, stdout: TextIO) -> None:
    try:
        lines = read_manifest(out / "episodes.jsonl")
    except FileNotFoundError:
        lines = []
    finished = [r for r in lines if r.get("end") in ("terminated", "truncated")]
    returns = summarize([float(r["return"]) for r in finished])
    lengths = [int(r["length"]) for r in finished]
    frames = sum(int(r.get("frames") or 0) for r in lines)
    dropped = sum(int(r.get("dropped") or 0) for r in lines)
    videos = sum(1 for r in lines if r.get("video"))
    head = "interrupted: kept" if interrupted else "recorded"
    print(f"{env_id}: {head} {len(finished)} episodes over {num_envs} envs in {elapsed:.1f} s", file=stdout)
    print(f"  return   {returns}", file=stdout)
    if lengths:
        print(f"  length   {sum(lengths) / len(lengths):.1f} mean", file=stdout)
    print(
        f"  frames   {frames} recorded, {dropped} dropped, {frames / max(elapsed, 1e-9):.0f} frames/s",
        file=stdout,
    )
    print(f"  output   {out}/videos ({videos} videos), {out}/episodes.jsonl", file=stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlcapture`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "record":
            return record(args, sys.stdout, sys.stderr)
    except RLCaptureError as exc:
        print(f"rlcapture: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlcapture: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
