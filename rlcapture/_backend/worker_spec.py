"""What a worker process is given: its envs, its place in the shared arrays, its schedule.

Built by the vector env, pickled (with dill) into the worker process, read by
:mod:`.worker_envs`. Values only: no process, pipe or env is touched here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

from ..triggers import Schedule
from .channel import Endpoint
from .seedplan import SeedPlan

__all__ = ["Shared", "WorkerSpec"]


class Shared:
    """Arrays in shared memory that the vector env and its workers both see.

    ``obs_mem`` is None when observations go through the pipe instead
    (``shared_memory=False``: spaces that shared memory cannot hold).
    """

    def __init__(self, obs_mem: Any, rewards: Any, terminated: Any, truncated: Any) -> None:
        self.obs_mem = obs_mem
        self.rewards = rewards
        self.terminated = terminated
        self.truncated = truncated

    def views(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.frombuffer(self.rewards, dtype=np.float64),
            np.frombuffer(self.terminated, dtype=np.bool_),
            np.frombuffer(self.truncated, dtype=np.bool_),
        )


class WorkerSpec:
    """What one worker needs; picklable (with dill, so lambdas are fine)."""

    def __init__(
        self,
        index: int,
        env_fns: Sequence[Callable[[], Any]],
        first: int,
        env_indices: Sequence[int],
        endpoint: Endpoint,
        schedule: Schedule,
        autoreset_mode: AutoresetMode,
        shared: Shared,
        limits: Sequence[int | None] | None = None,
        on_error: str = "raise",
        gate: bool = False,
        seed_plan: SeedPlan | None = None,
        gl: dict[str, str] | None = None,
    ) -> None:
        self.index = index
        self.env_fns = list(env_fns)
        self.first = first  # position of our first env in the shared arrays
        self.env_indices = list(env_indices)
        self.endpoint = endpoint
        self.schedule = schedule
        self.autoreset_mode = autoreset_mode
        self.shared = shared
        self.limits = list(limits) if limits is not None else [None] * len(self.env_indices)
        self.on_error = on_error
        # Render only when the vector env says every worker has answered
        # (a "render" message), so a worker that answers first does not take
        # a core from one still stepping; for more workers than cores.
        self.gate = gate
        # Evaluation seeds: every reset of these envs takes the plan's next seed.
        self.seed_plan = seed_plan
        # MUJOCO_GL and PYOPENGL_PLATFORM as the vector env's process has them
        # (:mod:`.gl_platform`), set before the envs are made where unset: a
        # worker started by forkserver or spawn may not have inherited them.
        self.gl = dict(gl or {})
