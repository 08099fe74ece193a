"""``rlcapture.evaluate``: run a policy on a list of seeds and record every episode.

The j-th episode of an evaluation resets with ``seeds[j]``, and a random
policy draws its actions from a generator seeded from that seed, whichever env,
worker or encoder shard runs it (a seed plan shared by the workers,
``_backend/seedplan.py``). So the multiset of (seed, return, length) depends
on the seeds and the policy only, not on ``num_envs``: an evaluation can be
split over machines by splitting its seeds, and joined by concatenating the
results. Stable-Baselines3's ``evaluate_policy`` fixes each env's share of
episodes instead, so its results change with the number of envs.

``rlcapture record`` runs through :func:`evaluate`; so can a cluster runner,
one call per share of the seeds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from ._backend.manifest import read_manifest
from ._backend.run_folder import RunFolder, describe_seeds
from ._backend.seedplan import check_seeds
from .config import RecordConfig
from .envs import make_env_fn
from .errors import ConfigError
from .policies import EpisodeRandomPolicy, SB3Policy, load_policy
from .results.stats import Description, describe
from .vector import CaptureVectorEnv

__all__ = ["EpisodeResult", "EvaluationResult", "evaluate", "resolve_policy"]

#: Told after every step: (episodes ended, episodes in all, env steps so far,
#: the lengths of the episodes that ended in this step).
Progress = Callable[[int, int, int, list[int]], None]

#: What a policy may be: None or "random", a spec string ("sb3:PPO:model.zip",
#: "module:callable"), an SB3 model (anything with ``predict``), or a callable
#: mapping a batch of observations to a batch of actions.
PolicyLike = Any


@dataclass(frozen=True)
class EpisodeResult:
    """One episode of an evaluation (a manifest line, the fields an evaluation needs).

    Attributes:
        seed: The seed its env was reset with.
        index: Its position in the evaluation's seeds.
        ret: Its return (the env's rewards summed).
        length: Its steps.
        end: How it ended ("terminated", "truncated", "error", ...).
        env: The env that ran it (depends on scheduling, not on the seed).
        episode: That env's episode number (idem).
        video: Its video, or None (not recorded, or discarded by a keep rule).
    """

    seed: int
    index: int
    ret: float
    length: int
    end: str
    env: int
    episode: int
    video: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (``return`` spelt out, the video as a string)."""
        d = asdict(self)
        d["return"] = d.pop("ret")
        d["video"] = None if self.video is None else str(self.video)
        return d


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` returns: one record per episode of the plan, in seed order.

    Attributes:
        out: The output folder (videos, the manifest, ``run.json``).
        episodes: Per-episode results, ordered by their position in the seeds.
        seeds: The seeds asked for.
        interrupted: Ctrl-C stopped the run early (``episodes`` holds those that ended).
        errors: Envs taken out with ``on_error="continue"``, with their messages.
        recording: What the recorder did (``Recorder.summary``: frames, videos,
            and tracker uploads sent or not).
    """

    out: Path
    episodes: list[EpisodeResult]
    seeds: tuple[int, ...] | range
    interrupted: bool = False
    errors: dict[int, str] = field(default_factory=dict)
    recording: dict[str, Any] = field(default_factory=dict)

    @property
    def returns(self) -> list[float]:
        """The returns of the episodes that finished (terminated or truncated)."""
        return [e.ret for e in self.finished]

    @property
    def lengths(self) -> list[int]:
        return [e.length for e in self.finished]

    @property
    def finished(self) -> list[EpisodeResult]:
        return [e for e in self.episodes if e.end in ("terminated", "truncated")]

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else float("nan")

    def summary(self, threshold: float | None = None) -> Description:
        """Statistics of the finished episodes' returns (mean, std, IQM, 95 % CI)."""
        return describe([self.returns], threshold=threshold)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the folder, the seeds and one dict per episode."""
        return {
            "out": str(self.out),
            "seeds": describe_seeds(self.seeds),
            "interrupted": self.interrupted,
            "errors": {str(k): v for k, v in self.errors.items()},
            "episodes": [e.as_dict() for e in self.episodes],
        }


def resolve_policy(policy: PolicyLike, envs: CaptureVectorEnv, deterministic: bool = True) -> Callable[[Any], Any]:
    """The batch policy ``policy`` names, acting in ``envs``.

    Raises:
        ConfigError: ``policy`` is none of the accepted kinds.
    """
    if policy is None or policy == "random":
        return EpisodeRandomPolicy(envs) if envs.episode_seeds is not None else load_policy("random", envs, None)
    if isinstance(policy, str):
        return load_policy(policy, envs, None, deterministic=deterministic)
    if hasattr(policy, "predict"):  # an SB3 model or policy object
        return SB3Policy(policy, deterministic)
    if callable(policy):
        return policy
    raise ConfigError(
        f"policy must be None (random), a spec string, an SB3 model or a callable, got {type(policy).__name__}"
    )


def _policy_name(policy: PolicyLike) -> str | None:
    if policy is None:
        return "random"
    if isinstance(policy, str):
        return policy
    module, name = getattr(policy, "__module__", None), getattr(policy, "__qualname__", None)
    if module and name and "<" not in name:
        return f"{module}:{name}"  # importable again by replay
    return None


def _env_fn(
    env: str | gym.envs.registration.EnvSpec | Callable[[], gym.Env],
    env_kwargs: dict[str, Any] | None,
    max_episode_steps: int | None,
    imports: Sequence[str] = (),
) -> Callable[[], gym.Env]:
    if isinstance(env, (str, gym.envs.registration.EnvSpec)):  # an EnvSpec: where make_env_fn takes one
        return make_env_fn(env, env_kwargs=env_kwargs, max_episode_steps=max_episode_steps, imports=imports)  # type: ignore[arg-type]
    if callable(env):
        if env_kwargs or max_episode_steps is not None or imports:
            raise ConfigError("env_kwargs and max_episode_steps apply to an env id; put them in the factory")
        return env
    raise ConfigError(f"env must be an env id or a function that makes one, got {type(env).__name__}")


def evaluate(
    env: str | Callable[[], gym.Env],
    policy: PolicyLike = None,
    seeds: Iterable[int] = range(10),
    num_envs: int = 4,
    out: str | os.PathLike[str] | None = None,
    config: RecordConfig | None = None,
    *,
    env_kwargs: dict[str, Any] | None = None,
    imports: Sequence[str] = (),
    max_episode_steps: int | None = None,
    deterministic: bool = True,
    overwrite: bool = False,
    progress: Progress | None = None,
    run_info: dict[str, Any] | None = None,
    **options: Any,
) -> EvaluationResult:
    """Run one episode per seed, recording each, on ``num_envs`` parallel envs.

    The j-th episode resets with ``seeds[j]`` whichever env runs it, and the
    random policy samples it from a generator seeded from ``seeds[j]``, so the
    (seed, return, length) of every episode are the same for any ``num_envs``
    (for a deterministic policy, or the random one).

    Args:
        env: A registered env id, or a function that makes the env (with
            ``render_mode="rgb_array"``).
        policy: None (random), "random", "sb3:ALGO:path.zip", "module:callable",
            an SB3 model, or a callable mapping a batch of observations to a
            batch of actions.
        seeds: The episodes' seeds: any list or range of integers (repeats
            allowed: each is an episode).
        num_envs: Envs run at once (no more than there are seeds).
        out: The output folder (required): videos, the manifest,
            ``run.json``.
        config: What to record and how (:class:`~rlcapture.RecordConfig`).
        env_kwargs: Keyword arguments of ``gymnasium.make`` (env ids only).
        imports: Modules to import before the id is resolved, here and in
            every worker (packages that register envs: ``ale_py``; env ids only).
        max_episode_steps: A time limit (env ids only).
        deterministic: SB3 policies: the most likely action.
        overwrite: Replace a recording already in ``out``.
        progress: Called after every step with (episodes ended, episodes in
            all, env steps so far, lengths of the episodes that ended in it).
        run_info: More fields for ``run.json``.
        **options: :class:`~rlcapture.CaptureVectorEnv` keywords (``record``,
            ``envs_per_worker``, ``on_error``, ``step_timeout``, ...) and
            :class:`~rlcapture.RecordConfig` options (``codec``, ``keep``, ...).

    Returns:
        One :class:`EpisodeResult` per episode that ended, in seed order.
        Ctrl-C stops the run: the result then says ``interrupted``.

    Raises:
        ConfigError: A bad argument (no ``out``, empty seeds, an unknown option).
        EnvError: The env cannot be made.
    """
    plan = _check_arguments(out, seeds, num_envs, options)
    fn = _env_fn(env, env_kwargs, max_episode_steps, imports)
    n = min(num_envs, len(plan))  # more envs than seeds would only run unplanned episodes
    envs = CaptureVectorEnv([fn] * n, out, episode_seeds=plan, config=config, overwrite=overwrite, **options)
    assert envs.recorder is not None
    folder = envs.recorder.out
    interrupted = False
    try:
        _write_run_file(envs, plan, {"policy": _policy_name(policy), "deterministic": deterministic}, run_info)
        act = resolve_policy(policy, envs, deterministic)
        _run(envs, act, len(plan), progress)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        envs.close()
    result = _result(folder, plan, interrupted, dict(envs.errors))
    return replace(result, recording=dict(envs.recorder.summary))


def _check_arguments(
    out: object, seeds: Iterable[int], num_envs: object, options: dict[str, Any]
) -> tuple[int, ...] | range:
    """The seed plan; a :class:`ConfigError` for what ``evaluate`` cannot take."""
    if out is None:
        raise ConfigError("evaluate needs out=, the folder for the videos and the manifest")
    plan = check_seeds(seeds, "seeds")
    if not (isinstance(num_envs, int) and not isinstance(num_envs, bool) and num_envs >= 1):
        raise ConfigError(f"num_envs must be a positive integer, got {num_envs!r}")
    for name in ("episode_seeds", "episodes_per_env"):
        if name in options:
            raise ConfigError(f"evaluate sets {name} itself (from seeds)")
    return plan


def _write_run_file(
    envs: CaptureVectorEnv,
    plan: tuple[int, ...] | range,
    asked: dict[str, Any],
    run_info: dict[str, Any] | None,
) -> None:
    """``run.json``: the vector env's own (the env, encoding, OpenGL platform), ``asked``, the seeds, ``run_info``."""
    from . import __version__

    assert envs.recorder is not None
    fields: dict[str, Any] = {**envs.run_info, **asked, "seeds": describe_seeds(plan)}
    fields.update(run_info or {})
    envs.recorder.folder.write_run_file(fields, version=__version__)


def _run(
    envs: CaptureVectorEnv,
    policy: Callable[[Any], Any],
    total: int,
    progress: Progress | None,
) -> None:
    """Step until every episode of the plan has ended (or every env failed)."""
    assert envs.seed_plan is not None
    plan = envs.seed_plan
    next_step = envs.autoreset_mode == AutoresetMode.NEXT_STEP
    n = envs.num_envs
    obs, _ = envs.reset()
    now = envs.seed_indices()
    ended: set[int] = set()
    length = np.zeros(n, dtype=np.int64)  # steps of each env's running episode
    resetting = np.zeros(n, dtype=bool)  # next-step autoreset: this step only resets
    steps = 0
    while True:
        running = [i for i in range(n) if now[i] >= 0 and now[i] not in ended and not envs.failed[i]]
        if (plan.taken >= total and not running) or envs.failed.all():
            break
        obs, _rewards, terminated, truncated, _infos = envs.step(policy(obs))
        steps += n
        length += ~resetting
        resetting[:] = False
        lengths = []
        # The episode that ended is the one running before this step: with
        # same-step autoreset, seed_indices() already shows the next one.
        for i in np.flatnonzero(terminated | truncated):
            if now[i] >= 0 and int(now[i]) not in ended:
                ended.add(int(now[i]))
                lengths.append(int(length[i]))
            length[i] = 0
            resetting[i] = next_step
        now = envs.seed_indices()
        if progress is not None:
            progress(len(ended), total, steps, lengths)


def _result(
    out: Path, plan: tuple[int, ...] | range, interrupted: bool, errors: dict[int, str]
) -> EvaluationResult:
    lines = read_manifest(RunFolder(out).manifest, missing_ok=True)
    episodes = []
    for r in lines:
        index = r.get("seed_index")
        if index is None:
            continue
        video = r.get("video")
        episodes.append(
            EpisodeResult(
                seed=int(r["seed"]),
                index=int(index),
                ret=float("nan") if r.get("return") is None else float(r["return"]),
                length=int(r.get("length") or 0),
                end=str(r["end"]),
                env=int(r["env"]),
                episode=int(r["episode"]),
                video=out / video if video else None,
            )
        )
    episodes.sort(key=lambda e: e.index)
    return EvaluationResult(out, episodes, plan, interrupted, errors)
