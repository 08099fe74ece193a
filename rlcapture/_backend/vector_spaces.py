"""A vector env's spaces, and the batches checked against them, as AsyncVectorEnv does.

Plain values and functions, as Gymnasium keeps them in ``gymnasium/vector/utils``
apart from its vector envs: env 0's spaces and the checks of every other env's
against them, the batched spaces, the observation buffer (shared memory or
not), and the arguments of ``reset``/``step`` split into one item per env. The
error messages are Gymnasium's where code written for AsyncVectorEnv may
match them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import CustomSpaceError
from gymnasium.spaces.utils import is_space_dtype_shape_equiv
from gymnasium.vector.utils import (
    batch_differing_spaces,
    batch_space,
    create_empty_array,
    create_shared_memory,
    iterate,
    read_from_shared_memory,
)

from ..errors import BatchError, ConfigError, EnvError, SpaceMismatchError

__all__ = ["VectorSpaces", "check_render_mode", "reset_seeds", "check_mask", "split_actions"]


@dataclass(frozen=True)
class VectorSpaces:
    """Env 0's spaces and what a vector env copies from it.

    Attributes:
        mode: ``observation_mode``: "same", "different" or a pair
            ``(observation_space, single_observation_space)``.
        single_observation_space, single_action_space: One env's.
        metadata, render_mode, spec: Env 0's.
    """

    mode: str | tuple[gym.Space, gym.Space]
    single_observation_space: gym.Space
    single_action_space: gym.Space
    metadata: dict[str, Any]
    render_mode: str | None
    spec: Any

    @classmethod
    def of(cls, env: gym.Env, mode: str | tuple[gym.Space, gym.Space]) -> VectorSpaces:
        """Env 0's, ``env`` made in the vector env's process (checked: it renders to arrays)."""
        check_render_mode(env, 0)
        single = mode[1] if isinstance(mode, tuple) else env.observation_space
        return cls(mode, single, env.action_space, dict(env.metadata), env.render_mode, env.spec)

    def check(self, env_index: int, info: Any) -> gym.Space:
        """Env ``env_index``'s spaces (its worker's ``EnvInfo``) against env 0's.

        Returns:
            Its observation space.

        Raises:
            SpaceMismatchError: They differ where the mode needs them equal.
        """
        space = info.observation_space
        if self.mode == "same":
            if space != self.single_observation_space:
                raise SpaceMismatchError(
                    "CaptureVectorEnv(..., observation_mode='same') however the "
                    f"sub-environments observation spaces are not equivalent. Env {env_index} "
                    f"has {space}, env 0 {self.single_observation_space}. If this is "
                    "intentional, use `observation_mode='different'` instead."
                )
        elif not is_space_dtype_shape_equiv(self.single_observation_space, space):
            raise SpaceMismatchError(
                f"env {env_index}'s observation space {space} does not share a shape and "
                f"dtype with {self.single_observation_space}"
            )
        if info.action_space != self.single_action_space:
            raise SpaceMismatchError(
                f"env {env_index} has a different action space from env 0 "
                f"({info.action_space} against {self.single_action_space}); the actions "
                "of a vector env are batched, so every env needs the same"
            )
        return space  # type: ignore[no-any-return]

    def batched(self, spaces: Sequence[gym.Space], n: int) -> tuple[gym.Space, gym.Space]:
        """The observation and action spaces of ``n`` envs (``spaces``: their observation spaces)."""
        if isinstance(self.mode, tuple):
            observation_space = self.mode[0]
        elif self.mode == "same":
            observation_space = batch_space(self.single_observation_space, n)
        else:
            observation_space = batch_differing_spaces(spaces)
        return observation_space, batch_space(self.single_action_space, n)

    def buffer(self, n: int, shared_memory: bool | None, ctx: Any) -> tuple[Any, Any]:
        """The observations of ``n`` envs: ``(shared memory or None, the batch over it)``.

        Args:
            shared_memory: True: shared memory, as asked; False: the pipes;
                None: shared memory where the space allows it, else the pipes.

        Raises:
            TypeError: Shared memory was asked for and the space has a dynamic
                shape (Gymnasium's error and message, as AsyncVectorEnv raises).
            ConfigError: Shared memory was asked for and the space is a
                custom one (a ``ValueError``, as AsyncVectorEnv raises).
        """
        space = self.single_observation_space
        if shared_memory is False:
            return None, create_empty_array(space, n, fn=np.zeros)
        try:
            mem = create_shared_memory(space, n, ctx=ctx)
        except (CustomSpaceError, TypeError) as exc:  # custom; dynamic shapes
            if shared_memory is None:  # not asked for: the pipes hold any space
                return None, create_empty_array(space, n, fn=np.zeros)
            if isinstance(exc, TypeError):
                raise  # "... has a dynamic shape so its not possible to make a static shared memory."
            raise ConfigError(
                f"the observation space {space} cannot go through shared memory; pass "
                "shared_memory=False, or leave it out (observations then go through the "
                "workers' pipes)"
            ) from exc
        return mem, read_from_shared_memory(space, mem, n)


def check_render_mode(env: gym.Env, index: int) -> None:
    """Refuse an env that does not render one ``rgb_array`` frame at a time."""
    if env.render_mode == "rgb_array_list":
        raise EnvError(
            f"env {index} has render_mode='rgb_array_list'; rlcapture takes each frame "
            "as it is rendered: make the env with render_mode='rgb_array' instead"
        )
    if env.render_mode != "rgb_array":
        raise EnvError(
            f"env {index} has render_mode={env.render_mode!r}; rlcapture records "
            "envs made with render_mode='rgb_array'"
        )


def reset_seeds(
    seed: int | Sequence[int | None] | None, n: int, planned: bool = False
) -> list[int | None]:
    """One seed per env: ``seed + i`` for env i, or one each from a list (None: unseeded).

    Args:
        seed: What ``reset(seed=...)`` was given.
        n: Envs.
        planned: The envs take their seeds from a seed plan: any seed is refused.
    """
    if seed is None:
        seeds: list[int | None] = [None] * n
    elif isinstance(seed, (int, np.integer)):
        seeds = [int(seed) + i for i in range(n)]
    else:
        seeds = list(seed)
        if len(seeds) != n:
            raise ConfigError(f"got {len(seeds)} seeds for {n} envs")
    if planned and any(s is not None for s in seeds):
        raise ConfigError(
            "this vector env takes its seeds from episode_seeds; reset it without a seed"
        )
    return seeds


def check_mask(mask: Any, n: int) -> np.ndarray:
    """``options["reset_mask"]``, checked as AsyncVectorEnv checks it."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"`options['reset_mask']` must be a numpy array, got {type(mask)}")
    if mask.shape != (n,):
        raise ValueError(f"`options['reset_mask']` must have shape `({n},)`, got {mask.shape}")
    if mask.dtype != np.bool_:
        raise TypeError(f"`options['reset_mask']` must have `dtype=np.bool_`, got {mask.dtype}")
    if not np.any(mask):
        raise ValueError(
            "`options['reset_mask']` must contain a boolean array with at least one True "
            f"value, got reset_mask={mask}"
        )
    return mask


def split_actions(action_space: gym.Space, actions: Any, n: int) -> list[Any]:
    """A batch of actions as one action per env.

    Raises:
        BatchError: ``actions`` is not a batch (sending nothing would leave
            the wait for replies hanging).
        ConfigError: It holds another number of actions than ``n``.
    """
    if (
        not hasattr(actions, "__getitem__")
        or isinstance(actions, np.generic)
        or (isinstance(actions, np.ndarray) and actions.ndim == 0)
    ):
        raise BatchError(
            f"actions must be a batch of {n} actions (an array or a list), "
            f"got {type(actions).__name__}"
        )
    if isinstance(actions, (np.ndarray, list)) and len(actions) != n:
        raise ConfigError(f"got {len(actions)} actions for {n} envs")
    # Split as AsyncVectorEnv does, by the batched space: right for
    # every space (Dict, nested Tuple, Text, OneOf, Graph, custom).
    split = list(iterate(action_space, actions))
    if len(split) != n:
        raise ConfigError(f"got {len(split)} actions for {n} envs")
    return split
