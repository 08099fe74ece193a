"""``rlcapture report RUN_DIR...``: a static HTML page of one or more recordings."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from .args import finite

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``report`` to the ``rlcapture`` parser's subparsers."""
    report = sub.add_parser(
        "report",
        help="write a static HTML page of one or more recordings",
        description="Write DIR/report.html: summary, learning curve, every episode, every video, "
        "and for several runs a comparison on the seeds they share.",
    )
    report.add_argument(
        "runs", nargs="+", metavar="RUN_DIR",
        help="recording folders (or --seeds folders, or a RecordCallback's folder of step-T/ rounds)",
    )  # fmt: skip
    report.add_argument("--out", "-o", help="folder for report.html (default: RUN_DIR for one run)")
    report.add_argument(
        "--success-threshold", type=finite("--success-threshold"), metavar="R",
        help="success: return >= R (default: the one recorded)",
    )  # fmt: skip
    report.set_defaults(run=run)
    return report


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``rlcapture report``: write the page, then name it."""
    from ..results.report import write_report

    page = write_report(args.runs, args.out, threshold=args.success_threshold, warn=stderr)
    print(f"wrote {page}", file=stdout)
    return 0
