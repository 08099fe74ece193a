"""``rlcapture.replay``: re-create one recorded episode and render it into a new video.

rlcapture never reseeds an episode its caller left unseeded, so an episode is
re-created from what the manifest kept of its start: its seed (a seeded reset)
or its env generator's state (restored, then an unseeded reset). The env, its
keyword arguments and the policy come from the run's ``run.json``; the policy
must act again as it did: a deterministic one (an SB3 model with
``deterministic=True``, a function of the observation), or the random policy of
an evaluation, which samples each episode from a generator seeded from the
episode's seed (:class:`~rlcapture.policies.EpisodeRandomPolicy`).

The replay runs in this process, one env, no workers: a replay is one episode,
and a debugger can step through it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ._backend.episode import FINISHED
from ._backend.frames import as_frame
from ._backend.manifest import MANIFEST, read_manifest
from ._backend.rngstate import restore_generator
from ._backend.run_folder import RunFolder
from ._backend.video import EpisodeVideo, VideoOptions
from .config import RecordConfig
from .envs import make_env_fn
from .errors import ConfigError, OutputExistsError
from .policies import EpisodeRandomPolicy, SB3Policy, load_policy

__all__ = ["ReplayResult", "replay"]


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did, beside what the manifest says the episode did.

    Attributes:
        video: The new video.
        ret: The replay's return.
        length: The replay's steps.
        recorded_return: The return in the manifest.
        recorded_length: The length in the manifest.
        frames: Frames written (the reset's and one per step).
    """

    video: Path
    ret: float
    length: int
    recorded_return: float | None
    recorded_length: int | None
    frames: int

    @property
    def matches(self) -> bool:
        """Whether the replay's return and length are the recorded ones."""
        return self.ret == self.recorded_return and self.length == self.recorded_length


class _Sampled:
    """The evaluation's random policy for one episode: its sampler, reseeded from the seed."""

    def __init__(self, space: gym.Space, seed: int) -> None:
        self.space = space
        self.sampler = EpisodeRandomPolicy.sampler(space, seed)

    def __call__(self, obs: Any) -> Any:
        return self.sampler.sample()


class _Batched:
    """A batch policy asked about one observation at a time."""

    def __init__(self, policy: Callable[[Any], Any], space: gym.Space) -> None:
        self.policy = policy
        self.space = space

    def __call__(self, obs: Any) -> Any:
        batch = gym.vector.utils.concatenate(
            self.space, [obs], gym.vector.utils.create_empty_array(self.space, 1)
        )
        actions = self.policy(batch)
        return actions[0] if not isinstance(actions, (dict, tuple)) else _first(actions)


def _first(actions: Any) -> Any:
    if isinstance(actions, dict):
        return {k: _first(v) for k, v in actions.items()}
    if isinstance(actions, tuple):
        return tuple(_first(v) for v in actions)
    return actions[0]


class _OneEnv:
    """What :func:`~rlcapture.policies.load_policy` needs of a vector env, for one env."""

    def __init__(self, env: gym.Env) -> None:
        self.num_envs = 1
        self.single_action_space = env.action_space
        self.single_observation_space = env.observation_space
        self.action_space = gym.vector.utils.batch_space(env.action_space, 1)
        self.observation_space = gym.vector.utils.batch_space(env.observation_space, 1)
        self.episode_seeds = None


def _find(lines: list[dict[str, Any]], env: int, episode: int, run_dir: Path) -> dict[str, Any]:
    for r in lines:
        if r.get("env") == env and r.get("episode") == episode:
            return r
    have = sorted({(r.get("env"), r.get("episode")) for r in lines}, key=str)[:8]
    raise ConfigError(
        f"{str(run_dir)!r} has no episode {episode} of env {env} in its manifest "
        f"(it has e.g. {', '.join(f'env {e} episode {k}' for e, k in have) or 'none'})"
    )


def _video_options(config: RecordConfig | None, run: dict[str, Any]) -> VideoOptions:
    if config is not None:
        return VideoOptions(**{f.name: getattr(config.video, f.name) for f in fields(config.video)})
    recorded = run.get("video") or {}
    names = {f.name for f in fields(VideoOptions)}
    return VideoOptions(**{k: v for k, v in recorded.items() if k in names})


def _policy(
    policy: Any, run: dict[str, Any], record: dict[str, Any], env: gym.Env, deterministic: bool | None
) -> Callable[[Any], Any]:
    if deterministic is None:
        deterministic = bool(run.get("deterministic", True))
    if policy is None:
        policy = run.get("policy") or "random"
    if policy == "random":
        if record.get("seed_index") is None or record.get("seed") is None:
            raise ConfigError(
                "this episode's random actions cannot be drawn again: only an evaluation's "
                "episodes (rlcapture record, rlcapture.evaluate) sample them from their seed; "
                "give the policy that ran it (--policy)"
            )
        return _Sampled(env.action_space, int(record["seed"]))
    if isinstance(policy, str):
        return _Batched(load_policy(policy, _OneEnv(env), None, deterministic), env.observation_space)
    if hasattr(policy, "predict"):
        return _Batched(SB3Policy(policy, deterministic), env.observation_space)
    if callable(policy):
        return _Batched(policy, env.observation_space)
    raise ConfigError(f"policy must be a spec string, an SB3 model or a callable, got {type(policy).__name__}")


