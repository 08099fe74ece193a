"""The envs of one worker: commands, per-env episode bookkeeping, rendering into the ring.

:class:`WorkerEnvs` hosts the envs of one worker process. Its commands
(``start``, ``step``, ``reset``, ``call``, ``set_attr``, ``is_wrapped``,
``close``) take and return Python values and message objects
(``messages.py``); an env's error is raised as :class:`EnvFailure` (its env
index and traceback), and only the process loop (:mod:`.worker`) turns
replies and errors into bytes. Each env's episodes are counted by an
``EpisodeBook``; a ``step`` is answered first and its frames rendered after
the reply (``after_reply``), or, with a gate, when the vector env says every
worker has answered. Everything here runs without a process or a pipe
(``tests/test_messages.py`` drives it directly).
"""

from __future__ import annotations

import pickle
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import write_to_shared_memory

from ..errors import ClosedError, EncoderError
from .episode import EndReason, EpisodeBook
from .messages import NOTHING, EnvInfo, Ok, Ready
from .producer import FrameProducer, ShardedProducer, open_producer
from .returns import return_reader
from .worker_spec import WorkerSpec

__all__ = ["RESERVED", "EnvFailure", "WorkerEnvs"]


#: What ``call`` refuses, as AsyncVectorEnv does: these have their own commands.
RESERVED = ("reset", "step", "close", "_setattr", "_check_spaces")


