"""Per-env episode bookkeeping shared by every producer: index, seed, statistics.

Every episode's reset gets a seed that is written to the manifest, so any
episode can be replayed exactly: the seed the caller gave, or, for episodes the
caller did not seed (autoresets), one derived from the last given seed and the
number of episodes since, so the same seed still gives the same episodes.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import numpy as np

from ..triggers import Schedule

__all__ = ["EpisodeTracker", "derive_seed"]


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

    def finish(self, end: str, **extra: Any) -> dict[str, Any]:
        """End the episode; returns its manifest record.

        Args:
            end: Why it ended: "terminated", "truncated", "closed" or "error".
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
