"""The env worker: a subprocess that steps a few envs and renders their frames.

A worker answers ``step`` first (observations, rewards and done flags in shared
memory, infos through its pipe) and renders afterwards, straight into its ring,
so rendering overlaps the caller's policy computation. Episodes the schedule
turns down are never rendered. An error, in stepping or in rendering, is sent
back with the env's index and the traceback, in answer to the command it
belongs to or to the next one.

The env logic (:class:`_Worker`'s ``step``, ``reset``, ``call``, ``set_attr``)
takes and returns Python values and message objects (``messages.py``); only
:func:`worker_main`'s loop turns them into bytes, once per command.
"""

from __future__ import annotations

import os
import pickle
import signal
import traceback
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import write_to_shared_memory

from ..errors import ClosedError, EncoderError
from ..triggers import Schedule
from .channel import Endpoint
from .episode import EndReason, EpisodeTracker
from .messages import (
    NOTHING,
    Call,
    Close,
    EnvInfo,
    Error,
    IsWrapped,
    Ok,
    Ready,
    Render,
    Reset,
    SetAttr,
    Step,
    decode,
    encode,
)
from .producer import FrameProducer, ShardedProducer, open_producer
from .remote_error import capture
from .returns import return_reader
from .seedplan import SeedPlan

__all__ = ["worker_main", "WorkerSpec", "Shared", "quiet_sdl"]


#: What ``call`` refuses, as AsyncVectorEnv does: these have their own commands.
RESERVED = ("reset", "step", "close", "_setattr", "_check_spaces")


class Shared:
    """Arrays in shared memory that the vector env and its workers both see.

    ``obs_mem`` is None when observations go through the pipe instead
    (``shared_memory=False``: spaces that shared memory cannot hold).
    """

    def __init__(self, obs_mem: Any, rewards: Any, terminated: Any, truncated: Any) -> None:
        self.obs_mem = obs_mem
        self.rewards = rewards
        self.terminated = terminated
        self.truncated = truncated

    def views(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.frombuffer(self.rewards, dtype=np.float64),
            np.frombuffer(self.terminated, dtype=np.bool_),
            np.frombuffer(self.truncated, dtype=np.bool_),
        )


class WorkerSpec:
    """What one worker needs; picklable (with dill, so lambdas are fine)."""

    def __init__(
        self,
        index: int,
        env_fns: Sequence[Callable[[], Any]],
        first: int,
        env_indices: Sequence[int],
        endpoint: Endpoint,
        schedule: Schedule,
        autoreset_mode: AutoresetMode,
        shared: Shared,
        limits: Sequence[int | None] | None = None,
        on_error: str = "raise",
        gate: bool = False,
        seed_plan: SeedPlan | None = None,
    ) -> None:
        self.index = index
        self.env_fns = list(env_fns)
        self.first = first  # position of our first env in the shared arrays
        self.env_indices = list(env_indices)
        self.endpoint = endpoint
        self.schedule = schedule
        self.autoreset_mode = autoreset_mode
        self.shared = shared
        self.limits = list(limits) if limits is not None else [None] * len(self.env_indices)
        self.on_error = on_error
        # Render only when the vector env says every worker has answered
        # (a "render" message), so a worker that answers first does not take
        # a core from one still stepping; for more workers than cores.
        self.gate = gate
        # Evaluation seeds: every reset of these envs takes the plan's next seed.
        self.seed_plan = seed_plan


