"""The ``rlcapture`` command: one module per subcommand, each with ``add_parser`` and ``run``.

``record`` (:mod:`.record`), ``replay``, ``plot``, ``report`` and ``bench``.
Errors a user can fix are one line on stderr and exit status 2; Ctrl-C stops
cleanly with status 130.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .._backend.run_folder import KeptFilesWarning
from ..errors import RLCaptureError
from . import bench, plot, record, replay, report

__all__ = ["build_parser", "main"]

#: The subcommands, in the order ``rlcapture --help`` lists them.
COMMANDS = (record, replay, plot, report, bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``rlcapture`` parser: each command adds itself and sets ``run``."""
    parser = argparse.ArgumentParser(
        prog="rlcapture", description="Record what reinforcement-learning agents do."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlcapture`` command."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _warning_lines(warnings.showwarning)
        warnings.simplefilter("always", KeptFilesWarning)
        return _run(args)


def _warning_lines(show: Callable[..., None]) -> Callable[..., None]:
    """``show``, except that what rlcapture warns the user of is one ``rlcapture: warning:`` line."""

    def show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, KeptFilesWarning):
            print(f"rlcapture: warning: {message}", file=sys.stderr)
        else:
            show(message, category, *args, **kwargs)

    return show_warning


def _run(args: argparse.Namespace) -> int:
    try:
        return args.run(args, sys.stdout, sys.stderr)
    except RLCaptureError as exc:
        message = " ".join(str(exc).split("\n"))  # one line, whatever the message holds
        print(f"rlcapture: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlcapture: interrupted", file=sys.stderr)
        return 130
