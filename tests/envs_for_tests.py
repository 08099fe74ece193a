"""Small envs the tests run in workers (module-level so any start method can pickle them)."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class NoisyEnv(gym.Env):
    """Episodes of ``length`` steps that render big noise frames (slow to encode)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, length: int = 3, side: int = 1024) -> None:
        self.render_mode = "rgb_array"
        self.observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.length = length
        rng = np.random.default_rng(0)
        self.frames = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(3)]
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: Any):
        self.t += 1
        return np.zeros(1, np.float32), 1.0, self.t >= self.length, False, {}

    def render(self) -> np.ndarray:
        return self.frames[self.t % 3]


class Growing(NoisyEnv):
    """Small noise frames; episode k lasts ``base * (k + 1)`` steps, so videos grow."""

    def __init__(self, base: int = 20, side: int = 64) -> None:
        super().__init__(length=base, side=side)
        self.base = base
        self.episodes = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.length = self.base * (self.episodes + 1)
        self.episodes += 1
        return super().reset(seed=seed, options=options)


class Faulty(gym.Wrapper):
    """CartPole that misbehaves after ``at`` steps in total (over all episodes).

    Args:
        what: "raise" in step, "sleep" in step, "raise-render", "float-render",
            "resize" (the frame size changes mid-episode), "exit" (the worker
            process exits), "segv" (the worker process gets SIGSEGV in step),
            "raise-reset" (reset raises from the ``at``-th reset on, counted
            from 0), or None to behave.
    """

    def __init__(self, what: str | None = None, at: int = 5, seconds: float = 30.0) -> None:
        super().__init__(gym.make("CartPole-v1", render_mode="rgb_array"))
        self.what = what
        self.at = at
        self.seconds = seconds
        self.steps = 0
        self.resets = 0

    def reset(self, **kwargs: Any):
        self.resets += 1
        if self.what == "raise-reset" and self.resets > self.at:
            raise RuntimeError(f"reset broke at reset {self.resets - 1}")
        return self.env.reset(**kwargs)

    def step(self, action: Any):
        self.steps += 1
        if self.steps >= self.at:
            if self.what == "raise":
                raise RuntimeError(f"boom at step {self.steps}")
            if self.what == "sleep":
                time.sleep(self.seconds)
            if self.what == "exit":
                import os

                os._exit(3)
            if self.what == "segv":
                import os
                import signal

                # Default action, so the process dies of SIGSEGV whatever is
                # installed: pygame's "parachute" (CartPole renders with
                # pygame) would turn it into a fatal error and SIGABRT.
                signal.signal(signal.SIGSEGV, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGSEGV)
        return self.env.step(action)

    def render(self) -> Any:
        frame = self.env.render()
        if self.steps >= self.at:
            if self.what == "raise-render":
                raise ValueError("render broke")
            if self.what == "float-render":  # floats, but 0-255: out of [0, 1]
                return frame.astype(np.float32)
            if self.what == "resize" and self.steps > self.at:
                return frame[:200]
        return frame


def pattern_seed(record: dict[str, Any]) -> int:
    """The seed :class:`Pattern` draws its frames from, for a manifest record: the
    reset's seed, or for an unseeded reset the number it drew from its generator."""
    if record["seed"] is not None:
        return int(record["seed"])
    from rlcapture._backend.rngstate import restore_generator

    env = Pattern()
    restore_generator(env, record["rng"])
    return int(env.np_random.integers(2**31))


def pattern_frame(seed: int, t: int, shape: tuple[int, ...] = (37, 51, 3)) -> np.ndarray:
    """The frame :class:`Pattern` renders at step ``t`` of the episode reset with ``seed``."""
    return np.random.default_rng([seed, t]).integers(0, 256, shape, dtype=np.uint8)


class Pattern(gym.Env):
    """Renders noise determined by (episode seed, step), odd-sized, so tests can recompute it.

    Episode ``k`` lasts ``lengths[k % len(lengths)]`` steps and earns reward
    ``rewards[k % len(rewards)]`` per step (so returns are known in advance);
    ``truncate`` ends episodes by truncation instead of termination.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        lengths: tuple[int, ...] = (4,),
        rewards: tuple[float, ...] = (1.0,),
        shape: tuple[int, ...] = (37, 51, 3),
        truncate: bool = False,
    ) -> None:
        self.render_mode = "rgb_array"
        self.observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.lengths, self.rewards, self.shape, self.truncate = lengths, rewards, shape, truncate
        self.episodes = -1
        self.t = 0
        self.seed = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.episodes += 1
        self.seed = int(seed) if seed is not None else int(self.np_random.integers(2**31))
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: Any):
        self.t += 1
        k = self.episodes
        end = self.t >= self.lengths[k % len(self.lengths)]
        reward = self.rewards[k % len(self.rewards)]
        return np.zeros(1, np.float32), reward, end and not self.truncate, end and self.truncate, {}

    def render(self) -> np.ndarray:
        return pattern_frame(self.seed, self.t, self.shape)


class RandomLength(gym.Env):
    """Episodes whose length and rewards come from the env's generator (and the actions).

    So an episode is fixed by its reset seed and its actions alone: the test env
    for "the same seeds give the same episodes, whatever the parallelism".
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, max_length: int = 25) -> None:
        self.render_mode = "rgb_array"
        self.observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(3)
        self.max_length = max_length
        self.length = 1
        self.t = 0
        self.level = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.length = int(self.np_random.integers(1, self.max_length + 1))
        self.t = 0
        self.level = float(self.np_random.random())
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return np.array([self.level, self.t / self.max_length], np.float32)

    def step(self, action: Any):
        self.t += 1
        reward = float(int(action) * self.level + self.np_random.random())
        self.level = float(self.np_random.random())
        return self._obs(), reward, self.t >= self.length, False, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((16, 24, 3), np.uint8)
        frame[:, : 1 + int(self.level * 23)] = (40 * self.t) % 256
        return frame


def lean_policy(obs: np.ndarray) -> np.ndarray:
    """A deterministic CartPole policy (push toward the pole's lean), batch in, batch out."""
    return (np.asarray(obs)[:, 2] + 0.3 * np.asarray(obs)[:, 3] > 0).astype(np.int64)
