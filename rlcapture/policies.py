"""What drives an evaluation: a policy named on the command line, and each env's share of episodes.

Used by the ``rlcapture`` command, ``rlcapture bench`` and the Stable-Baselines3
adapter. It sits under all three (it imports none of them), so none of them
has to import another for these: a saved SB3 model is loaded here, with SB3
imported only when such a policy is asked for.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.vector.utils import concatenate, create_empty_array

from ._backend.seedplan import policy_seed
from .envs import import_object
from .errors import ConfigError

__all__ = [
    "EpisodeRandomPolicy",
    "RandomPolicy",
    "SB3Policy",
    "allocate_episodes",
    "load_policy",
    "load_sb3_model",
    "load_sb3_policy",
    "require_sb3",
]

_INSTALL = "stable-baselines3 is not installed: pip install 'rlcapture[sb3]'"


def allocate_episodes(total: int, num_envs: int) -> list[int]:
    """Split ``total`` episodes over envs up front (as SB3's ``evaluate_policy``).

    Fixing each env's share before the run keeps short episodes from being
    over-represented, which happens when the first K episodes to finish are kept.
    """
    return [(total + i) // num_envs for i in range(num_envs)]


class RandomPolicy:
    """Samples the action space; seeded, so the same seed gives the same run."""

    def __init__(self, action_space: Any, seed: int | None) -> None:
        self.space = action_space
        self.space.seed(seed)

    def __call__(self, obs: Any) -> Any:
        return self.space.sample()


class EpisodeRandomPolicy:
    """A random policy whose actions in an episode depend only on that episode's seed.

    For a vector env with a seed plan (``episode_seeds``): one sampler per env,
    reseeded (with :func:`~rlcapture._backend.seedplan.policy_seed` of the
    episode's seed) whenever that env starts an episode of the plan. So the
    episode with seed ``s`` gets the same actions whichever env runs it and
    however many run beside it, and ``rlcapture replay`` can draw them again
    (:meth:`sampler`). Episodes beyond the plan sample on from the last seed.
    """

    def __init__(self, envs: Any) -> None:
        if getattr(envs, "episode_seeds", None) is None:
            raise ConfigError("EpisodeRandomPolicy needs a vector env made with episode_seeds")
        self.envs = envs
        self.space = envs.single_action_space
        n = envs.num_envs
        self.samplers = [deepcopy(self.space) for _ in range(n)]
        self.seen = np.full(n, -2, dtype=np.int64)

    @staticmethod
    def sampler(space: Any, seed: int) -> Any:
        """A copy of ``space`` seeded for the episode reset with ``seed``."""
        sampler = deepcopy(space)
        sampler.seed(policy_seed(seed))
        return sampler

    def __call__(self, obs: Any) -> Any:
        now = self.envs.seed_indices()
        seeds = self.envs.episode_seeds
        for i in np.flatnonzero(now != self.seen):
            if now[i] >= 0:
                self.samplers[i].seed(policy_seed(seeds[now[i]]))
        self.seen = now
        items = [s.sample() for s in self.samplers]
        return concatenate(self.space, items, create_empty_array(self.space, len(items)))


class SB3Policy:
    """A saved Stable-Baselines3 model: ``model.predict`` on the batch of observations."""

    def __init__(self, model: Any, deterministic: bool = True) -> None:
        self.model = model
        self.deterministic = deterministic

    def __call__(self, obs: Any) -> Any:
        actions, _ = self.model.predict(obs, deterministic=self.deterministic)
        return actions


def require_sb3(module: str = "stable_baselines3") -> Any:
    """Import an SB3 module, or raise ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{_INSTALL} ({exc})") from exc


def load_sb3_model(algo: str, path: str | os.PathLike[str], device: str = "cpu") -> Any:
    """Load a saved SB3 model: ``algo`` is a class name of SB3 (PPO, A2C, DQN, SAC, TD3, DDPG)
    or of sb3-contrib, or ``module.Class``."""
    if "." in algo:
        module_name, _, name = algo.rpartition(".")
        modules = [module_name]
    else:
        name = algo
        modules = ["stable_baselines3", "sb3_contrib"]
    require_sb3()
    cls = None
    for module_name in modules:
        try:
            cls = getattr(importlib.import_module(module_name), name, None)
        except ImportError:
            continue
        if cls is not None:
            break
    if cls is None or not hasattr(cls, "load"):
        raise ConfigError(f"unknown SB3 algorithm {algo!r} (PPO, A2C, DQN, SAC, TD3, DDPG or module.Class)")
    if not Path(path).is_file():
        raise ConfigError(f"no SB3 model at {str(path)!r}")
    try:
        return cls.load(str(path), device=device)
    except Exception as exc:  # noqa: BLE001 - SB3 raises many kinds for a bad file
        raise ConfigError(f"cannot load {algo} model {str(path)!r}: {type(exc).__name__}: {exc}") from None


def load_sb3_policy(spec: str, deterministic: bool = True) -> SB3Policy:
    """``sb3:ALGO:path.zip`` (ALGO: PPO, A2C, DQN, SAC, TD3, DDPG or module.Class)."""
    _, _, rest = spec.partition(":")
    algo, sep, path = rest.partition(":")
    if not sep or not algo or not path:
        raise ConfigError(f"policy {spec!r}: write sb3:ALGO:path.zip, e.g. sb3:PPO:model.zip")
    try:
        model = load_sb3_model(algo, path)
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    return SB3Policy(model, deterministic)


def load_policy(spec: str, envs: Any, seed: int | None, deterministic: bool = True) -> Callable[[Any], Any]:
    """Make the policy named on the command line.

    Args:
        spec: "random"; "sb3:ALGO:path.zip", a saved Stable-Baselines3 model;
            or "module:callable" naming a function (or object) that maps a
            batch of observations to a batch of actions.
        envs: The vector env the policy acts in (its batched ``action_space``
            is what a random policy samples; with a seed plan, each env's
            episodes are sampled from their own seeds: :class:`EpisodeRandomPolicy`).
        deterministic: For SB3 models: the most likely action (else sampled).
    """
    if spec == "random":
        if getattr(envs, "episode_seeds", None) is not None:
            return EpisodeRandomPolicy(envs)
        return RandomPolicy(envs.action_space, seed)
    if spec.startswith("sb3:"):
        return load_sb3_policy(spec, deterministic)
    if ":" not in spec:
        raise ConfigError(f"unknown policy {spec!r}: use 'random', 'sb3:ALGO:path.zip' or 'module:callable'")
    return import_object(spec, "policy")
