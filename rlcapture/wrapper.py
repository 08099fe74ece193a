"""``CaptureWrapper``: record an env that another runner steps.

Put it inside the env factory of any vector env or trainer that runs envs in
its own processes (Gymnasium ``AsyncVectorEnv``, SB3 ``SubprocVecEnv``, a custom
trainer's workers). Each wrapped env connects to the recorder's encoder on
first use and writes into the same engine, manifest and folder as
:class:`CaptureVectorEnv` would. It renders inside ``step`` (the runner owns the
loop, so there is no reply to send first), and only episodes the schedule picks.
It changes nothing the env returns (its infos included): the manifest takes the
episode's return from the env's own ``RecordEpisodeStatistics`` where it has
one inside, else sums the rewards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym

from ._backend.channel import Endpoint
from ._backend.episode import EndReason, EpisodeBook
from ._backend.gl_platform import prepare as prepare_gl
from ._backend.producer import FrameProducer
from ._backend.returns import return_reader
from .errors import ConfigError, EnvError
from .recorder import Recorder
from .triggers import ScheduleSpec, as_schedule

__all__ = ["CaptureWrapper"]


def _endpoint(target: Recorder | Endpoint) -> Endpoint:
    """The endpoint of a recorder: it knows every encoder shard and picks one per env."""
    if isinstance(target, Recorder):
        return target.endpoint
    if isinstance(target, Endpoint):
        return target
    raise ConfigError(f"expected a Recorder or its endpoint, got {type(target).__name__}")


class CaptureWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Records the episodes of one env into a running :class:`Recorder`.

    Args:
        env: An env made with ``render_mode="rgb_array"``.
        recorder: The recorder, or its ``endpoint`` (what crosses to another
            process: it is small and picklable).
        env_index: This env's index in the recording; unique per recorder.
        record: Which episodes to record ("all", "none", "every:N", callable).
        episodes: A quota: later episodes are neither recorded nor in the manifest.
        drop: Drop frames instead of waiting for a full ring (None: recorder's choice).

    Resets are passed on as the runner makes them (seeded or not), so the
    runner's trajectories do not change; the manifest holds each episode's
    seed, or for an unseeded one its generator's state (``rng``), so each
    episode can be replayed (``rlcapture replay``).
    """

    def __init__(
        self,
        env: gym.Env,
        recorder: Recorder | Endpoint,
        env_index: int,
        *,
        record: ScheduleSpec = "all",
        episodes: int | None = None,
        drop: bool | None = None,
    ) -> None:
        # The spec records how to rebuild this wrapper (gymnasium's check_env
        # remakes an env from ``env.spec``). A copy made so records nothing
        # (no episode, no connection): this env index is this wrapper's, and
        # the encoder refuses a second producer for it.
        gym.utils.RecordConstructorArgs.__init__(
            self, recorder=_endpoint(recorder), env_index=env_index, record="none", episodes=0
        )
        super().__init__(env)
        if not (isinstance(env_index, int) and env_index >= 0):
            raise ConfigError(f"env_index must be a non-negative integer, got {env_index!r}")
        if env.render_mode != "rgb_array":
            raise EnvError(
                f"env {env_index} has render_mode={env.render_mode!r}; make it with "
                "render_mode='rgb_array' to record it"
            )
        # It renders arrays only: gymnasium's check_env remakes it in each mode listed.
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}
        # With several encoder shards, the one that records this env.
        self._endpoint = _endpoint(recorder).for_env(env_index)
        self._book = EpisodeBook(env_index, as_schedule(record), episodes)
        self._drop = drop
        self._producer: FrameProducer | None = None
        self._return = return_reader(env)

    @classmethod
    def factory(
        cls,
        env_fn: Callable[[], gym.Env],
        recorder: Recorder | Endpoint,
        env_index: int,
        **kwargs: Any,
    ) -> Callable[[], CaptureWrapper]:
        """A picklable env function that wraps ``env_fn()`` for another runner.

        Example:
            >>> fns = [CaptureWrapper.factory(make_env, rec, i) for i in range(4)]
            >>> envs = gymnasium.vector.AsyncVectorEnv(fns)
        """
        return _Factory(cls, env_fn, _endpoint(recorder), env_index, kwargs)

    @property
    def env_index(self) -> int:
        return self._book.env

    def _connect(self) -> FrameProducer:
        if self._producer is None:
            fps = self.env.metadata.get("render_fps")
            self._producer = FrameProducer(
                self._endpoint,
                [self._book.env],
                name=f"env {self._book.env} (wrapper)",
                fps=float(fps) if fps else None,
                drop=self._drop,
            )
        return self._producer

    def _capture(self) -> None:
        t = self._book
        ok = self._connect().frame(t.env, t.episode, t.step, self.env.render())
        t.sent(ok)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        t = self._book
        record = t.cut(EndReason.RESET)
        if record is not None:
            self._connect().end(record)
        seed = t.begin(seed, self.env)
        obs, info = self.env.reset(seed=seed, options=options)
        if t.recording:
            self._capture()
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        t = self._book
        if not t.active:  # stepped past its end without a reset: in no episode
            return obs, reward, terminated, truncated, info
        t.add(reward)
        if t.recording:
            self._capture()
        if terminated or truncated:
            if self._return is not None:
                t.ret = float(self._return())
            record = t.done(bool(terminated))
            if record is not None:
                self._connect().end(record)
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        try:
            record = self._book.cut(EndReason.CLOSED)
            if record is not None and self._producer is not None:
                self._producer.end(record)
        finally:
            if self._producer is not None:
                self._producer.close()
                self._producer = None
            super().close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_producer"] = None  # a connection belongs to its process
        return state


class _Factory:
    def __init__(
        self,
        cls: type[CaptureWrapper],
        env_fn: Callable[[], gym.Env],
        endpoint: Endpoint,
        env_index: int,
        kwargs: dict[str, Any],
    ) -> None:
        self.cls = cls
        self.env_fn = env_fn
        self.endpoint = endpoint
        self.env_index = env_index
        self.kwargs = kwargs

    def __call__(self) -> CaptureWrapper:
        prepare_gl()  # the runner's process renders: headless MuJoCo picks EGL or OSMesa
        return self.cls(self.env_fn(), self.endpoint, self.env_index, **self.kwargs)
