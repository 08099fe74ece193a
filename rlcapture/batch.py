"""``BatchCapture``: record a simulator that renders a whole batch in one process.

GPU and JAX simulators step and render N envs at once and hand back an
``(N, H, W, C)`` array. ``BatchCapture`` takes such arrays and writes the same
per-(env, episode) videos, tags and manifest lines as the vector env: the
frames of the envs being recorded are copied into one ring, and nothing else
is touched. Call :meth:`reset` for envs that start an episode (with their
first frames) and :meth:`step` after each step (with the frames after it,
terminal frames included), so the terminal frame is never lost to autoreset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._backend.channel import Endpoint
from ._backend.episode import EndReason, EpisodeBook
from ._backend.frames import as_frame
from ._backend.producer import FrameProducer, ShardedProducer, open_producer
from .errors import ClosedError, ConfigError
from .triggers import ScheduleSpec, as_schedule
from .wrapper import _endpoint

__all__ = ["BatchCapture"]


class BatchCapture:
    """Records N envs whose frames arrive as one batch.

    Args:
        recorder: A :class:`~rlcapture.Recorder` or its endpoint.
        num_envs: Envs in the batch.
        first_env_index: Index of the first env in the recording.
        record: Which episodes to record ("all", "none", "every:N", callable).
        fps: Frame rate of the videos (None: the recorder's, else 30).
        drop: Drop frames instead of waiting for a full ring.
        episodes: A quota per env: later episodes are neither recorded nor in
            the manifest.

    Attributes:
        recording: Boolean mask of envs whose current episode is recorded; a
            simulator may render only those.
    """

    def __init__(
        self,
        recorder: Any,
        num_envs: int,
        *,
        first_env_index: int = 0,
        record: ScheduleSpec = "all",
        fps: float | None = None,
        drop: bool | None = None,
        episodes: int | None = None,
        slots: int | None = None,
    ) -> None:
        if not (isinstance(num_envs, int) and num_envs >= 1):
            raise ConfigError(f"num_envs must be a positive integer, got {num_envs!r}")
        endpoint: Endpoint = _endpoint(recorder)
        schedule = as_schedule(record, envs=num_envs)
        self.num_envs = num_envs
        self.first_env_index = first_env_index
        envs = range(first_env_index, first_env_index + num_envs)
        self._books = [EpisodeBook(e, schedule, episodes) for e in envs]
        self.recording = np.zeros(num_envs, dtype=bool)
        # One ring, or one per encoder shard (Recorder(encoders=k)): env e goes to shard e % k.
        self._producer: FrameProducer | ShardedProducer | None = open_producer(
            endpoint, envs, name=f"batch (envs {envs[0]}-{envs[-1]})", fps=fps, drop=drop, slots=slots
        )

    def _live(self) -> FrameProducer | ShardedProducer:
        if self._producer is None:
            raise ClosedError("this BatchCapture is closed")
        return self._producer

    def _ids(self, env_ids: Sequence[int] | np.ndarray | None) -> np.ndarray:
        if env_ids is None:
            return np.arange(self.num_envs)
        ids = np.asarray(env_ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_envs):
            raise ConfigError(f"env_ids must lie in [0, {self.num_envs}), got {ids.tolist()}")
        return ids

    def _frames(self, frames: Any, ids: np.ndarray) -> Any:
        if frames is None:
            if any(self._books[i].recording for i in ids):
                raise ConfigError("frames are needed: some of these envs are being recorded")
            return None
        if not isinstance(frames, np.ndarray):
            frames = np.asarray(frames)  # JAX arrays, CPU torch tensors
        if len(frames) != len(ids):
            raise ConfigError(f"got {len(frames)} frames for {len(ids)} envs")
        return frames

    def reset(
        self,
        frames: Any = None,
        *,
        env_ids: Sequence[int] | np.ndarray | None = None,
        seeds: Sequence[int | None] | None = None,
    ) -> None:
        """Start a new episode in ``env_ids`` (all by default).

        Args:
            frames: The first frame of each, ``(len(env_ids), H, W, C)``; may be
                None when none of them is recorded.
            env_ids: Which envs reset, as batch positions.
            seeds: The seed each was reset with, for the manifest.
        """
        producer = self._live()
        ids = self._ids(env_ids)
        if seeds is not None and len(seeds) != len(ids):
            raise ConfigError(f"got {len(seeds)} seeds for {len(ids)} envs")
        checked = None
        if frames is not None:  # check them all before any env starts its episode
            frames = self._frames(frames, ids)
            checked = [as_frame(frames[k], f"env {self._books[i].env} reset") for k, i in enumerate(ids)]
        for k, i in enumerate(ids):
            t = self._books[i]
            record = t.cut(EndReason.RESET)
            if record is not None:
                producer.end(record)
            t.begin(None if seeds is None else seeds[k])
            self.recording[i] = t.recording
        if checked is None:
            self._frames(None, ids)  # raises if a recorded env needs a frame
        frames = checked
        for k, i in enumerate(ids):
            t = self._books[i]
            if t.recording:
                t.sent(producer.frame(t.env, t.episode, 0, frames[k]))

    def step(
        self,
        frames: Any,
        rewards: Any,
        terminated: Any,
        truncated: Any,
    ) -> dict[str, np.ndarray]:
        """Record one step of every env.

        Args:
            frames: ``(N, H, W, C)`` frames after the step (terminal frames for
                envs that just ended), or None if no env is recorded.
            rewards: ``(N,)`` rewards.
            terminated: ``(N,)`` termination flags.
            truncated: ``(N,)`` truncation flags.

        Returns:
            Statistics of the episodes that ended, Gymnasium style:
            ``{"r", "l", "t", "_episode"}`` arrays over the batch.

        Raises:
            ConfigError: If an env that ended was not reset before stepping again.
        """
        producer = self._live()
        n = self.num_envs
        rewards = np.asarray(rewards, dtype=np.float64).reshape(n)
        term = np.asarray(terminated, dtype=bool).reshape(n)
        trunc = np.asarray(truncated, dtype=bool).reshape(n)
        frames = self._frames(frames, np.arange(n))
        # Check everything before anything is counted: a bad frame or a
        # missing reset leaves every env as it was, so the caller can fix the
        # batch and step again.
        for i, t in enumerate(self._books):
            if not t.active:
                raise ConfigError(
                    f"env {t.env} has no running episode; call reset(frames, env_ids=[{i}]) "
                    "after an episode ends"
                )
        pixels = [
            producer.check(t.env, t.episode, t.step + 1, frames[i]) if t.recording else None
            for i, t in enumerate(self._books)
        ]
        out = {"r": np.zeros(n), "l": np.zeros(n, np.int64), "t": np.zeros(n), "_episode": term | trunc}
        for i, t in enumerate(self._books):
            t.add(rewards[i])
            if t.recording:
                t.sent(producer.frame(t.env, t.episode, t.step, pixels[i]))
            if term[i] or trunc[i]:
                stats = t.stats()
                out["r"][i], out["l"][i], out["t"][i] = stats["r"], stats["l"], stats["t"]
                record = t.done(bool(term[i]))
                self.recording[i] = False
                if record is not None:
                    producer.end(record)
        return out

    def close(self) -> None:
        """End recorded episodes still running as "closed" and detach (idempotent)."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            for t in self._books:
                record = t.cut(EndReason.CLOSED)
                if record is not None:
                    producer.end(record)
        finally:
            producer.close()

    def __enter__(self) -> BatchCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
