"""Making registered envs for recording, with errors that say what to do."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import gymnasium as gym
from gymnasium import error as gym_error

from .errors import ConfigError, EnvError

__all__ = ["EnvFactory", "make_env_fn", "check_env_id", "import_object"]


def check_env_id(env_id: str) -> None:
    """Check that ``env_id`` is registered, importable and renders to an array.

    Raises:
        EnvError: Naming the missing piece (an unknown id, a missing extra, an
            env without ``rgb_array`` rendering).
    """
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"env id must be a non-empty string, got {env_id!r}")
    try:
        spec = gym.spec(env_id)
    except (gym_error.NameNotFound, gym_error.NamespaceNotFound, gym_error.VersionNotFound) as exc:
        raise EnvError(
            f"unknown env id {env_id!r} ({exc}); list the registered ids with "
            "python -c 'import gymnasium; gymnasium.pprint_registry()'"
        ) from None
    except gym_error.Error as exc:
        raise EnvError(f"env id {env_id!r}: {exc}") from None
    entry = spec.entry_point
    try:
        creator = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
    except gym_error.DependencyNotInstalled as exc:
        raise EnvError(f"env {env_id!r} needs a package that is not installed: {exc}") from None
    except ImportError as exc:
        raise EnvError(
            f"env {env_id!r} cannot be imported ({exc}); install the package that provides it"
        ) from None
    metadata = getattr(creator, "metadata", None)
    modes = metadata.get("render_modes") if isinstance(metadata, dict) else None
    if modes is not None and "rgb_array" not in modes:
        raise EnvError(
            f"env {env_id!r} cannot render to an array (its render modes are {modes}); "
            "rlcapture records envs that support render_mode='rgb_array'"
        )


class EnvFactory:
    """A picklable function that makes one env with ``render_mode="rgb_array"``."""

    def __init__(
        self, env_id: str, env_kwargs: dict[str, Any] | None = None, max_episode_steps: int | None = None
    ) -> None:
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.max_episode_steps = max_episode_steps

    def __call__(self) -> gym.Env:
        kwargs = dict(self.env_kwargs)
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        try:
            return gym.make(self.env_id, render_mode="rgb_array", **kwargs)
        except gym_error.DependencyNotInstalled as exc:
            raise EnvError(f"env {self.env_id!r} needs a package that is not installed: {exc}") from None

    def __repr__(self) -> str:
        return f"EnvFactory({self.env_id!r})"


def make_env_fn(
    env_id: str, *, env_kwargs: dict[str, Any] | None = None, max_episode_steps: int | None = None
) -> EnvFactory:
    """Check ``env_id`` here, and return a function that makes it in a worker."""
    if max_episode_steps is not None and not (
        isinstance(max_episode_steps, int) and 1 <= max_episode_steps <= 10**9
    ):
        raise ConfigError(f"max_episode_steps must be a positive integer, got {max_episode_steps!r}")
    check_env_id(env_id)
    return EnvFactory(env_id, env_kwargs, max_episode_steps)


def import_object(spec: str, what: str) -> Any:
    """Import ``module:attr`` (the current folder importable, as with ``python -m``)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{what} {spec!r} must be written module:callable")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {what} module {module_name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed to import
        raise ConfigError(
            f"importing {what} module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"module {module_name!r} has no {attr!r} (the {what} {spec!r})")
    if not callable(obj):
        raise ConfigError(f"{what} {spec!r} is not callable")
    return obj
