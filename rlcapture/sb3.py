"""Stable-Baselines3 support: a recording ``VecEnv`` and a callback that records during training.

:class:`SB3VecEnv` presents a :class:`~rlcapture.CaptureVectorEnv` as an SB3
``VecEnv``, so ``evaluate_policy`` and ``EvalCallback`` work unchanged and every
episode they run gets its own video and manifest line. :class:`RecordCallback`
records an evaluation every N timesteps of ``model.learn()``.

This module imports SB3 (``pip install "rlcapture[sb3]"``); ``import rlcapture``
does not import this module, so the engine works without SB3.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import concatenate, create_empty_array

from ._backend.manifest import ManifestWriter, read_manifest
from ._backend.run_folder import RunFolder
from ._backend.uploads import Uploader, missing_package, parse_tracker
from .config import RecordConfig
from .envs import make_env_fn
from .errors import ConfigError
from .policies import allocate_episodes, load_sb3_model, require_sb3
from .recorder import Recorder
from .vector import CaptureVectorEnv

try:
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import VecEnv
except ImportError as exc:
    raise ConfigError(
        f'rlcapture.sb3 needs stable-baselines3: pip install "rlcapture[sb3]" ({exc})'
    ) from None

__all__ = ["RecordCallback", "SB3VecEnv", "load_sb3_model", "make_sb3_vec", "require_sb3"]


def _with_config(config: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The keywords for :class:`CaptureVectorEnv`: ``options``, and ``config`` if given."""
    return dict(options) if config is None else {**options, "config": config}


def _per_env(infos: dict[str, Any], i: int) -> dict[str, Any]:
    """Env ``i``'s part of a Gymnasium vector info (dict of arrays with ``_key`` masks)."""
    out: dict[str, Any] = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get("_" + key)
        if mask is not None and not mask[i]:
            continue
        if isinstance(value, dict):
            out[key] = _per_env(value, i)
        else:
            try:
                out[key] = value[i]
            except (TypeError, IndexError, KeyError):
                out[key] = value
    return out


