"""A seed plan: the seeds of an evaluation's episodes, taken in order by whichever env resets next.

``rlcapture record --seed S --episodes K`` (and :func:`rlcapture.evaluate`)
promise that the j-th episode of the evaluation resets with seed ``S + j``
whatever the number of envs, workers or encoder shards. Fixing a share of
seeds per env up front would make the seeds depend on the env count; instead
every worker, at every reset of one of its envs, takes the next index from one
counter in shared memory, so the K episodes of the plan are K distinct
positions, each run exactly once, by whichever env was free.

Two workers may reset at once, so the counter has a lock: a pipe holding one
byte (make's jobserver trick). Taking the byte is atomic, so one process holds
it at a time; unlike a ``multiprocess.Lock`` it names nothing in ``/dev/shm``,
needs no resource tracker under spawn or forkserver, and a pipe's ends cross
to any start method like the workers' own pipes. The lock is held for one
increment; a wait is bounded (a process killed in that instant cannot hang
the others). Episodes after the plan is used up are unseeded and
not counted (no manifest line, no video).

Each env's current position is published in a shared array (-1: none), read
by the main process after each reply, so a policy can reseed itself per
episode (:class:`rlcapture.policies.RandomPolicy`).
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["SeedPlan", "check_seeds", "policy_seed"]

_MAX_SEED = 2**63 - 1
_LOCK_WAIT = 60.0  # seconds; the lock is held for one increment


def check_seeds(seeds: Any, what: str = "seeds") -> range | tuple[int, ...]:
    """``seeds`` as a range (kept compact) or a tuple of ints, each from 0 to 2**63-1.

    Raises:
        ConfigError: Not a sequence of non-negative integers, or empty.
    """
    if isinstance(seeds, range):
        if len(seeds) == 0:
            raise ConfigError(f"{what} is empty; give at least one seed")
        if min(seeds[0], seeds[-1]) < 0 or max(seeds[0], seeds[-1]) > _MAX_SEED:
            raise ConfigError(f"{what} must hold seeds from 0 to 2**63-1, got {seeds!r}")
        return seeds
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ConfigError(f"{what} must be a list or range of integers, got {type(seeds).__name__}")
    values = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= int(s) <= _MAX_SEED:
            raise ConfigError(f"{what} must hold integers from 0 to 2**63-1, got {s!r}")
        values.append(int(s))
    if not values:
        raise ConfigError(f"{what} is empty; give at least one seed")
    return tuple(values)


def policy_seed(seed: int) -> int:
    """The seed of a random policy's sampler for an episode reset with ``seed``.

    Derived, not ``seed`` itself: Gymnasium seeds the env's generator and a
    space's sampler the same way, so the same number would make the actions
    the same stream as the env's own draws.
    """
    return int(np.random.SeedSequence(int(seed), spawn_key=(0x5EED,)).generate_state(1, np.uint64)[0] >> 1)


class SeedPlan:
    """The seeds of an evaluation, handed out once each across processes.

    Args:
        seeds: The episodes' seeds, in order (see :func:`check_seeds`).
        num_envs: Envs of the vector env (slots of :meth:`current`).
        ctx: The ``multiprocess`` context the workers are started with.
    """

    def __init__(self, seeds: Sequence[int], num_envs: int, ctx: Any) -> None:
        self.seeds = check_seeds(seeds)
        self._next = ctx.RawValue("q", 0)
        self._current = ctx.RawArray("q", [-1] * num_envs)
        # Connections, not bare descriptors: they cross to spawned workers.
        self._take_end, self._give_end = ctx.Pipe(duplex=False)
        os.set_blocking(self._take_end.fileno(), False)
        os.write(self._give_end.fileno(), b"t")

    def _acquire(self) -> None:
        fd = self._take_end.fileno()
        deadline = time.monotonic() + _LOCK_WAIT
        while True:
            try:
                if os.read(fd, 1):
                    return
            except BlockingIOError:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(
                    f"the seed plan's lock was not released within {_LOCK_WAIT:g} s "
                    "(a process died holding it)"
                )
            select.select([fd], [], [], min(left, 1.0))

    def _release(self) -> None:
        os.write(self._give_end.fileno(), b"t")

    def __len__(self) -> int:
        return len(self.seeds)

    def take(self, slot: int) -> tuple[int | None, int | None]:
        """Env ``slot`` is resetting: its seed and plan position (None, None: the plan is used up)."""
        self._acquire()
        try:
            index = self._next.value
            if index < len(self.seeds):
                self._next.value = index + 1
        finally:
            self._release()
        if index >= len(self.seeds):
            self._current[slot] = -1
            return None, None
        self._current[slot] = index
        return self.seeds[index], index

    @property
    def taken(self) -> int:
        """Positions handed out so far."""
        return int(self._next.value)

    def current(self) -> np.ndarray:
        """The plan position of each env's running episode (-1: none), a copy."""
        return np.frombuffer(self._current, dtype=np.int64).copy()
