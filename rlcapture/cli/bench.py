"""``rlcapture bench ENV_ID``: what recording costs on an env, side by side (:mod:`rlcapture.bench`)."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from .args import DEFAULT_ENV, bounded, encoders

__all__ = ["add_parser", "run"]

DEFAULT_NUM_ENVS = (1, 2, 4)
DEFAULT_FRAMES = 2000
DEFAULT_REPEATS = 3
DEFAULT_EVERY = 20


def _cores(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--max-other-load must be a number, got {text!r}"
        ) from None
    if not (0 < value <= 1024):
        raise argparse.ArgumentTypeError(f"--max-other-load must be above 0, got {text}")
    return value


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the ``rlcapture`` parser's subparsers."""
    p = sub.add_parser(
        "bench",
        help="measure what recording costs on an env",
        description=(
            "Run an env without rendering, rendering without encoding, recording every "
            "frame, recording 1 episode in M, and Gymnasium's (and SB3's) recorders, side "
            "by side; report steps/s, overhead, per-frame CPU costs, memory and the "
            "machine ceiling as a table, a JSON file and a PNG chart."
        ),
    )
    p.add_argument(
        "env_id", nargs="?", default=DEFAULT_ENV,
        help=f"Gymnasium env id, or module:factory returning an env with render_mode='rgb_array' "
        f"(default {DEFAULT_ENV})",
    )  # fmt: skip
    p.add_argument(
        "--num-envs", "-n", type=bounded(int, 1, 1024, "--num-envs"), nargs="+",
        default=list(DEFAULT_NUM_ENVS), metavar="N",
        help="one or more env counts (default 1 2 4)",
    )  # fmt: skip
    p.add_argument(
        "--policy", default="random",
        help="random (default), sb3:ALGO:path.zip or module:callable",
    )  # fmt: skip
    p.add_argument(
        "--frames", "-f", type=bounded(int, 1, 10**8, "--frames"), default=DEFAULT_FRAMES,
        help=f"env-steps per run, over all envs (default {DEFAULT_FRAMES})",
    )  # fmt: skip
    p.add_argument(
        "--repeats", "-r", type=bounded(int, 1, 100, "--repeats"), default=DEFAULT_REPEATS,
        help=f"runs per variant and N, alternating (default {DEFAULT_REPEATS})",
    )  # fmt: skip
    p.add_argument(
        "--every-episode", "-m", type=bounded(int, 1, 10**6, "--every-episode"),
        default=DEFAULT_EVERY, metavar="M",
        help=f"the sparse variant records 1 episode in M (default {DEFAULT_EVERY})",
    )  # fmt: skip
    p.add_argument(
        "--variants",
        help="comma-separated subset of none,render,all,every,record,gym-vec,gym-worker,sb3 "
        "(default: all that are installed, but record)",
    )
    p.add_argument(
        "--encoders", "-e", type=encoders, nargs="+", default=["auto"],
        metavar="K",
        help="encoder processes of the rlcapture recording variants, or auto (the "
        "default rule); several values run each of those variants once per K, side by side "
        "(default auto)",
    )  # fmt: skip
    p.add_argument("--seed", type=bounded(int, 0, 2**31 - 1, "--seed"), default=0)
    p.add_argument("--json", help="where to write the results (default bench-ENV.json)")
    p.add_argument("--png", help="where to draw the chart (default: the JSON path, .png)")
    p.add_argument(
        "--timeout", type=bounded(int, 1, 86400, "--timeout"), default=600,
        help="seconds one run may take (default 600)",
    )  # fmt: skip
    p.add_argument(
        "--max-other-load", type=_cores, metavar="CORES",
        help="on a shared machine: before each run wait (up to 5 min) until other programs "
        "use fewer than CORES cores, and redo a run they disturbed more (up to twice)",
    )  # fmt: skip
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``rlcapture bench`` (:func:`rlcapture.bench.bench`)."""
    from ..bench import bench

    return bench(args, stdout, stderr)
