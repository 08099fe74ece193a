"""One episode lifecycle for every producer: index, seed, statistics, how it ends.

The worker, :class:`~rlcapture.CaptureWrapper` and
:class:`~rlcapture.BatchCapture` all keep their envs' episodes with
:class:`EpisodeTracker`, so the rules are written once: a reset or close cuts
the running episode short (a manifest line if it was recorded), an episode
that finishes or fails ends (a line if it is within the env's quota), and an
episode ends once. :class:`EndReason` names how an episode ended; its values
are what the manifest's ``end`` field holds.

Every episode's reset gets a seed that is written to the manifest, so any
episode can be replayed exactly: the seed the caller gave, or, for episodes the
caller did not seed (autoresets), one derived from the last given seed and the
number of episodes since, so the same seed still gives the same episodes.
"""

from __future__ import annotations

import secrets
import time
from enum import Enum
from typing import Any

import numpy as np

from ..triggers import Schedule

__all__ = ["EndReason", "FINISHED", "EpisodeTracker", "derive_seed"]


class EndReason(str, Enum):
    """How an episode ended; the value is the manifest's ``end`` field.

    A ``str`` too, so it compares equal to, and serialises as, the text in the
    manifest: ``EndReason.TERMINATED == "terminated"``.
    """

    TERMINATED = "terminated"  # the env said so
    TRUNCATED = "truncated"  # a time limit (or the env) cut it
    RESET = "reset"  # reset before it finished
    CLOSED = "closed"  # closed before it finished
    ERROR = "error"  # its env or the output failed
    LOST = "lost"  # its producer died without saying goodbye

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)


#: How an episode ends when it finished on its own (it has a return to judge).
#: A tuple, not a set: a manifest read from disk may hold anything in ``end``,
#: and ``in`` a tuple never fails on an unhashable value.
FINISHED = (EndReason.TERMINATED, EndReason.TRUNCATED)


def derive_seed(base: int, n: int) -> int:
    """The seed of the ``n``-th unseeded episode after a reset seeded with ``base``."""
    return int(np.random.SeedSequence([int(base) & (2**64 - 1), n]).generate_state(1, np.uint32)[0])


class EpisodeTracker:
    """Tracks the running episode of one env.

    Args:
        env: The env's index in the recording.
        schedule: Decides at reset whether the episode is recorded.
    """

    __slots__ = (
        "env", "schedule", "episode", "step", "ret", "t0", "seed", "recording",
        "dropped", "offered", "_base", "_since", "active", "limit", "derive",
    )  # fmt: skip

    def __init__(
        self, env: int, schedule: Schedule, limit: int | None = None, derive: bool = True
    ) -> None:
        self.env = env
        self.schedule = schedule
        self.limit = limit
        self.derive = derive
        self.episode = -1
        self.step = 0
        self.ret = 0.0
        self.t0 = 0.0
        self.seed: int | None = None
        self.recording = False
        self.dropped = 0
        self.offered = 0
        self._base: int | None = None
        self._since = 0
        self.active = False

    def begin(self, seed: int | None) -> int | None:
        """Start the next episode; returns the seed to pass to ``reset``.

        Without ``derive`` (a caller that seeds its own simulator), an unseeded
        episode stays unseeded and its manifest seed is null.
        """
        if seed is not None:
            self._base, self._since = int(seed), 0
            self.seed = int(seed)
        elif not self.derive:
            self.seed = None
        else:
            if self._base is None:
                self._base, self._since = secrets.randbits(32), 0
            self._since += 1
            self.seed = derive_seed(self._base, self._since)
        self.episode += 1
        self.step = 0
        self.ret = 0.0
        self.dropped = 0
        self.offered = 0
        self.recording = self.counted and bool(self.schedule(self.env, self.episode))
        self.active = True
        self.t0 = time.perf_counter()
        return self.seed

    @property
    def counted(self) -> bool:
        """Whether this episode is within the env's quota (and so in the manifest)."""
        return self.limit is None or self.episode < self.limit

    def add(self, reward: Any) -> None:
        """Count one step and its reward."""
        self.step += 1
        self.ret += float(reward)

    def sent(self, ok: bool) -> None:
        """Count a frame offered to the encoder, and whether it was dropped."""
        self.offered += 1
        if not ok:
            self.dropped += 1

    def stats(self) -> dict[str, Any]:
        """What ``RecordEpisodeStatistics`` puts in ``info["episode"]``."""
        return {"r": self.ret, "l": self.step, "t": round(time.perf_counter() - self.t0, 6)}

    def cut(self, reason: EndReason) -> dict[str, Any] | None:
        """Cut the running episode short (a reset or close before it finished).

        Returns:
            Its manifest record if it was recorded, else None (an episode
            never recorded and never finished is not worth a line).
        """
        if not self.active:
            return None
        record = self.finish(reason)
        return record if record["recorded"] else None

    def done(self, terminated: bool) -> dict[str, Any] | None:
        """The episode finished (the env said terminated or truncated).

        Returns:
            Its manifest record if it is within the quota, else None.
        """
        return self.end(EndReason.TERMINATED if terminated else EndReason.TRUNCATED)

    def end(self, reason: EndReason, **extra: Any) -> dict[str, Any] | None:
        """End the running episode (finished, or failed); ``extra`` joins its record.

        Returns:
            Its manifest record if it is within the quota, else None; None too
            if no episode is running (an episode ends once).
        """
        if not self.active:
            return None
        record = self.finish(reason, **extra)
        return record if self.counted else None

    def finish(self, end: EndReason, **extra: Any) -> dict[str, Any]:
        """End the episode, whatever the rules say; returns its manifest record.

        The fronts call :meth:`cut`, :meth:`done` or :meth:`end`, which decide
        whether the record goes to the manifest.
        """
        self.active = False
        record = {
            "env": self.env,
            "episode": self.episode,
            "seed": self.seed,
            "return": self.ret,
            "length": self.step,
            "time": round(time.perf_counter() - self.t0, 6),
            "dropped": self.dropped,
            "end": end,
            "recorded": self.recording,
        }
        record.update(extra)
        return record
