"""``rlcapture plot DIR``: the return per episode of a recording, drawn into a PNG or SVG."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from .._backend.manifest import MANIFEST
from .args import bounded

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``plot`` to the ``rlcapture`` parser's subparsers."""
    plot = sub.add_parser(
        "plot",
        help="draw the return per episode of a recording into DIR/learning_curve.png",
        description="Draw every finished episode's return and a moving average, per seed (matplotlib).",
    )
    plot.add_argument(
        "dir",
        help=f"a recording's folder (holding {MANIFEST}, seed-S/ folders, or a RecordCallback's "
        "step-T/ rounds, drawn against the training timestep)",
    )
    plot.add_argument(
        "--x", choices=("steps", "episode", "time"), default="steps", help="x axis: env steps (default), episode or time"
    )
    plot.add_argument(
        "--window", type=bounded(int, 1, 10**7, "--window"), help="moving-average window (default: a tenth of the episodes)"
    )
    plot.add_argument("--output", help="PNG or SVG path, by its suffix (default DIR/learning_curve.png)")
    plot.add_argument("--format", choices=("png", "svg", "both"), help="png, svg or both (default: by --output's suffix, else png)")
    plot.set_defaults(run=run)
    return plot


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``rlcapture plot``: draw, then name what was written."""
    from ..results.plot import plot_manifest

    first = plot_manifest(args.dir, path=args.output, x=args.x, window=args.window, formats=args.format)
    written = [first] + ([first.with_suffix(".svg")] if args.format == "both" else [])
    print(f"wrote {' and '.join(map(str, written))}", file=stdout)
    return 0
