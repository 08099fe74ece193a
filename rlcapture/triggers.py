"""Which episodes are recorded, decided before an episode's first frame is rendered.

A schedule is called as ``schedule(env_index, episode_index) -> bool`` in the
process that runs the env, at reset time. Episodes it turns down cost no render.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import ConfigError

__all__ = ["Schedule", "RecordAll", "RecordNone", "RecordEvery", "as_schedule"]

Schedule = Callable[[int, int], bool]
ScheduleSpec = str | int | bool | None | Schedule


class RecordAll:
    """Record every episode."""

    def __call__(self, env: int, episode: int) -> bool:
        return True

    def __repr__(self) -> str:
        return "all"


class RecordNone:
    """Record no episode (statistics and the manifest are still written)."""

    def __call__(self, env: int, episode: int) -> bool:
        return False

    def __repr__(self) -> str:
        return "none"


class RecordEvery:
    """Record episodes 0, n, 2n, ... of each env."""

    def __init__(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"record every n episodes needs a positive integer n, got {n!r}")
        self.n = n

    def __call__(self, env: int, episode: int) -> bool:
        return episode % self.n == 0

    def __repr__(self) -> str:
        return f"every:{self.n}"


def as_schedule(spec: ScheduleSpec) -> Schedule:
    """Turn ``"all"``, ``"none"``, ``"every:N"``, an int N, a bool or a callable into a schedule.

    Raises:
        ConfigError: For anything else, listing what is accepted.
    """
    if spec is None or spec is True or spec == "all":
        return RecordAll()
    if spec is False or spec == "none":
        return RecordNone()
    if isinstance(spec, int):
        return RecordEvery(spec)
    if isinstance(spec, str) and spec.startswith("every:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            n = -1
        if n < 1:
            raise ConfigError(
                f"bad record schedule {spec!r}: write every:N with N a positive integer"
            )
        return RecordEvery(n)
    if callable(spec):
        return spec
    raise ConfigError(
        f"bad record schedule {spec!r}: use 'all', 'none', 'every:N' or a callable (env, episode) -> bool"
    )