class EnvFailure(Exception):
    """An env's error, with the env's index and the traceback taken where it was caught."""

    def __init__(self, env: int, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.env = env
        self.exc = exc
        self.tb = traceback.format_exc()


#: Gymnasium's passive env checker, on a first frame that is not uint8.
FLOAT_FRAMES_WARNING = "RGB-array rendering should return a numpy array with dtype uint8"


class WorkerEnvs:
    """The envs of one worker, their episodes, and the frames they render into its ring."""

    def __init__(self, spec: WorkerSpec, conn: Any) -> None:
        self.spec = spec
        self.conn = conn
        self.envs: list[Any] = []
        self.books = [
            EpisodeBook(e, spec.schedule, limit) for e, limit in zip(spec.env_indices, spec.limits)
        ]
        self.rewards, self.terminated, self.truncated = spec.shared.views()
        self.obs_space: Any = None
        self.next_step = spec.autoreset_mode == AutoresetMode.NEXT_STEP
        self.same_step = spec.autoreset_mode == AutoresetMode.SAME_STEP
        # Observations for the pipe when they do not go through shared memory.
        self.obs: list[Any] | None = (
            None if spec.shared.obs_mem is not None else [None] * len(spec.env_indices)
        )
        # Per env, what reads its own return (see _true_return).
        self.returns: list[Callable[[], float] | None] = []
        self.episodes: list[tuple[int, dict[str, Any]]] = []  # finished this step
        self.needs_reset = [False] * len(spec.env_indices)
        self.producer: FrameProducer | ShardedProducer | None = None
        self.to_render: list[int] = []
        self.waiting = False  # frames held until the vector env says "render"
        # Episodes that ended this step (next-step autoreset), finished only
        # after their terminal frame was offered so its drop is counted.
        self.to_end: list[tuple[int, bool]] = []
        self.ended: list[dict[str, Any]] = []
        self.pending: EnvFailure | None = None  # an error from rendering, for the next reply
        # on_error="continue": envs that failed are closed and skipped; the
        # failures not yet reported go out with the next reply.
        self.failed = [False] * len(spec.env_indices)
        # Envs not rendered yet: Gymnasium's env checker looks at the first frame only.
        self.unrendered = [True] * len(spec.env_indices)
        self.failures: list[tuple[int, str]] = []
        self.closed = False

    # -- startup --------------------------------------------------------------
    def start(self) -> Ready:
        """Make the envs and open the producer; what they are, for the vector env.

        Raises:
            EnvFailure: an env could not be made (answered to the caller).
        """
        for j, fn in enumerate(self.spec.env_fns):
            env_index = self.spec.env_indices[j]
            try:
                env = fn()
            except Exception as exc:
                raise EnvFailure(env_index, exc) from exc
            self.envs.append(env)
            self.returns.append(return_reader(env))
        env0 = self.envs[0]
        self.obs_space = env0.observation_space
        fps = env0.metadata.get("render_fps")
        # One producer, or one per encoder shard when this worker's envs
        # belong to several (Recorder(encoders=k) records env e in shard e % k).
        self.producer = open_producer(
            self.spec.endpoint,
            self.spec.env_indices,
            name=f"worker {self.spec.index} (envs {_span(self.spec.env_indices)})",
            fps=float(fps) if fps else None,
        )
        return Ready(
            [
                EnvInfo(
                    e.observation_space, e.action_space, dict(e.metadata), e.render_mode, _spec(e)
                )
                for e in self.envs
            ]
        )

    # -- commands -------------------------------------------------------------
    def reset(
        self,
        seeds: Sequence[int | None],
        options: dict[str, Any] | None,
        mask: Sequence[bool] | None = None,
    ) -> Ok:
        infos: list[Any] = []
        for j, _env in enumerate(self.envs):
            book = self.books[j]
            if self.failed[j] or (mask is not None and not mask[j]):
                infos.append({})
                continue
            record = book.cut(EndReason.RESET)  # reset mid-episode: close its video
            if record is not None:
                self.ended.append(record)
            try:
                _obs, info = self._reset_one(j, seeds[j], options)
            except EnvFailure as f:
                infos.append({"error": self._fail(j, f)})
                continue
            k = self.spec.first + j
            self.rewards[k] = 0.0
            self.terminated[k] = False
            self.truncated[k] = False
            self.needs_reset[j] = False
            infos.append(info)
        return self._reply(infos)

    def _fail(self, j: int, failure: EnvFailure) -> str:
        """Take env ``j`` out after it failed, or re-raise when failures are fatal."""
        exc = failure.exc
        if self.spec.on_error != "continue" or isinstance(exc, (EncoderError, ClosedError)):
            raise failure
        message = f"{type(exc).__name__}: {exc}"
        book = self.books[j]
        self.failed[j] = True
        self.needs_reset[j] = False
        self.to_render = [i for i in self.to_render if i != j]
        self.to_end = [(i, t) for i, t in self.to_end if i != j]
        record = book.end(EndReason.ERROR, error=message)
        if record is not None:
            self.ended.append(record)
        k = self.spec.first + j
        self.rewards[k] = 0.0
        self.terminated[k] = False
        self.truncated[k] = True
        self.failures.append((j, message))
        try:
            self.envs[j].close()
        except Exception:  # noqa: BLE001 - it already failed
            pass
        return message

    def _reply(self, infos: list[Any] | None) -> Ok:
        failures, self.failures = self.failures, []
        episodes, self.episodes = self.episodes, []
        # With a gate, say whether frames wait for the vector env's go.
        self.waiting = self.spec.gate and bool(self.to_render)
        obs = None if self.obs is None else list(self.obs)
        if infos is None and not failures and not self.waiting and obs is None and not episodes:
            return NOTHING
        return Ok(infos, failures, self.waiting, obs, episodes)

    def _write_obs(self, j: int, obs: Any) -> None:
        if self.obs is not None:
            self.obs[j] = obs
        else:
            write_to_shared_memory(
                self.obs_space, self.spec.first + j, obs, self.spec.shared.obs_mem
            )

    def _reset_one(
        self, j: int, seed: int | None, options: dict[str, Any] | None
    ) -> tuple[Any, Any]:
        book = self.books[j]
        try:
            plan = self.spec.seed_plan
            if plan is not None and seed is None:
                seed, index = plan.take(self.spec.first + j)
                seed = book.begin(seed, self.envs[j], planned=index is not None, seed_index=index)
            else:
                seed = book.begin(seed, self.envs[j])
            obs, info = self.envs[j].reset(seed=seed, options=options)
        except Exception as exc:
            raise EnvFailure(book.env, exc) from exc
        self._write_obs(j, obs)
        if book.recording:
            self.to_render.append(j)
        return obs, info

    def step(self, actions: Any) -> Ok:
        infos: list[Any] = []
        any_info = bool(self.failures)
        for j in range(len(self.envs)):
            k = self.spec.first + j
            if self.failed[j]:
                # Out of the run; truncated once, when its failure is reported.
                message = next((m for i, m in self.failures if i == j), None)
                self.rewards[k] = 0.0
                self.terminated[k] = False
                self.truncated[k] = message is not None
                infos.append({"error": message} if message else {})
                continue
            try:
                info = self._step_one(j, actions[j])
            except EnvFailure as f:
                info = {"error": self._fail(j, f)}
            infos.append(info)
            any_info = any_info or bool(info)
        return self._reply(infos if any_info else None)

    def _step_one(self, j: int, action: Any) -> Any:
        env = self.envs[j]
        book = self.books[j]
        e = book.env
        k = self.spec.first + j
        if self.needs_reset[j]:
            self.needs_reset[j] = False
            obs, info = self._reset_one(j, None, None)
            reward, term, trunc = 0.0, False, False
        else:
            try:
                obs, reward, term, trunc, info = env.step(action)
            except Exception as exc:
                raise EnvFailure(e, exc) from exc
            # Autoreset disabled, a done env stepped without a reset: what it
            # does is the env's business, but it belongs to no episode.
            live = book.active
            if live:
                book.add(reward)
                if book.recording:
                    self.to_render.append(j)
            if (term or trunc) and live:
                self._true_return(j)
                if self.next_step:
                    self.needs_reset[j] = True
                elif self.same_step:
                    # Same-step autoreset: the terminal frame must be
                    # rendered before the env is reset.
                    self._render_pending()
                    if self.failed[j]:
                        return {"error": self.failures[-1][1]}
                    self._end_episode(j, term)
                    self._flush_ended()
                    reset_obs, reset_info = self._reset_one(j, None, None)
                    info = {"final_info": info, "final_obs": obs, **reset_info}
                    obs = reset_obs
            self._write_obs(j, obs)
            if (term or trunc) and live and not self.same_step:
                self.to_end.append((j, term))
        self.rewards[k] = reward
        self.terminated[k] = term
        self.truncated[k] = trunc
        return info

    def _true_return(self, j: int) -> None:
        """At an episode's end: its return as the env itself counts it, for the manifest.

        The rewards seen here may be changed by outer wrappers
        (``NormalizeReward`` around ``RecordEpisodeStatistics``), so the
        innermost episode statistics, where the env has them, say what the
        episode returned. Also queued for the vector env's
        ``finished_episodes``.
        """
        book = self.books[j]
        read = self.returns[j]
        if read is not None:
            try:
                book.ret = float(read())
            except Exception:  # noqa: BLE001 - keep the summed rewards
                pass
        self.episodes.append((j, book.stats()))

    def _end_episode(self, j: int, terminated: bool) -> None:
        record = self.books[j].done(terminated)
        if record is not None:
            self.ended.append(record)

    def _render_pending(self) -> None:
        """Render and send the frames of this step, then announce ended episodes."""
        producer = self.producer
        assert producer is not None
        try:
            for j in list(self.to_render):
                book = self.books[j]
                try:
                    try:
                        frame = self._render(j)
                    except Exception as exc:
                        raise EnvFailure(book.env, exc) from exc
                    try:
                        ok = producer.frame(book.env, book.episode, book.step, frame)
                    except Exception as exc:
                        raise EnvFailure(book.env, exc) from exc
                except EnvFailure as f:
                    self._fail(j, f)
                    continue
                book.sent(ok)
        finally:
            self.to_render.clear()
            self._finish_ended()

    def _render(self, j: int) -> Any:
        """Env ``j``'s frame. Float frames in [0, 1] are frames here (``frames.py``), so
        Gymnasium's checker warning about them (at an env's first render) is not printed:
        it would be a stray stderr line per worker under the command's one-line errors."""
        if not self.unrendered[j]:
            return self.envs[j].render()
        self.unrendered[j] = False
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=f".*{FLOAT_FRAMES_WARNING}")
            return self.envs[j].render()

    def _finish_ended(self) -> None:
        for j, terminated in self.to_end:
            self._end_episode(j, terminated)
        self.to_end.clear()

    def _flush_ended(self) -> None:
        producer = self.producer
        assert producer is not None
        for record in self.ended:
            producer.end(record)
        self.ended.clear()

    def after_reply(self) -> None:
        try:
            self._render_pending()
            self._flush_ended()
        except EnvFailure as f:
            self.pending = f

    def call(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        which: Sequence[int] | None = None,
    ) -> Ok:
        """Call ``name`` on this worker's envs (``which``: positions among them; None: all)."""
        results = []
        for j in range(len(self.envs)) if which is None else which:
            env = self.envs[j]
            try:
                if name in RESERVED:
                    raise ValueError(
                        f"Trying to call function `{name}` with `call`, use `{name}` directly instead."
                    )
                # As AsyncVectorEnv: the attribute of whichever wrapper (or
                # the env) has it, not only of the outermost wrapper.
                attr = env.get_wrapper_attr(name)
                results.append(attr(*args, **kwargs) if callable(attr) else attr)
            except Exception as exc:
                raise EnvFailure(self.books[j].env, exc) from exc
        return Ok(results)

    def set_attr(self, name: str, values: Sequence[Any], which: Sequence[int] | None = None) -> Ok:
        """Set ``name`` on this worker's envs (``which``: positions, one value each).

        On the wrapper (or env) that has it, as ``set_wrapper_attr`` decides.
        """
        for k, j in enumerate(range(len(self.envs)) if which is None else which):
            try:
                self.envs[j].set_wrapper_attr(name, values[k])
            except Exception as exc:
                raise EnvFailure(self.books[j].env, exc) from exc
        return Ok(None)

    def is_wrapped(self, wrapper_class: type, which: Sequence[int] | None = None) -> Ok:
        """Whether each env has ``wrapper_class`` among its wrappers (as SB3's ``is_wrapped``)."""
        found = []
        for j in range(len(self.envs)) if which is None else which:
            env = self.envs[j]
            hit = False
            while isinstance(env, gym.Wrapper):
                if isinstance(env, wrapper_class):
                    hit = True
                    break
                env = env.env
            found.append(hit)
        return Ok(found)

    def close(self, end: EndReason = EndReason.CLOSED) -> None:
        """Close the envs; recorded episodes still running end with ``end``."""
        if self.closed:
            return
        self.closed = True
        self._finish_ended()  # a step that failed after an episode ended
        for book in self.books:
            record = book.cut(end)
            if record is not None:
                self.ended.append(record)
        try:
            if self.producer is not None:
                self._flush_ended()
        except Exception:
            if end is not EndReason.ERROR:
                raise  # on the way down after an error, the first error matters
        finally:
            for env in self.envs:
                try:
                    env.close()
                except Exception:  # noqa: BLE001 - closing anyway
                    pass
            if self.producer is not None:
                self.producer.close()


def _spec(env: Any) -> Any:
    """``env.spec`` if it pickles, else None (the vector env takes its own from a probe env)."""
    try:
        spec = env.spec
        pickle.dumps(spec)
    except Exception:  # noqa: BLE001 - a lambda in its kwargs or wrappers
        return None
    return spec


def _span(indices: Sequence[int]) -> str:
    return str(indices[0]) if len(indices) == 1 else f"{indices[0]}-{indices[-1]}"
