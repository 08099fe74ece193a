"""Envs the Ray tests send to actors (a module of its own: actors import it, not the test module)."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym

STEPS = 40  # CartPole episodes are cut at this many steps


class SlowCartPole:
    """Makes CartPole whose steps take ``delay`` seconds, so a run lasts long enough to hurt."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def __call__(self) -> gym.Env:
        env = gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=STEPS)
        return _Sleepy(env, self.delay)

    def __repr__(self) -> str:
        return f"SlowCartPole({self.delay})"


class _Sleepy(gym.Wrapper):
    def __init__(self, env: gym.Env, delay: float) -> None:
        super().__init__(env)
        self.delay = delay

    def step(self, action: Any):
        if self.delay:
            time.sleep(self.delay)
        return self.env.step(action)


class Failing:
    """Makes an env that fails on the actor: "make" (an EnvError from the factory) or "step"."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __call__(self) -> gym.Env:
        if self.where == "make":
            from rlcapture import EnvError

            raise EnvError("no display here")
        return _Boom(gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=STEPS))

    def __repr__(self) -> str:
        return f"Failing({self.where!r})"


class _Boom(gym.Wrapper):
    def step(self, action: Any):
        raise RuntimeError("boom on the actor")
