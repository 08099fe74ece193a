"""One episode lifecycle for every producer: index, seed, statistics, how it ends.

The worker, :class:`~rlcapture.CaptureWrapper` and
:class:`~rlcapture.BatchCapture` all keep their envs' episodes with
:class:`EpisodeBook`, so the rules are written once: a reset or close cuts
the running episode short (a manifest line if it was recorded), an episode
that finishes or fails ends (a line if it is within the env's quota), and an
episode ends once. :class:`EndReason` names how an episode ended; its values
are what the manifest's ``end`` field holds.

An episode is reset exactly as the caller asked: with the seed it gave, or
unseeded (autoresets, ``reset()`` without a seed) as Gymnasium would, so
trajectories are those of any other vector env. Each stays replayable: the
manifest holds the seed when one was given, and otherwise the state of the
env's generator just before its reset (``rng``, from ``rngstate.py``);
``rlcapture replay`` restores either.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

from ..triggers import Schedule
from .rngstate import generator_state

__all__ = ["EndReason", "FINISHED", "EpisodeBook"]


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


class EpisodeBook:
    """The book of one env's episodes: the running one's index, seed, statistics and end.

    Args:
        env: The env's index in the recording.
        schedule: Decides at reset whether the episode is recorded.
    """

    __slots__ = (
        "env", "schedule", "episode", "step", "ret", "t0", "seed", "rng", "recording",
        "dropped", "offered", "active", "limit", "planned", "seed_index",
    )  # fmt: skip

    def __init__(self, env: int, schedule: Schedule, limit: int | None = None) -> None:
        self.env = env
        self.schedule = schedule
        self.limit = limit
        self.episode = -1
        self.step = 0
        self.ret = 0.0
        self.t0 = 0.0
        self.seed: int | None = None
        self.rng: dict[str, Any] | None = None
        self.recording = False
        self.dropped = 0
        self.offered = 0
        self.active = False
        self.planned = True
        self.seed_index: int | None = None

    def begin(
        self, seed: int | None, env: Any = None, *, planned: bool = True, seed_index: int | None = None
    ) -> int | None:
        """Start the next episode, before ``env`` is reset; returns the seed to reset it with.

        Args:
            seed: The seed the caller gave, or None: the reset stays unseeded.
            env: The env about to be reset. For an unseeded reset its
                generator's state is kept (the manifest's ``rng``) so the
                episode can be replayed; None (a simulator rlcapture does not
                see) records no state.
            planned: False for an episode beyond an evaluation's seed plan: it
                is neither recorded nor written to the manifest.
            seed_index: The episode's position in the seed plan, if any.
        """
        self.seed = None if seed is None else int(seed)
        self.rng = generator_state(env) if seed is None and env is not None else None
        self.planned = planned
        self.seed_index = seed_index
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
        return self.planned and (self.limit is None or self.episode < self.limit)

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
            "rng": self.rng,
            "return": self.ret,
            "length": self.step,
            "time": round(time.perf_counter() - self.t0, 6),
            "dropped": self.dropped,
            "end": end,
            "recorded": self.recording,
        }
        if self.seed_index is not None:
            record["seed_index"] = self.seed_index
        record.update(extra)
        return record
