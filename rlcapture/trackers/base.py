"""What every tracker adapter logs of an episode; the interface and the registry are in the core.

:class:`RunInfo`, :class:`Tracker` and :func:`open_tracker` live in
:mod:`rlcapture._backend.uploads` (the uploader loop drives adapters through
them and finds each by name in its registry); they are re-exported here for
the adapters and for users who write their own.
"""

from __future__ import annotations

from typing import Any

from .._backend.uploads import RunInfo, Tracker, open_tracker

__all__ = ["RunInfo", "Tracker", "episode_metrics", "open_tracker"]


def episode_metrics(record: dict[str, Any]) -> dict[str, int | float]:
    """The numbers of an episode's manifest line every tracker logs.

    Its return and length, and its seed, env and episode index, so that a
    point of a curve leads back to the episode (and its replay). Integers
    stay integers where the tracker keeps them (a 32-bit seed is exact).
    """
    out: dict[str, int | float] = {}
    for field in ("return", "length", "seed", "env", "episode"):
        value = record.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[field] = value
    return out


def caption(record: dict[str, Any]) -> str:
    """``env 0 episode 3 seed 7: return 21 in 21 steps (terminated)``."""
    ret = record.get("return")
    value = f"return {ret:g}" if isinstance(ret, (int, float)) else "no return"
    return (
        f"env {record.get('env')} episode {record.get('episode')} seed {record.get('seed')}: "
        f"{value} in {record.get('length')} steps ({record.get('end')})"
    )
