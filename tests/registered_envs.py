"""Envs registered when this module is imported: for ``--import`` and ``module:EnvName-v0``.

Importing it registers, in the ``rlcapture-envtest`` namespace:

- ``Tiny-v0``: episodes of ``length`` steps (a keyword argument, for
  ``--env-kwargs``), 32x48 frames whose colour is the step.
- ``Noise-v0``: 64x64 noise frames; episode k lasts ``length * (k + 1)`` steps,
  so its videos grow until one outgrows a file size limit.
- ``NoGL-v0``: renders as MuJoCo does on a machine without OpenGL: Gymnasium's
  MuJoCo renderer raises ``RuntimeError("No OpenGL backend could be imported. ...")``
  when neither GLFW, EGL nor OSMesa gives it a context.
- ``Glad-v0``: renders as MuJoCo does when GLFW made a context without OpenGL
  (``mujoco.FatalError: gladLoadGL error``).
- ``HumanOnly-v0``: renders only to a window (``render_modes: ["human"]``).
- ``FloatFrames-v0``: float frames in [0, 1] up to step 2, then values up to 255.
- ``StepFails-v0``: two whole episodes, then ``step`` raises ``ValueError`` in the third.
- ``ShortCartPole-v0``: Gymnasium's CartPole, truncated after 15 steps.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

NAMESPACE = "rlcapture-envtest"

#: The message of gymnasium.envs.mujoco.mujoco_rendering.OffScreenViewer._get_opengl_backend.
NO_GL = (
    "No OpenGL backend could be imported. Attempting to create a rendering context will "
    "result in a RuntimeError."
)


class Tiny(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None, length: int = 3, side: int = 32) -> None:
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1000.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.length = length
        self.side = side
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        self.options = options
        return np.zeros(1, np.float32), {"options": options}

    def step(self, action: Any):
        self.t += 1
        return np.full(1, self.t, np.float32), 1.0, self.t >= self.length, False, {}

    def render(self) -> np.ndarray:
        return np.full((self.side, self.side + 16, 3), 10 * self.t % 256, np.uint8)


class Noise(Tiny):
    def __init__(self, render_mode: str | None = None, length: int = 40) -> None:
        super().__init__(render_mode, length=length, side=64)
        self.base = length
        self.episodes = 0
        self.rng = np.random.default_rng(0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.length = self.base * (self.episodes + 1)  # videos grow episode by episode
        self.episodes += 1
        return super().reset(seed=seed, options=options)

    def render(self) -> np.ndarray:
        return self.rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)


class NoGL(Tiny):
    def render(self) -> np.ndarray:
        raise RuntimeError(NO_GL)


class FatalError(Exception):
    """As ``mujoco.FatalError``, which MuJoCo raises for its fatal errors."""


class Glad(Tiny):
    def render(self) -> np.ndarray:
        raise FatalError("gladLoadGL error")


class HumanOnly(Tiny):
    metadata = {"render_modes": ["human"], "render_fps": 30}


class FloatFrames(Tiny):
    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode, length=100)

    def render(self) -> np.ndarray:
        top = 1.0 if self.t < 3 else 255.0  # a float frame in 0..255: not scaled, refused
        return np.full((self.side, self.side, 3), top, np.float32)


class StepFails(Tiny):
    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode, length=3)
        self.episodes = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.episodes += 1
        return super().reset(seed=seed, options=options)

    def step(self, action: Any):
        if self.episodes == 3 and self.t == 1:
            raise ValueError("the simulator diverged at step 2 of episode 2")
        return super().step(action)


_ENVS = [("Tiny", Tiny), ("StepFails", StepFails), ("Noise", Noise), ("NoGL", NoGL), ("Glad", Glad)]
_ENVS += [("HumanOnly", HumanOnly), ("FloatFrames", FloatFrames)]
for _name, _cls in _ENVS:
    if f"{NAMESPACE}/{_name}-v0" not in gym.registry:
        gym.register(f"{NAMESPACE}/{_name}-v0", entry_point=f"{__name__}:{_cls.__name__}")

if f"{NAMESPACE}/ShortCartPole-v0" not in gym.registry:
    gym.register(
        f"{NAMESPACE}/ShortCartPole-v0",
        entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
        max_episode_steps=15,
    )
