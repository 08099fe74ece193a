"""The progress bar of ``rlcapture record``: env steps, episodes done of total, frames/s, ETA.

Drawn by tqdm (a few hundred kB, no dependencies, handles terminal width,
non-terminals and redraw throttling). The bar counts env steps, not episodes:
episodes end in waves, so a bar of episodes stands still at 0/2 for the whole
of two long first episodes. Its total is an estimate, ``envs x the largest
episode quota x the mean length of the episodes finished so far`` (every env
steps until the slowest one has its quota), unknown until an episode ends;
the ETA follows from it.
"""

from __future__ import annotations

import functools
import shutil
import time
from typing import Any, TextIO

__all__ = ["RunProgress"]

_KNOWN = "{percentage:3.0f}%|{bar}| {stats} [{elapsed}, ETA {remaining}]"
_UNKNOWN = "{stats} [{elapsed}, ETA ?]"


@functools.cache
def _bar_class() -> type:
    """tqdm with a ``{stats}`` field (steps, episodes, frames/s) for ``bar_format``."""
    from tqdm import tqdm

    class _Bar(tqdm):  # type: ignore[misc,valid-type]
        monitor_interval = 0  # no monitor thread: updates come every step anyway

        def __init__(self, *args: Any, stats: str = "", **kwargs: Any) -> None:
            self.stats = stats  # before tqdm's first draw
            super().__init__(*args, **kwargs)

        @property
        def format_dict(self) -> dict[str, Any]:
            d = super().format_dict
            d["stats"] = getattr(self, "stats", "")
            return d

    return _Bar


class RunProgress:
    """A bar for one recording; a no-op when ``enabled`` is false (``--quiet``).

    Args:
        episodes: Episodes the run records in all.
        num_envs: Envs stepped together.
        longest_quota: The most episodes any one env must finish.
        stream: Where to draw (stderr).
        label: Shown before the bar (e.g. ``seed 3``).
    """

    def __init__(
        self,
        episodes: int,
        num_envs: int,
        longest_quota: int,
        stream: TextIO,
        *,
        enabled: bool = True,
        label: str = "",
    ) -> None:
        self.episodes = episodes
        self.slots = max(1, num_envs * longest_quota)
        self._lengths = 0
        self._ended = 0
        self._start = time.perf_counter()
        self._bar = None
        self._prefix = label.replace("{", "{{").replace("}", "}}") + ": " if label else ""
        if not enabled:
            return
        tty = bool(getattr(stream, "isatty", lambda: False)())
        self._bar = _bar_class()(
            total=None,
            file=stream,
            bar_format=self._prefix + _UNKNOWN,
            stats=f"0 steps, 0/{episodes} episodes",
            mininterval=0.1 if tty else 5.0,  # at most 10 redraws a second; sparse in logs
            ncols=(shutil.get_terminal_size((100, 24)).columns or 100) if tty else 100,
            leave=True,
        )

    def _stats(self, bar: Any, steps: int, done: int) -> None:
        elapsed = time.perf_counter() - self._start
        rate = steps / elapsed if elapsed > 0 else 0.0  # the mean rate: steady, unlike tqdm's EMA
        bar.stats = f"{steps:,} steps, {done}/{self.episodes} episodes, {rate:,.0f} frames/s"

    def episode_ended(self, length: int) -> None:
        """An episode of ``length`` steps ended: refines the estimated total."""
        self._lengths += int(length)
        self._ended += 1

    def update(self, steps: int, done: int) -> None:
        """``steps`` env steps taken in all, ``done`` episodes of the quota finished."""
        bar = self._bar
        if bar is None:
            return
        if self._ended:
            estimate = round(self.slots * self._lengths / self._ended)
            total = max(estimate, steps + 1) if done < self.episodes else steps
            if bar.total is None:
                bar.bar_format = self._prefix + _KNOWN
            bar.total = total
        self._stats(bar, steps, done)
        bar.update(steps - bar.n)  # redraws at most every mininterval

    def close(self, steps: int, done: int) -> None:
        """Draw the final state and end the line."""
        bar = self._bar
        if bar is None:
            return
        self._bar = None
        if bar.total is not None or done >= self.episodes:
            bar.bar_format = self._prefix + _KNOWN
            bar.total = max(steps, 1) if done >= self.episodes else max(bar.total or 0, steps)
        bar.n = steps
        self._stats(bar, steps, done)
        bar.close()  # draws the final state once

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()