class SB3VecEnv(VecEnv):  # type: ignore[misc]
    """A :class:`CaptureVectorEnv` as an SB3 ``VecEnv``: SB3's ``SubprocVecEnv``, recording.

    It answers as ``SubprocVecEnv`` does, so SB3 code (``evaluate_policy``,
    ``EvalCallback``, ``model.learn``, VecEnv wrappers) runs unchanged:
    done envs are reset on the same step, with the step's own info, the last
    observation in ``infos[i]["terminal_observation"]`` and the reset's info
    in ``reset_infos[i]``; infos are the env's (``info["episode"]`` only where
    the env has a ``Monitor``, as :func:`make_sb3_vec` adds); ``get_attr``
    and ``env_method`` look through the wrappers, ``set_attr`` sets on the
    outermost one; ``env_is_wrapped`` asks each env; seeds and options
    (one per env) apply at the next reset.

    Args:
        venv: A :class:`CaptureVectorEnv` made with
            ``autoreset_mode=AutoresetMode.SAME_STEP`` (see :func:`make_sb3_vec`
            and :meth:`from_env_fns`). Closing this closes it.
    """

    def __init__(self, venv: CaptureVectorEnv) -> None:
        if venv.autoreset_mode != AutoresetMode.SAME_STEP:
            raise ConfigError(
                "SB3VecEnv needs a CaptureVectorEnv made with "
                "autoreset_mode=AutoresetMode.SAME_STEP (SB3 resets on the same step)"
            )
        if venv.on_error != "raise":
            # evaluate_policy and EvalCallback step until every env has
            # finished its share of episodes; an env taken out never would,
            # and they would step for ever.
            raise ConfigError(
                "SB3VecEnv needs on_error='raise': SB3's evaluate_policy waits for every "
                "env to finish its episodes, which an env taken out never does"
            )
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    @classmethod
    def from_env_fns(
        cls,
        env_fns: Sequence[Callable[[], gym.Env]],
        out: str | os.PathLike[str] | Recorder,
        *,
        start_method: str | None = None,
        config: Any = None,
        **options: Any,
    ) -> SB3VecEnv:
        """``SubprocVecEnv(env_fns, start_method)``'s arguments, and where to record.

        Args:
            env_fns: One function per env, each making it with ``render_mode="rgb_array"``.
            out: The output folder, or a running :class:`Recorder`.
            start_method: ``multiprocessing`` start method of the workers.
            config: A recording configuration (None: defaults and ``**options``).
            **options: Passed to :class:`CaptureVectorEnv`.
        """
        kwargs = _with_config(config, options)
        venv = CaptureVectorEnv(
            list(env_fns), out, autoreset_mode=AutoresetMode.SAME_STEP, context=start_method, **kwargs
        )
        try:
            return cls(venv)
        except BaseException:
            venv.close()
            raise

    @property
    def recorder(self) -> Recorder | None:
        return self.venv.recorder

    def _indices(self, indices: Any) -> list[int]:
        """SB3's indices (None, an int, a sequence; negative from the end) as a list."""
        n = self.num_envs
        out = []
        for i in self._get_indices(indices):
            i = int(i)
            if -n <= i < 0:
                i += n
            out.append(i)
        return out

    def reset(self) -> Any:
        seeds = list(self._seeds)
        seed: Any = None if all(s is None for s in seeds) else seeds
        options = [dict(o) if o else None for o in self._options]
        if all(_same(o, options[0]) for o in options):
            obs, infos = self.venv.reset(seed=seed, options=options[0])
            self.reset_infos = [_per_env(infos, i) for i in range(self.num_envs)]
        else:  # different options per env: one reset per env, the others kept
            infos_each: list[dict[str, Any]] = []
            for i, opts in enumerate(options):
                mask = np.arange(self.num_envs) == i
                obs, infos = self.venv.reset(seed=seed, options={**(opts or {}), "reset_mask": mask})
                infos_each.append(_per_env(infos, i))
            self.reset_infos = infos_each
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: Any) -> None:
        if not isinstance(actions, np.ndarray):
            # A list of per-env actions (SubprocVecEnv zips them with its envs):
            # batched as the vector env's action space has them.
            space = self.venv.single_action_space
            actions = concatenate(space, list(actions), create_empty_array(space, self.num_envs))
        self.venv.step_async(actions)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, rewards, terminated, truncated, infos = self.venv.step_wait()
        dones = terminated | truncated
        out: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            info = _per_env(infos, i)
            final = info.pop("final_obs", None)
            final_info = info.pop("final_info", None)
            if dones[i] and final_info is not None:
                # Same-step autoreset: the step's info is final_info; what
                # else is there came from the reset.
                self.reset_infos[i] = {k: v for k, v in info.items() if k not in final_info}
                info = dict(final_info)
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if dones[i] and final is not None:
                info["terminal_observation"] = final
            out.append(info)
        return obs, rewards.copy(), dones, out

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        # Through the wrappers, as SubprocVecEnv (env.get_wrapper_attr); an
        # attribute that is callable is returned, not called.
        return list(self.venv.call_at(self._indices(indices), "get_wrapper_attr", attr_name))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        # On the outermost wrapper, as SubprocVecEnv and DummyVecEnv (setattr(env, ...)).
        self.venv.call_at(self._indices(indices), "__setattr__", attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        return list(self.venv.call_at(self._indices(indices), method_name, *method_args, **method_kwargs))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return list(self.venv.env_is_wrapped(wrapper_class, indices=self._indices(indices)))

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            warnings.warn(
                f"The render mode is {self.render_mode}, but this method assumes it is `rgb_array` "
                "to obtain images.",
                stacklevel=2,
            )
            return [None] * self.num_envs
        return list(self.venv.call("render"))

    def __repr__(self) -> str:
        return f"SB3VecEnv({self.venv!r})"


class _Monitored:
    """An env function whose env is wrapped in SB3's ``Monitor`` (unless it already is).

    As SB3's ``make_vec_env`` does: ``info["episode"]`` then holds the true
    return, ``evaluate_policy`` reads it (and warns about nothing), and
    ``model.learn`` logs ``rollout/ep_rew_mean``. Picklable when ``fn`` is.
    """

    def __init__(self, fn: Callable[[], gym.Env]) -> None:
        self.fn = fn
        self.__wrapped__ = fn  # run.json names the env behind it (Monitor changes no step)

    def __call__(self) -> gym.Env:
        from stable_baselines3.common.env_util import is_wrapped

        env = self.fn()
        return env if is_wrapped(env, Monitor) else Monitor(env)

    def __repr__(self) -> str:
        return f"Monitored({self.fn!r})"


def _same(a: Any, b: Any) -> bool:
    """Whether two reset options are the same (False where comparing them fails)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays and other values that do not compare to a bool
        return False


class RecordCallback(BaseCallback):  # type: ignore[misc]
    """Every ``every`` timesteps of ``learn()``, record ``episodes`` evaluation episodes.

    Each round makes a fresh :class:`CaptureVectorEnv` (``num_envs`` envs,
    the episodes split up front as ``evaluate_policy`` does), runs
    ``evaluate_policy`` through :class:`SB3VecEnv` and logs
    ``rlcapture/mean_return`` and ``rlcapture/mean_length`` to SB3's logger.

    With trackers (``loggers=["wandb:proj", ...]`` in ``options`` or
    ``config``) and round folders, one uploader serves the whole training
    (one tracker run, not one per round): each round's episodes go to the
    trackers at the training timestep of the round, which each round's
    manifest records too (``timestep``); what could not be sent is named in
    :attr:`uploads` when training ends. With a shared :class:`Recorder`, give
    it the loggers instead (its episodes are then logged against env steps).

    Args:
        env: An env id (or EnvSpec), or a function making one env with
            ``render_mode="rgb_array"``.
        out: A folder: each round records into ``out/step-<T>/`` (its own
            manifest). Or a running :class:`Recorder` shared by every round:
            one manifest, episode indices going on per env from round to round.
        every: Timesteps between rounds.
        episodes: Episodes per round.
        num_envs: Parallel envs of a round.
        deterministic: Passed to ``evaluate_policy``.
        seed: Seed of every round's first reset (None: unseeded).
        at_start: Also record before training.
        config: A recording configuration passed to every round's
            :class:`CaptureVectorEnv` (None: its defaults and ``**options``).
        **options: Passed to :class:`CaptureVectorEnv` as keywords
            (``record``, ``fps``, ``codec``...); ``overwrite`` is on for
            round folders.
    """

    def __init__(
        self,
        env: str | EnvSpec | Callable[[], gym.Env],
        out: str | os.PathLike[str] | Recorder,
        *,
        every: int = 10_000,
        episodes: int = 4,
        num_envs: int = 2,
        deterministic: bool = True,
        seed: int | None = 0,
        at_start: bool = False,
        verbose: int = 0,
        config: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(verbose)
        if not (isinstance(every, int) and every >= 1):
            raise ConfigError(f"every must be a positive number of timesteps, got {every!r}")
        if not (isinstance(episodes, int) and episodes >= 1):
            raise ConfigError(f"episodes must be a positive integer, got {episodes!r}")
        if not (isinstance(num_envs, int) and num_envs >= 1):
            raise ConfigError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.env_fn = _Monitored(make_env_fn(env) if isinstance(env, (str, EnvSpec)) else env)
        self.out = out
        self.every = every
        self.episodes = episodes
        self.n_envs = num_envs
        self.deterministic = deterministic
        self.seed = seed
        self.at_start = at_start
        self.config = config
        self.capture_options = options
        self.history: list[dict[str, Any]] = []
        self._next = every
        # Trackers: one uploader for every round (see the class docstring).
        own = {k: v for k, v in options.items() if k in RecordConfig.option_names()}
        checked = RecordConfig(**own) if config is None else config.replace(**own)
        for spec in checked.loggers:
            missing = missing_package(parse_tracker(spec))
            if missing:
                raise ConfigError(missing)
        self.loggers = checked.loggers if not isinstance(out, Recorder) else ()
        self._upload_settings = (checked.upload_attempts, checked.upload_timeout)
        self._uploader: Uploader | None = None
        #: When training ends with trackers: what each took, and what it missed.
        self.uploads: dict[str, Any] = {}

    def _on_training_start(self) -> None:
        self._next = self.num_timesteps + self.every
        self._start_uploads()
        if self.at_start:
            self.record()

    def _start_uploads(self) -> None:
        if self.loggers and self._uploader is None:
            root = Path(self.out).resolve()  # type: ignore[arg-type]
            root.mkdir(parents=True, exist_ok=True)
            self._uploader = Uploader(self.loggers, str(root), root.name, *self._upload_settings)

    def _on_training_end(self) -> None:
        uploader, self._uploader = self._uploader, None
        if uploader is not None:
            self.uploads = uploader.finish()
            for line in self.uploads["not_uploaded"]:
                print(f"rlcapture: NOT SENT {line}")

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = self.num_timesteps + self.every
            self.record()
        return True

    def record(self) -> dict[str, Any]:
        """Record one round now; returns (and keeps in ``history``) what it found."""
        steps = int(self.num_timesteps)
        options = _with_config(self.config, self.capture_options)
        if isinstance(self.out, Recorder):
            target: Any = self.out
            where = str(self.out.out)
        else:
            target = RunFolder(self.out).round(steps)  # type: ignore[arg-type]
            where = str(target)
            options.setdefault("overwrite", True)
            if self.loggers:
                options["loggers"] = ()  # the training's uploader sends them
        venv = CaptureVectorEnv(
            [self.env_fn] * self.n_envs,
            target,
            autoreset_mode=AutoresetMode.SAME_STEP,
            episodes_per_env=allocate_episodes(self.episodes, self.n_envs),
            **options,
        )
        env = SB3VecEnv(venv)
        try:
            if not isinstance(self.out, Recorder):  # the round's run.json, for replay
                from . import __version__

                info = {**venv.run_info, "deterministic": self.deterministic, "timestep": steps}
                venv.recorder.folder.write_run_file(info, version=__version__)
            if self.seed is not None:
                env.seed(self.seed)
            returns, lengths = evaluate_policy(
                self.model,
                env,
                n_eval_episodes=self.episodes,
                deterministic=self.deterministic,
                return_episode_rewards=True,
                warn=False,
            )
        finally:
            env.close()
        result = {
            "timesteps": steps,
            "out": where,
            "returns": [float(r) for r in returns],
            "lengths": [int(n) for n in lengths],
            "mean_return": float(np.mean(returns)) if len(returns) else math.nan,
        }
        self.history.append(result)
        if self.loggers and not isinstance(self.out, Recorder):
            self._send_round(RunFolder(where).manifest, steps)
        self.logger.record("rlcapture/mean_return", result["mean_return"])
        self.logger.record("rlcapture/return", result["mean_return"])
        self.logger.record("rlcapture/episodes", len(result["returns"]))
        self.logger.record("rlcapture/mean_length", float(np.mean(lengths)) if len(lengths) else math.nan)
        if self.verbose:
            print(f"rlcapture: {steps} timesteps: mean return {result['mean_return']:.2f} -> {where}")
        return result

    def _send_round(self, manifest: Path, timestep: int) -> None:
        """Note the round's training timestep in its manifest; hand it to the uploader."""
        self._start_uploads()  # record() may be called outside learn()
        writer = ManifestWriter(str(manifest))
        try:
            for r in read_manifest(manifest):
                line = {"env": r["env"], "episode": r["episode"], "timestep": timestep}
                writer.write(line, update=True)
        finally:
            writer.close()
        assert self._uploader is not None
        self._uploader.follow(manifest, {"timestep": timestep})


def make_sb3_vec(
    env: str | EnvSpec | Callable[[], gym.Env],
    num_envs: int,
    out: str | os.PathLike[str] | Recorder,
    *,
    n_eval_episodes: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    monitor: bool = True,
    config: Any = None,
    **options: Any,
) -> SB3VecEnv:
    """A recording SB3 ``VecEnv`` of ``num_envs`` envs.

    Args:
        env: An env id (or EnvSpec) or a function making one env (``render_mode="rgb_array"``).
        n_eval_episodes: Split this many episodes over the envs as
            ``evaluate_policy`` does: exactly those are recorded and written to
            the manifest (else every episode is, including ones an evaluation
            leaves running).
        monitor: Wrap each env in SB3's ``Monitor`` (unless it is), as SB3's
            ``make_vec_env`` does.
        config: A recording configuration passed to :class:`CaptureVectorEnv`
            (None: its defaults and ``**options``).
        **options: Passed to :class:`CaptureVectorEnv` and its :class:`Recorder`
            as keywords.
    """
    kwargs = _with_config(config, options)
    fn = (
        make_env_fn(env, env_kwargs=env_kwargs, max_episode_steps=max_episode_steps)
        if isinstance(env, (str, EnvSpec))
        else env
    )
    if monitor:
        fn = _Monitored(fn)
    if n_eval_episodes is not None:
        kwargs.setdefault("episodes_per_env", allocate_episodes(n_eval_episodes, num_envs))
    venv = CaptureVectorEnv([fn] * num_envs, out, autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
    try:
        return SB3VecEnv(venv)
    except BaseException:
        venv.close()
        raise