def _target(run_dir: Path, out: str | os.PathLike[str] | None, env: int, episode: int, overwrite: bool) -> Path:
    if out is None:
        folder = RunFolder(run_dir).replays
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / f"env{env}-episode{episode}.mp4"
    else:
        path = Path(out)
    if path.exists():
        if not overwrite:
            raise OutputExistsError(f"{str(path)!r} exists; pass overwrite=True (--overwrite) or another --out")
        path.unlink()
    return path


def replay(
    run_dir: str | os.PathLike[str],
    env: int = 0,
    episode: int = 0,
    *,
    policy: Any = None,
    out: str | os.PathLike[str] | None = None,
    make_env: Callable[[], gym.Env] | None = None,
    config: RecordConfig | None = None,
    deterministic: bool | None = None,
    overwrite: bool = False,
    env_id: str | None = None,
) -> ReplayResult:
    """Re-create episode ``episode`` of env ``env`` of a recording, into a new video.

    Args:
        run_dir: The recording's folder (its manifest; ``run.json`` if
            the run wrote one).
        env: The env's index, as in the manifest.
        episode: That env's episode number, as in the manifest.
        policy: The policy to act with; None takes ``run.json``'s (a spec
            string). "random" replays an evaluation's random actions.
        out: The new video's path (default ``RUN_DIR/replays/envE-episodeK.mp4``).
        make_env: Makes the env, for runs whose env was not an id (``run.json``
            then names none).
        config: Encoding of the new video (default: as the run recorded).
        deterministic: SB3 policies (default: as the run did).
        overwrite: Replace ``out`` if it exists.
        env_id: The env to make (an id or ``module:Env``) for a run whose
            ``run.json`` names none, or that has no ``run.json``.

    Raises:
        ConfigError: No such episode, nothing to re-create its start from, no
            env id or policy known, or random actions that cannot be drawn again.
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
    """
    folder = Path(run_dir)
    recording = RunFolder(folder)
    try:
        lines = read_manifest(recording.manifest)
    except FileNotFoundError:
        raise ConfigError(f"{str(folder)!r} holds no recording (no {MANIFEST})") from None
    record = _find(lines, env, episode, folder)
    run = recording.read_run_file() or {}
    if env_id is not None:
        run = {**run, "env": env_id}
    if make_env is None:
        make_env = _env_of_run(run, folder)
    seed, rng = record.get("seed"), record.get("rng")
    if seed is None and rng is None:
        raise ConfigError(
            f"env {env} episode {episode} has neither a seed nor a generator state in the manifest; "
            "it was recorded by an rlcapture that did not keep them"
        )
    options = _video_options(config, run)
    path = _target(folder, out, env, episode, overwrite)
    e = make_env()
    try:
        act = _policy(policy, run, record, e, deterministic)
        if seed is not None:
            obs, _ = e.reset(seed=int(seed))
        else:
            restore_generator(e, rng)
            obs, _ = e.reset()
        ret, steps, frames = _play(e, act, obs, record, path, options, f"replay of env {env} episode {episode}")
    finally:
        e.close()
    recorded_length = record.get("length")
    recorded_return = record.get("return")
    return ReplayResult(
        path,
        ret,
        steps,
        None if recorded_return is None else float(recorded_return),
        None if recorded_length is None else int(recorded_length),
        frames,
    )


def _env_of_run(run: dict[str, Any], folder: Path) -> Callable[[], gym.Env]:
    """Makes the env that ``run.json`` names, as the run made it."""
    env_id = run.get("env")
    if not env_id:
        raise ConfigError(
            f"{str(folder)!r} does not say which env ran (no env id in run.json); "
            "name it with --env-id ID (rlcapture replay) or make_env= (Python)"
        )
    return make_env_fn(
        env_id,
        env_kwargs=run.get("env_kwargs") or None,
        max_episode_steps=run.get("max_episode_steps"),
        imports=run.get("imports") or (),
    )


def _play(
    e: gym.Env,
    act: Callable[[Any], Any],
    obs: Any,
    record: dict[str, Any],
    path: Path,
    options: VideoOptions,
    what: str,
) -> tuple[float, int, int]:
    """Step ``e`` from its reset, ``act`` choosing, every frame into a new video at ``path``.

    Returns the return, the steps and the frames written.
    """
    recorded_length = record.get("length")
    # An episode that was cut short (reset, closed) stops where it was cut.
    limit = recorded_length if record.get("end") not in FINISHED else None
    # A replay that went another way may never end: stop it well past the record.
    cap = 10 * int(recorded_length or 0) + 1000
    video: EpisodeVideo | None = None
    ret, steps = 0.0, 0
    try:
        while True:
            frame = as_frame(e.render(), f"{what} step {steps}")
            if video is None:
                fps = options.fps or e.metadata.get("render_fps") or 30
                h, w, c = frame.shape
                video = EpisodeVideo(str(path), w, h, c, float(fps), options)
            video.write(np.ascontiguousarray(frame), steps, _nothing)
            if (limit is not None and steps >= limit) or steps >= cap:
                break
            obs, reward, terminated, truncated, _ = e.step(act(obs))
            ret += float(reward)
            steps += 1
            if terminated or truncated:
                video.write(np.ascontiguousarray(as_frame(e.render(), "replay")), steps, _nothing)
                break
    finally:
        if video is not None:
            video.close()
    return ret, steps, video.frames if video is not None else 0


def _nothing() -> None:
    pass
