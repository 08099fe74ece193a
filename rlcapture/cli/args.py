"""Argument values shared by the commands: bounded numbers, the encoder count, the default env.

argparse shows an :class:`argparse.ArgumentTypeError`'s text as it is, so each
parser here says which flag was wrong and what it takes.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from ..config import MAX_ENCODERS

__all__ = ["DEFAULT_ENV", "bounded", "encoders", "finite"]

#: The env of ``rlcapture record`` and ``rlcapture bench`` when none is named.
DEFAULT_ENV = "CartPole-v1"


def bounded(kind: type, low: float, high: float, what: str) -> Callable[[str], Any]:
    """A parser of ``kind`` (int or float) values from ``low`` to ``high``, for the flag ``what``."""
    number = "an integer" if kind is int else "a number"
    span = f"{low} to {high}" if kind is int else f"{low:g} to {high:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be {number}, got {text!r}") from None
        if not (low <= value <= high) or (isinstance(value, float) and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{what} must be from {span}, got {text}")
        return value

    return parse


def finite(what: str) -> Callable[[str], float]:
    """A parser of any finite float, for the flag ``what``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{what} must be finite, got {text}")
        return value

    return parse


def encoders(text: str) -> int | str:
    """``--encoders``: ``auto`` or a count up to the recorder's :data:`~rlcapture.config.MAX_ENCODERS`."""
    if text.strip().lower() == "auto":
        return "auto"
    return bounded(int, 1, MAX_ENCODERS, "--encoders")(text)
