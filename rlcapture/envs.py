"""Making registered envs for recording, with errors that say what to do.

Whatever :func:`gymnasium.make` accepts is accepted here: a plain id
(``CartPole-v1``), a namespaced id registered by a package once it is imported
(``ALE/Pong-v5`` after ``import ale_py``), ``module:EnvName-v0`` (the module is
imported first, as ``gymnasium.make`` does), and :class:`~gymnasium.envs.registration.EnvSpec`
objects. The id is resolved here, in the caller's process, into the
``EnvSpec`` that the workers make: a worker started with ``spawn`` or
``forkserver`` has not imported the package that registered a namespace, and
need not, since the spec names the env's entry point itself.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
from gymnasium import error as gym_error
from gymnasium.envs.registration import EnvSpec

from ._backend.gl_platform import prepare as prepare_gl
from .errors import ConfigError, EnvError, first_line

__all__ = [
    "EnvFactory",
    "EnvId",
    "check_env_id",
    "describe_env_fns",
    "import_env_modules",
    "import_object",
    "error_text",
    "make_env_fn",
    "opengl_hint",
]

#: What names an env: an id string or a Gymnasium ``EnvSpec``.
EnvId = str | EnvSpec

#: Namespaces whose registering package is well known, for the hint of an unknown id.
_NAMESPACE_PACKAGES = {"ALE": "ale_py", "MiniGrid": "minigrid", "BabyAI": "minigrid"}


#: What MuJoCo, its Python bindings, PyOpenGL and Gymnasium's MuJoCo renderer say
#: when no OpenGL backend works (no display for GLFW, no EGL, no OSMesa).
_GL_SIGNS = (
    "No OpenGL backend could be imported",  # gymnasium.envs.mujoco.mujoco_rendering
    "gladLoadGL error",  # mujoco.FatalError: a GLFW context without OpenGL
    "OpenGL platform library has not been loaded",  # mujoco.FatalError: GLFW without a display
    "Cannot initialize a EGL device display",  # mujoco.egl
    "MUJOCO_GL",  # an invalid MUJOCO_GL value
    "MUJOCO_EGL_DEVICE_ID",
)
_GL_LIBRARY_SIGNS = ("Unable to load OpenGL library", "Unable to load EGL library", "OSMesa")


def opengl_hint(text: str) -> str | None:
    """What to do when MuJoCo cannot render for want of an OpenGL backend, or None.

    Args:
        text: An error's message and traceback (the causes included): a
            missing EGL can surface as "MuJoCo is not installed" from
            Gymnasium, with the real reason only in the cause.
    """
    found = any(sign in text for sign in _GL_SIGNS) or (
        "mujoco" in text.lower() and any(sign in text for sign in _GL_LIBRARY_SIGNS)
    )
    if not found:
        return None
    return (
        "MuJoCo found no OpenGL platform to render with (no display here, and neither EGL nor "
        "OSMesa loads); install EGL (Debian/Ubuntu: apt install libegl1 libegl-mesa0 "
        "libgl1-mesa-dri) or OSMesa (apt install libosmesa6) and rlcapture picks it, or name "
        "one: MUJOCO_GL=egl, or MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa"
    )


def error_text(exc: BaseException) -> str:
    """An exception's message and traceback, with its causes, as one text to search."""
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _import_module(name: str, what: str) -> Any:
    """Import ``name`` (the current folder importable, as with ``python -m``).

    Raises:
        EnvError: The module is missing or raised while importing, in one line.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    # Before an env package is imported: dm_control (through shimmy) picks its
    # OpenGL platform when it is imported, and forked workers inherit the pick.
    prepare_gl()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or name
        if missing == name or name.startswith(missing + "."):
            raise EnvError(
                f"cannot import {what} {name!r}: no module named {missing!r}; "
                "install the package that provides it, or check the name"
            ) from None
        raise EnvError(
            f"importing {what} {name!r} failed: it needs the module {missing!r}, "
            "which is not installed"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed to import
        raise EnvError(
            f"importing {what} {name!r} failed: {type(exc).__name__}: {first_line(exc)}"
        ) from None


def import_env_modules(modules: Sequence[str]) -> None:
    """Import modules that register envs (``--import MODULE``), before an id is resolved.

    Raises:
        EnvError: A module is missing or failed to import (one line each).
    """
    for name in modules:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a module to import must be a non-empty name, got {name!r}")
        _import_module(name.strip(), "env module")


def _namespace_hint(env_id: str) -> str:
    namespace = env_id.partition("/")[0] if "/" in env_id else ""
    if not namespace:
        return ""
    package = _NAMESPACE_PACKAGES.get(namespace, "PACKAGE")
    return (
        f"; namespace {namespace!r} is registered by importing its package: "
        f"--import {package} (Python: import {package}), or write {package}:{env_id}"
    )


def _resolve(env_id: EnvId) -> EnvSpec:
    """The registered spec of ``env_id``, importing ``module:`` first as ``gymnasium.make`` does."""
    if isinstance(env_id, EnvSpec):
        return env_id
    if not isinstance(env_id, str) or not env_id.strip():
        raise EnvError(f"env id must be a non-empty string or an EnvSpec, got {env_id!r}")
    name = env_id
    if ":" in env_id:
        module, _, name = env_id.partition(":")
        if not module or not name or ":" in name:
            raise EnvError(f"env id {env_id!r}: write ENV_ID or MODULE:ENV_ID (one colon)")
        _import_module(module, "env module")
    try:
        return gym.spec(name)
    except gym_error.NamespaceNotFound:
        raise EnvError(f"unknown env id {env_id!r}{_namespace_hint(name)}") from None
    except (gym_error.NameNotFound, gym_error.VersionNotFound) as exc:
        raise EnvError(
            f"unknown env id {env_id!r} ({first_line(exc)}); list the registered ids with "
            "python -c 'import gymnasium; gymnasium.pprint_registry()'"
        ) from None
    except gym_error.Error as exc:
        raise EnvError(f"env id {env_id!r}: {first_line(exc)}") from None


def _label(env_id: EnvId) -> str:
    return env_id.id if isinstance(env_id, EnvSpec) else env_id


def check_env_id(env_id: EnvId) -> EnvSpec:
    """Check that ``env_id`` is registered, importable and renders to an array.

    Returns:
        Its :class:`~gymnasium.envs.registration.EnvSpec`.

    Raises:
        EnvError: Naming the missing piece (an unknown id or namespace, a
            module that does not import, a missing extra, an env without
            ``rgb_array`` rendering).
    """
    spec = _resolve(env_id)
    label = _label(env_id)
    entry = spec.entry_point
    if entry is None:
        raise EnvError(f"env {label!r} has no entry point; it cannot be made")
    # Before the env's module is imported: dm_control picks its OpenGL
    # platform then, and forked workers inherit the pick.
    prepare_gl()
    try:
        creator = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
    except EnvError:
        raise
    except Exception as exc:  # noqa: BLE001 - the env's module raised while importing
        hint = opengl_hint(error_text(exc))
        if hint:
            message = f"env {label!r} cannot be imported: {hint}"
        elif isinstance(exc, gym_error.DependencyNotInstalled):
            message = f"env {label!r} needs a package that is not installed: {first_line(exc)}"
        elif isinstance(exc, ImportError):
            message = (
                f"env {label!r} cannot be imported ({first_line(exc)}); install the package "
                "that provides it"
            )
        else:
            message = f"importing env {label!r} ({entry}) failed: {type(exc).__name__}: {first_line(exc)}"
        raise EnvError(message) from None
    metadata = getattr(creator, "metadata", None)
    modes = metadata.get("render_modes") if isinstance(metadata, dict) else None
    if modes is not None and "rgb_array" not in modes:
        raise EnvError(
            f"env {label!r} cannot render to an array (its render modes are {modes}); "
            "rlcapture records envs that support render_mode='rgb_array'"
        )
    return spec


class EnvFactory:
    """A picklable function that makes one env with ``render_mode="rgb_array"``.

    It makes the resolved :class:`EnvSpec` (so a spawned worker needs no
    registration), after importing ``imports`` (modules the env may need
    besides its entry point, as ``--import`` names them).
    """

    def __init__(
        self,
        env_id: EnvId,
        env_kwargs: dict[str, Any] | None = None,
        max_episode_steps: int | None = None,
        *,
        spec: EnvSpec | None = None,
        imports: Sequence[str] = (),
    ) -> None:
        self.env_id = env_id
        self.spec = spec
        self.env_kwargs = dict(env_kwargs or {})
        self.max_episode_steps = max_episode_steps
        self.imports = tuple(imports)

    def __call__(self) -> gym.Env:
        for name in self.imports:
            if name not in sys.modules:
                _import_module(name, "env module")
        kwargs = dict(self.env_kwargs)
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        target = self.spec if self.spec is not None else self.env_id
        prepare_gl()  # where this process renders it (a worker, replay): EGL or OSMesa if headless
        try:
            return gym.make(target, render_mode="rgb_array", **kwargs)
        except gym_error.DependencyNotInstalled as exc:
            raise EnvError(
                f"env {_label(self.env_id)!r} needs a package that is not installed: "
                f"{first_line(exc)}"
            ) from None
        except TypeError as exc:
            if self.env_kwargs and "argument" in str(exc):
                raise EnvError(
                    f"env {_label(self.env_id)!r} does not take the env kwargs "
                    f"{sorted(self.env_kwargs)}: {first_line(exc)}"
                ) from None
            raise

    def __repr__(self) -> str:
        return f"EnvFactory({_label(self.env_id)!r})"


def make_env_fn(
    env_id: EnvId,
    *,
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    imports: Sequence[str] = (),
) -> EnvFactory:
    """Check ``env_id`` here, and return a function that makes it in a worker.

    Args:
        env_id: What :func:`gymnasium.make` takes: ``"CartPole-v1"``,
            ``"ALE/Pong-v5"`` (once its package is imported),
            ``"ale_py:ALE/Pong-v5"`` or an ``EnvSpec``.
        env_kwargs: Keyword arguments of the env (``{"continuous": True}``).
        max_episode_steps: Truncate episodes after this many steps.
        imports: Modules to import first (they register envs), here and in
            each worker.

    Raises:
        EnvError: The id is unknown, its module does not import, or the env
            cannot render to an array.
        ConfigError: ``env_kwargs`` or ``max_episode_steps`` are malformed.
    """
    if max_episode_steps is not None and not (
        isinstance(max_episode_steps, int)
        and not isinstance(max_episode_steps, bool)
        and 1 <= max_episode_steps <= 10**9
    ):
        raise ConfigError(f"max_episode_steps must be a positive integer, got {max_episode_steps!r}")
    if env_kwargs is not None and not (
        isinstance(env_kwargs, dict) and all(isinstance(k, str) for k in env_kwargs)
    ):
        raise ConfigError(f"env_kwargs must be a dict of keyword arguments, got {env_kwargs!r}")
    kwargs = dict(env_kwargs or {})
    mode = kwargs.pop("render_mode", "rgb_array")
    if mode != "rgb_array":
        raise ConfigError(
            f"env_kwargs sets render_mode={mode!r}; rlcapture makes envs with "
            "render_mode='rgb_array' (leave it out)"
        )
    import_env_modules(imports)
    spec = check_env_id(env_id)
    return EnvFactory(env_id, kwargs, max_episode_steps, spec=spec, imports=imports)


def _named(fn: Any) -> EnvFactory | None:
    """The :class:`EnvFactory` behind ``fn`` (through ``__wrapped__``, as SB3's Monitor adds), or None."""
    for _ in range(8):
        if isinstance(fn, EnvFactory):
            return fn
        fn = getattr(fn, "__wrapped__", None)
        if fn is None:
            return None
    return None


def describe_env_fns(env_fns: Sequence[Any]) -> dict[str, Any]:
    """What ``run.json`` says of the env, so that ``rlcapture replay`` can make it again.

    The env is named when every function makes the same registered env (an id,
    an ``EnvSpec`` or ``module:Env``, as :func:`make_env_fn` takes them); any
    other function is only described (``env_factory``, its repr), and replay
    then needs to be told how to make it.

    Returns:
        ``env`` (the id, or None), ``env_factory``, ``env_kwargs``,
        ``max_episode_steps`` and ``imports``.
    """
    factories = [_named(fn) for fn in env_fns]
    named = [
        {
            "env": _label(f.env_id) if _registered(f.env_id) else None,
            "env_kwargs": dict(f.env_kwargs),
            "max_episode_steps": f.max_episode_steps,
            "imports": list(f.imports),
        }
        for f in factories
        if f is not None
    ]
    same = named and len(named) == len(env_fns) and all(n == named[0] for n in named)
    if same and named[0]["env"] is not None:
        return {"env_factory": None, **named[0]}
    distinct = {id(fn): fn for fn in env_fns}
    return {
        "env": None,
        "env_factory": repr(env_fns[0]) if len(distinct) == 1 else f"{len(distinct)} env functions",
        "env_kwargs": {},
        "max_episode_steps": None,
        "imports": [],
    }


def _registered(env_id: EnvId) -> bool:
    """Whether ``env_id`` names an env that ``gymnasium.make`` finds again by its id."""
    if isinstance(env_id, str):
        return True  # resolved when the factory was made (module:Env imports its module again)
    known = gym.registry.get(env_id.id)
    return known is not None and known.entry_point == env_id.entry_point


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