class _Failure(Exception):
    def __init__(self, env: int, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.env = env
        self.exc = exc
        self.tb = traceback.format_exc()


def _error_reply(env: int, exc: BaseException, tb: str, recoverable: bool = False) -> Error:
    # The exception itself crosses, so the caller raises the env's class
    # (and rlcapture's FrameError or EnvError as if the env ran in-process).
    return Error(env, capture(exc, tb), recoverable)


class _Worker:
    def __init__(self, spec: WorkerSpec, conn: Any) -> None:
        self.spec = spec
        self.conn = conn
        self.envs: list[Any] = []
        self.trackers = [
            EpisodeTracker(e, spec.schedule, limit)
            for e, limit in zip(spec.env_indices, spec.limits)
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
        self.pending: Error | None = None  # an error from rendering, for the next reply
        # on_error="continue": envs that failed are closed and skipped; the
        # failures not yet reported go out with the next reply.
        self.failed = [False] * len(spec.env_indices)
        self.failures: list[tuple[int, str]] = []
        self.closed = False

    # -- startup --------------------------------------------------------------
    def start(self) -> Ready | Error:
        for j, fn in enumerate(self.spec.env_fns):
            env_index = self.spec.env_indices[j]
            try:
                env = fn()
            except Exception as exc:  # noqa: BLE001 - reported to the caller
                return _error_reply(env_index, exc, traceback.format_exc())
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
            tracker = self.trackers[j]
            if self.failed[j] or (mask is not None and not mask[j]):
                infos.append({})
                continue
            record = tracker.cut(EndReason.RESET)  # reset mid-episode: close its video
            if record is not None:
                self.ended.append(record)
            try:
                _obs, info = self._reset_one(j, seeds[j], options)
            except _Failure as f:
                infos.append({"error": self._fail(j, f)})
                continue
            k = self.spec.first + j
            self.rewards[k] = 0.0
            self.terminated[k] = False
            self.truncated[k] = False
            self.needs_reset[j] = False
            infos.append(info)
        return self._reply(infos)

    def _fail(self, j: int, failure: _Failure) -> str:
        """Take env ``j`` out after it failed, or re-raise when failures are fatal."""
        exc = failure.exc
        if self.spec.on_error != "continue" or isinstance(exc, (EncoderError, ClosedError)):
            raise failure
        message = f"{type(exc).__name__}: {exc}"
        tracker = self.trackers[j]
        self.failed[j] = True
        self.needs_reset[j] = False
        self.to_render = [i for i in self.to_render if i != j]
        self.to_end = [(i, t) for i, t in self.to_end if i != j]
        record = tracker.end(EndReason.ERROR, error=message)
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

    def _reset_one(self, j: int, seed: int | None, options: dict[str, Any] | None) -> tuple[Any, Any]:
        tracker = self.trackers[j]
        try:
            plan = self.spec.seed_plan
            if plan is not None and seed is None:
                seed, index = plan.take(self.spec.first + j)
                seed = tracker.begin(seed, self.envs[j], planned=index is not None, seed_index=index)
            else:
                seed = tracker.begin(seed, self.envs[j])
            obs, info = self.envs[j].reset(seed=seed, options=options)
        except Exception as exc:
            raise _Failure(tracker.env, exc) from exc
        self._write_obs(j, obs)
        if tracker.recording:
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
            except _Failure as f:
                info = {"error": self._fail(j, f)}
            infos.append(info)
            any_info = any_info or bool(info)
        return self._reply(infos if any_info else None)

    def _step_one(self, j: int, action: Any) -> Any:
        env = self.envs[j]
        tracker = self.trackers[j]
        e = tracker.env
        k = self.spec.first + j
        if self.needs_reset[j]:
            self.needs_reset[j] = False
            obs, info = self._reset_one(j, None, None)
            reward, term, trunc = 0.0, False, False
        else:
            try:
                obs, reward, term, trunc, info = env.step(action)
            except Exception as exc:
                raise _Failure(e, exc) from exc
            # Autoreset disabled, a done env stepped without a reset: what it
            # does is the env's business, but it belongs to no episode.
            live = tracker.active
            if live:
                tracker.add(reward)
                if tracker.recording:
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
        tracker = self.trackers[j]
        read = self.returns[j]
        if read is not None:
            try:
                tracker.ret = float(read())
            except Exception:  # noqa: BLE001 - keep the summed rewards
                pass
        self.episodes.append((j, tracker.stats()))

    def _end_episode(self, j: int, terminated: bool) -> None:
        record = self.trackers[j].done(terminated)
        if record is not None:
            self.ended.append(record)

    def _render_pending(self) -> None:
        """Render and send the frames of this step, then announce ended episodes."""
        producer = self.producer
        assert producer is not None
        try:
            for j in list(self.to_render):
                tracker = self.trackers[j]
                try:
                    try:
                        frame = self.envs[j].render()
                    except Exception as exc:
                        raise _Failure(tracker.env, exc) from exc
                    try:
                        ok = producer.frame(tracker.env, tracker.episode, tracker.step, frame)
                    except Exception as exc:
                        raise _Failure(tracker.env, exc) from exc
                except _Failure as f:
                    self._fail(j, f)
                    continue
                tracker.sent(ok)
        finally:
            self.to_render.clear()
            self._finish_ended()

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
        except _Failure as f:
            self.pending = _error_reply(f.env, f.exc, f.tb)

    def call(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], which: Sequence[int] | None = None
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
                raise _Failure(self.trackers[j].env, exc) from exc
        return Ok(results)

    def set_attr(self, name: str, values: Sequence[Any], which: Sequence[int] | None = None) -> Ok:
        """Set ``name`` on this worker's envs (``which``: positions, one value each).

        On the wrapper (or env) that has it, as ``set_wrapper_attr`` decides.
        """
        for k, j in enumerate(range(len(self.envs)) if which is None else which):
            try:
                self.envs[j].set_wrapper_attr(name, values[k])
            except Exception as exc:
                raise _Failure(self.trackers[j].env, exc) from exc
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
        for tracker in self.trackers:
            record = tracker.cut(end)
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


def _serve(worker: _Worker, cmd: Any) -> Ok:
    """Run one command on the worker's envs; its answer."""
    kind = type(cmd)
    if kind is Step:
        return worker.step(cmd.actions)
    if kind is Reset:
        return worker.reset(cmd.seeds, cmd.options, cmd.mask)
    if kind is Call:
        return worker.call(cmd.name, cmd.args, cmd.kwargs, cmd.which)
    if kind is SetAttr:
        return worker.set_attr(cmd.name, cmd.values, cmd.which)
    if kind is IsWrapped:
        return worker.is_wrapped(cmd.wrapper_class, cmd.which)
    raise RuntimeError(f"a worker cannot serve {kind.__name__}")


def quiet_sdl(environ: MutableMapping[str, str]) -> None:
    """Keep SDL (pygame, which classic-control envs render with) from trying a display.

    Without a display SDL still tries Wayland first, whose client library
    prints "error: XDG_RUNTIME_DIR is invalid or not set" once per process:
    64 lines at 64 envs. A worker renders to arrays only, so with no display
    at all SDL is pointed at its dummy driver (with one, SDL tries X11 before
    Wayland and says nothing). Sound is never played in a worker. Set in the
    worker, before any env is made, so the user's process is untouched; an
    SDL variable the user set wins.
    """
    if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        environ.setdefault("SDL_VIDEODRIVER", "dummy")
    environ.setdefault("SDL_AUDIODRIVER", "dummy")


def worker_main(spec: WorkerSpec, conn: Any, parent_conn: Any = None) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    # pygame (classic-control rendering) would otherwise catch SIGTERM, so a
    # stuck worker ignored terminate() and close() had to wait for SIGKILL.
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
    quiet_sdl(os.environ)
    if parent_conn is not None:
        parent_conn.close()
    worker = _Worker(spec, conn)
    try:
        try:
            conn.send_bytes(encode(worker.start()))
        except _Failure as f:
            conn.send_bytes(encode(_error_reply(f.env, f.exc, f.tb)))
            return
        except Exception as exc:  # noqa: BLE001
            conn.send_bytes(encode(_error_reply(spec.env_indices[0], exc, traceback.format_exc())))
            return
        if not worker.envs or worker.producer is None:
            return
        while True:
            try:
                raw = conn.recv_bytes()
            except (EOFError, OSError):
                # The vector env's process is gone: frames held for its go
                # are rendered still, so finished episodes keep their last frame.
                if worker.waiting:
                    worker.waiting = False
                    worker.after_reply()
                return
            cmd = decode(raw)
            if worker.waiting:
                # The go ("render"), or any command after a step whose go was
                # never sent (the vector env raised): frames of the last step
                # are rendered before anything else happens to the envs.
                worker.waiting = False
                worker.after_reply()
            kind = type(cmd)
            if kind is Close:
                try:
                    worker.close()
                    answer: Ok | Error = Ok(None)
                except Exception as exc:  # noqa: BLE001 - e.g. the encoder died (a full disk)
                    # Answered, not printed: the vector env hears of the
                    # encoder's failure from the recorder, in one line.
                    answer = _error_reply(spec.env_indices[0], exc, traceback.format_exc())
                conn.send_bytes(encode(answer))
                return
            if kind is Render:  # every worker has answered; rendered above (no reply)
                continue
            if worker.pending is not None:
                worker.close(EndReason.ERROR)
                conn.send_bytes(encode(worker.pending))
                return
            try:
                reply = _serve(worker, cmd)
            except _Failure as f:
                if kind is Call or kind is SetAttr or kind is IsWrapped:
                    # A bad attribute name is the caller's mistake, not the
                    # env's: answer with it and keep serving.
                    conn.send_bytes(encode(_error_reply(f.env, f.exc, f.tb, recoverable=True)))
                    continue
                worker.close(EndReason.ERROR)
                conn.send_bytes(encode(_error_reply(f.env, f.exc, f.tb)))
                return
            conn.send_bytes(encode(reply))
            if not worker.waiting:
                worker.after_reply()
    except KeyboardInterrupt:
        return
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return  # the vector env's process is gone: no one to answer
    except Exception as exc:  # noqa: BLE001 - sent, never printed over the caller's output
        try:
            conn.send_bytes(encode(_error_reply(spec.env_indices[0], exc, traceback.format_exc())))
        except OSError:
            pass
    finally:
        try:
            worker.close(EndReason.ERROR)
        except Exception:  # noqa: BLE001 - the error that brought us here was already answered
            pass
