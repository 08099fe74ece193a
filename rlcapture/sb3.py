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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from ._backend.manifest import Manifest, read_manifest
from ._backend.uploader import Uploader
from ._backend.uploads import missing_package, parse_tracker
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
    """A :class:`CaptureVectorEnv` as an SB3 ``VecEnv`` (same-step autoreset).

    Done envs are reset on the same step, with the last observation in
    ``infos[i]["terminal_observation"]`` and ``infos[i]["episode"]``
    (``r``, ``l``, ``t``) as SB3's ``Monitor`` gives it, so
    ``evaluate_policy`` reads the same returns as the manifest holds.

    Args:
        venv: A :class:`CaptureVectorEnv` made with
            ``autoreset_mode=AutoresetMode.SAME_STEP`` (see :func:`make_sb3_vec`).
            Closing this closes it.
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
        self._actions: Any = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    @property
    def recorder(self) -> Recorder | None:
        return self.venv.recorder

    def reset(self) -> Any:
        seeds = list(self._seeds)
        seed: Any = None if all(s is None for s in seeds) else seeds
        options = next((o for o in self._options if o), None)
        obs, infos = self.venv.reset(seed=seed, options=options)
        self.reset_infos = [_per_env(infos, i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(actions)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, rewards, terminated, truncated, infos = self.venv.step_wait()
        dones = terminated | truncated
        out: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            info = _per_env(infos, i)
            info.pop("final_info", None)
            final = info.pop("final_obs", None)
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if dones[i]:
                if final is not None:
                    info["terminal_observation"] = final
                if "episode" in info:
                    ep = info["episode"]
                    info["episode"] = {"r": float(ep["r"]), "l": int(ep["l"]), "t": float(ep["t"])}
            out.append(info)
        return obs, rewards.astype(np.float32), dones, out

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        idx = [int(i) for i in self._get_indices(indices)]
        found = self.venv.call_at(idx, "has_wrapper_attr", attr_name)
        if not all(found):
            raise AttributeError(f"the envs have no attribute {attr_name!r}")
        return list(self.venv.call_at(idx, "get_wrapper_attr", attr_name))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        idx = [int(i) for i in self._get_indices(indices)]
        self.venv.call_at(idx, "set_wrapper_attr", attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        idx = [int(i) for i in self._get_indices(indices)]
        return list(self.venv.call_at(idx, method_name, *method_args, **method_kwargs))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        # The envs live in worker processes; what Monitor gives (info["episode"])
        # is given here, so they count as Monitor-wrapped. Other wrappers
        # are not looked up.
        wrapped = isinstance(wrapper_class, type) and issubclass(Monitor, wrapper_class)
        return [wrapped for _ in self._get_indices(indices)]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seeds for the next reset: env i gets ``seed + i``."""
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        self._seeds = [seed + i for i in range(self.num_envs)]
        return self._seeds

    def get_images(self) -> Sequence[np.ndarray | None]:
        return list(self.venv.call("render"))

    def __repr__(self) -> str:
        return f"SB3VecEnv({self.venv!r})"


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
        env: An env id, or a function making one env with
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
        env: str | Callable[[], gym.Env],
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
        self.env_fn = make_env_fn(env) if isinstance(env, str) else env
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
            target = Path(self.out) / f"step-{steps}"
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
            self._send_round(Path(where) / "episodes.jsonl", steps)
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
        writer = Manifest(str(manifest))
        try:
            for r in read_manifest(manifest):
                line = {"env": r["env"], "episode": r["episode"], "timestep": timestep}
                writer.write(line, update=True)
        finally:
            writer.close()
        assert self._uploader is not None
        self._uploader.follow(manifest, {"timestep": timestep})


def make_sb3_vec(
    env: str | Callable[[], gym.Env],
    num_envs: int,
    out: str | os.PathLike[str] | Recorder,
    *,
    n_eval_episodes: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    config: Any = None,
    **options: Any,
) -> SB3VecEnv:
    """A recording SB3 ``VecEnv`` of ``num_envs`` envs.

    Args:
        env: An env id or a function making one env (``render_mode="rgb_array"``).
        n_eval_episodes: Split this many episodes over the envs as
            ``evaluate_policy`` does: exactly those are recorded and written to
            the manifest (else every episode is, including ones an evaluation
            leaves running).
        config: A recording configuration passed to :class:`CaptureVectorEnv`
            (None: its defaults and ``**options``).
        **options: Passed to :class:`CaptureVectorEnv` and its :class:`Recorder`
            as keywords.
    """
    kwargs = _with_config(config, options)
    fn = (
        make_env_fn(env, env_kwargs=env_kwargs, max_episode_steps=max_episode_steps)
        if isinstance(env, str)
        else env
    )
    if n_eval_episodes is not None:
        kwargs.setdefault("episodes_per_env", allocate_episodes(n_eval_episodes, num_envs))
    venv = CaptureVectorEnv([fn] * num_envs, out, autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
    try:
        return SB3VecEnv(venv)
    except BaseException:
        venv.close()
        raise
