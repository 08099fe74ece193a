"""An episode's return as the env itself counts it.

The rewards a front sees may have been changed by wrappers outside the env's
own bookkeeping (CleanRL's continuous recipe puts ``NormalizeReward`` around
``RecordEpisodeStatistics``), so the manifest takes the return from the
innermost episode statistics where the env keeps them, and sums the rewards
only where it keeps none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import RecordEpisodeStatistics

__all__ = ["return_reader"]


def return_reader(env: Any) -> Callable[[], float] | None:
    """What reads ``env``'s own episode return at an episode's end, if it keeps one.

    The innermost ``RecordEpisodeStatistics`` (its ``episode_returns``), or
    SB3's ``Monitor`` (its ``rewards``); None where the env keeps none and the
    rewards it returns are summed.
    """
    found: Callable[[], float] | None = None
    while isinstance(env, gym.Wrapper):
        if isinstance(env, RecordEpisodeStatistics):
            found = _attr_reader(env, "episode_returns")
        elif type(env).__name__ == "Monitor" and isinstance(getattr(env, "rewards", None), list):
            found = _sum_reader(env)
        env = env.env
    return found


def _attr_reader(env: Any, name: str) -> Callable[[], float]:
    return lambda: float(getattr(env, name))


def _sum_reader(env: Any) -> Callable[[], float]:
    return lambda: float(sum(env.rewards))
