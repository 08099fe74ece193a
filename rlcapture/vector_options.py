"""The options of :class:`~rlcapture.CaptureVectorEnv` that are its own, checked once.

What to record and how (codec, quality, outputs) is a
:class:`~rlcapture.RecordConfig`; this value holds the rest, how the vector
env runs its envs: how many, how many per worker process, the autoreset mode,
the observation path, timeouts, failures, seeds. It is made (and checked)
before anything is started or written, so a bad option leaves no folder
behind, and the vector env and its workers read each option where they use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from ._backend.encoder_count import usable_cores
from ._backend.seedplan import check_seeds
from .errors import ConfigError
from .triggers import Schedule, ScheduleSpec, as_schedule

__all__ = ["VectorOptions", "check_count"]

_ON_ERROR = ("raise", "continue")


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum`` (0 or 1).

    Raises:
        ConfigError: Not an integer (``True`` is refused: it is not a count),
            or below ``minimum``.
    """
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < minimum:
        kind = "positive" if minimum >= 1 else "non-negative"
        raise ConfigError(f"{name} must be a {kind} integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class VectorOptions:
    """How a :class:`~rlcapture.CaptureVectorEnv` runs its envs: its own arguments.

    Built from the constructor's arguments as given; ``__post_init__`` checks
    each and stores it in one form (``autoreset_mode`` an
    :class:`AutoresetMode`, ``episodes_per_env`` one quota per env,
    ``render_after_batch`` decided from the usable cores, ``schedule`` made
    from ``record``).

    Attributes:
        num_envs: Envs of the vector env (one per env function).
        record: Which episodes to record: "all", "none", "every:N" or a callable
            ``(env_index, episode_index) -> bool``. Evaluated in the worker at
            each reset.
        envs_per_worker: Envs hosted by one worker process.
        autoreset_mode: ``NEXT_STEP`` (Gymnasium's default), ``SAME_STEP`` or
            ``DISABLED`` (reset done envs with ``reset(options={"reset_mask": mask})``).
        shared_memory: Observations go through shared memory (True) or the
            workers' pipes (False), as AsyncVectorEnv's. None (default): shared
            memory where the space allows it, else the pipes (custom spaces,
            and those with dynamic shapes: ``Sequence``, ``Graph``), so any
            space AsyncVectorEnv takes works unasked. True asked for with such
            a space raises as AsyncVectorEnv does (Gymnasium's ``TypeError``
            for a dynamic shape; ``ValueError`` for a custom space).
        observation_mode: "same" (every env has env 0's observation space),
            "different" (same shape and dtype, other bounds), or a pair
            ``(observation_space, single_observation_space)``, as AsyncVectorEnv's.
        step_timeout: Seconds a worker may take to answer before
            :class:`StepTimeoutError`; None waits as long as the worker lives.
        context: ``multiprocess`` start method for the workers.
        copy: Return copies of the observations (else views that the next step
            overwrites).
        first_env_index: Index of the first env in the recording, so several
            vector envs can share one recorder.
        episodes_per_env: A quota of episodes per env (one number, or one per
            env): later episodes still step, as a vector env must, but are
            neither recorded nor written to the manifest.
        on_error: "raise" (default): an env that fails stops the run with
            :class:`WorkerError`. "continue": the env is taken out instead: its
            episode ends (``truncated``, ``info["error"]``, ``end: "error"`` and
            the message in the manifest), then it steps no more (zero reward,
            never done) and ``failed`` marks it. A worker process that dies
            takes all of its envs out; the run only stops when no env is left.
        episode_seeds: An evaluation's seed plan (a list or range of seeds):
            every reset that is not given a seed (the first, and each
            autoreset) takes the plan's next seed, whichever env resets, so
            the j-th episode run has seed ``episode_seeds[j]`` however many
            envs there are. Episodes after the plan is used up are not
            counted (neither recorded nor in the manifest); ``seed_indices()``
            tells each env's position in the plan. ``reset(seed=...)`` is then
            refused. None (default): resets are seeded only as the caller asks.
        render_after_batch: Workers hold a step's frames until every worker
            has answered the step, then render (while the caller runs its
            policy), so a worker that answers first does not take a core from
            one still stepping. None (default): only when there are more
            workers than usable cores, where that contention happens; with a
            core per worker, rendering at once is earlier and free.
        schedule: ``record`` made into a schedule.

    Raises:
        ConfigError: An option is out of range or malformed (``True`` given
            as a count included).
        TypeError: ``observation_mode`` is a tuple but not of two spaces (as
            AsyncVectorEnv raises).
    """

    num_envs: int
    record: ScheduleSpec = "all"
    envs_per_worker: int = 1
    autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP
    shared_memory: bool | None = None
    observation_mode: str | tuple[gym.Space, gym.Space] = "same"
    step_timeout: float | None = None
    context: str | None = None
    copy: bool = True
    first_env_index: int = 0
    episodes_per_env: int | Sequence[int | None] | None = None
    on_error: str = "raise"
    episode_seeds: Sequence[int] | None = None
    render_after_batch: bool | None = None
    schedule: Schedule = field(init=False)

    def __post_init__(self) -> None:
        n = self.num_envs
        if n < 1:
            raise ConfigError("give at least one env function")
        put = object.__setattr__  # frozen: each option is stored once, checked
        put(self, "envs_per_worker", check_count("envs_per_worker", self.envs_per_worker))
        timeout = self.step_timeout
        if timeout is not None and (
            isinstance(timeout, bool) or not (timeout > 0 and math.isfinite(timeout))
        ):
            raise ConfigError(
                f"step_timeout must be a positive number of seconds, got {timeout!r}"
            )
        put(self, "first_env_index", check_count("first_env_index", self.first_env_index, 0))
        put(self, "autoreset_mode", _autoreset_mode(self.autoreset_mode))
        _check_observation_mode(self.observation_mode)
        if self.shared_memory is not None:
            put(self, "shared_memory", bool(self.shared_memory))
        if self.on_error not in _ON_ERROR:
            raise ConfigError(f"on_error must be 'raise' or 'continue', got {self.on_error!r}")
        if self.render_after_batch is None:
            put(self, "render_after_batch", self.num_workers > usable_cores())
        put(self, "render_after_batch", bool(self.render_after_batch))
        put(self, "schedule", as_schedule(self.record, envs=n))
        put(self, "episodes_per_env", _quotas(self.episodes_per_env, n))
        if self.episode_seeds is not None:
            put(self, "episode_seeds", check_seeds(self.episode_seeds, "episode_seeds"))

    @property
    def num_workers(self) -> int:
        """Worker processes: ``num_envs / envs_per_worker``, rounded up."""
        return -(-self.num_envs // self.envs_per_worker)

    @property
    def quotas(self) -> list[int | None]:
        """Each env's episode quota (None: no quota)."""
        return list(self.episodes_per_env)  # type: ignore[arg-type]


def _autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    try:
        return AutoresetMode(mode)
    except ValueError:
        raise ConfigError(
            f"autoreset_mode {mode!r} is not supported; use NEXT_STEP, SAME_STEP or DISABLED"
        ) from None


def _check_observation_mode(mode: Any) -> None:
    if isinstance(mode, tuple):
        if len(mode) != 2 or not all(isinstance(space, gym.Space) for space in mode):
            raise TypeError(
                "observation_mode as a tuple must be (observation_space, "
                f"single_observation_space), two Spaces; got {mode!r}"
            )
    elif mode not in ("same", "different"):
        raise ConfigError(
            "Invalid `observation_mode`, expected: 'same' or 'different' or tuple of single "
            f"and batch observation space, actual got {mode}"
        )


def _quotas(given: int | Sequence[int | None] | None, n: int) -> tuple[int | None, ...]:
    """One episode quota per env (None: no quota)."""
    if given is None or isinstance(given, int):
        limits: list[Any] = [given] * n
    else:
        limits = list(given)
        if len(limits) != n:
            raise ConfigError(f"got {len(limits)} episode quotas for {n} envs")
    if any(
        q is not None and (isinstance(q, bool) or not (isinstance(q, int) and q >= 0))
        for q in limits
    ):
        raise ConfigError("episodes_per_env must hold non-negative integers")
    return tuple(limits)
