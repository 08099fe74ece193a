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
    """Record 1 episode in n of each env, the envs taking turns.

    Env ``i`` records its episodes ``o, o + n, o + 2n, ...`` with
    ``o = (i mod envs) * n // envs``. With ``envs`` envs stepping side by
    side, about ``envs / n`` of them record at any moment, instead of all of
    them at once (every env's episode 0, then every env's episode n, ...), so
    the rendering and encoding is spread over the run instead of arriving in
    bursts of ``envs`` episodes. On 2 cores with 4 CartPole envs and a 5 ms
    policy the two did not differ beyond the run-to-run spread (1 in 20 slowed
    the steps by 1.4-2.2 % taking turns, 1.8-2.6 % in bursts;
    benchmarks/RESULTS.md, "Second pass on a quiet machine"). Env 0 records
    its episode 0; with ``envs=1`` every env records episodes 0, n, 2n, ...

    Args:
        n: One episode in n is recorded.
        envs: How many envs take turns (the vector env's ``num_envs``).
    """

    def __init__(self, n: int, envs: int = 1) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"record every n episodes needs a positive integer n, got {n!r}")
        if not isinstance(envs, int) or isinstance(envs, bool) or envs < 1:
            raise ConfigError(f"envs must be a positive integer, got {envs!r}")
        self.n = n
        self.envs = envs

    def offset(self, env: int) -> int:
        """The first episode env ``env`` records."""
        return (env % self.envs) * self.n // self.envs

    def __call__(self, env: int, episode: int) -> bool:
        return episode % self.n == self.offset(env)

    def __repr__(self) -> str:
        return f"every:{self.n}"


def as_schedule(spec: ScheduleSpec, envs: int = 1) -> Schedule:
    """Turn ``"all"``, ``"none"``, ``"every:N"``, an int N, a bool or a callable into a schedule.

    ``envs``: how many envs run side by side; ``every:N`` and N make them take
    turns (:class:`RecordEvery`). A schedule object or callable is used as it is.

    Raises:
        ConfigError: For anything else, listing what is accepted.
    """
    if spec is None or spec is True or spec == "all":
        return RecordAll()
    if spec is False or spec == "none":
        return RecordNone()
    if isinstance(spec, int):
        return RecordEvery(spec, envs)
    if isinstance(spec, str) and spec.startswith("every:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            n = -1
        if n < 1:
            raise ConfigError(
                f"bad record schedule {spec!r}: write every:N with N a positive integer"
            )
        return RecordEvery(n, envs)
    if callable(spec):
        return spec
    raise ConfigError(
        f"bad record schedule {spec!r}: use 'all', 'none', 'every:N' or a callable (env, episode) -> bool"
    )
