"""``CaptureVectorEnv``: a Gymnasium vector env whose workers record as they step.

It behaves like :class:`gymnasium.vector.AsyncVectorEnv`, so code written for
that runs unchanged: the same autoreset modes (next-step by default, same-step,
disabled with ``reset_mask``), observation modes, ``shared_memory=False`` for
spaces that shared memory cannot hold, the ``*_async``/``*_wait`` calls and
their errors, attributes read and set through the wrappers, and the same
observations, rewards, flags and infos for the same seeds and actions (the
differential tests in ``tests/test_dropin.py`` check it step by step). It adds
what recording needs: each worker renders the episodes its schedule picks into
its own shared-memory ring, the encoder process writes one video per (env,
episode), and every finished episode gets a line in the manifest, with the
env's own return. The infos are the env's: rlcapture adds nothing to them
(wrap the envs, or this vector env, in ``RecordEpisodeStatistics`` as with
AsyncVectorEnv; :attr:`CaptureVectorEnv.finished_episodes` says what ended on
the last step). Frames never pass through this process.
"""

from __future__ import annotations

import atexit
import builtins
import math
import os
import weakref
from collections.abc import Callable, Sequence
from copy import deepcopy
from enum import Enum
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import logger
from gymnasium.error import CustomSpaceError
from gymnasium.spaces.utils import is_space_dtype_shape_equiv
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import (
    batch_differing_spaces,
    batch_space,
    concatenate,
    create_empty_array,
    create_shared_memory,
    iterate,
    read_from_shared_memory,
)

from ._backend.messages import (
    Call,
    Error,
    IsWrapped,
    Ok,
    Ready,
    Reset,
    SetAttr,
    Step,
    decode,
)
from ._backend.pool import WorkerPool
from ._backend.procs import RemoteTraceback, describe_exit, get_context
from ._backend.seedplan import SeedPlan, check_seeds
from ._backend.worker import Shared, WorkerSpec
from .config import RecordConfig, build_config, keyword_names
from .envs import error_text, make_env_fn, opengl_hint
from .errors import (
    AlreadyPendingCallError,
    BatchError,
    ClosedError,
    ConfigError,
    EnvError,
    FrameError,
    NoAsyncCallError,
    RLCaptureError,
    SpaceMismatchError,
    WorkerError,
)
from .recorder import Recorder
from .triggers import ScheduleSpec, as_schedule

__all__ = ["CaptureVectorEnv", "make_vec"]


def usable_cores() -> int:
    """CPUs this process may run on (its affinity where the OS says, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _State(Enum):
    """Where the vector env stands; the value names the pending call."""

    DEFAULT = "default"  # ready for a call
    WAITING_RESET = "reset"
    WAITING_STEP = "step"
    WAITING_CALL = "call"
    BROKEN = "broken"  # a worker failed or died: only close() is left
    CLOSED = "closed"


class CaptureVectorEnv(VectorEnv):
    """Steps envs in subprocess workers and records the episodes a schedule picks.

    Args:
        env_fns: One function per env that makes it with ``render_mode="rgb_array"``.
        out: The output folder (a :class:`Recorder` is made and owned), or a
            running :class:`Recorder` to share (it stays open after ``close``).
        record: Which episodes to record: "all", "none", "every:N" or a callable
            ``(env_index, episode_index) -> bool``. Evaluated in the worker at
            each reset.
        envs_per_worker: Envs hosted by one worker process.
        autoreset_mode: ``NEXT_STEP`` (Gymnasium's default), ``SAME_STEP`` or
            ``DISABLED`` (reset done envs with ``reset(options={"reset_mask": mask})``).
        shared_memory: Observations go through shared memory (True) or the
            workers' pipes (False: needed for spaces shared memory cannot hold,
            such as custom, ``Sequence`` and ``Graph`` spaces), as AsyncVectorEnv's.
        observation_mode: "same" (every env has env 0's observation space),
            "different" (same shape and dtype, other bounds), or a pair
            ``(observation_space, single_observation_space)``, as AsyncVectorEnv's.
        step_timeout: Seconds a worker may take to answer before
            :class:`StepTimeoutError`; None waits as long as the worker lives.
        context: ``multiprocess`` start method for the workers.
        copy: Return copies of the observations (else views that the next step
            overwrites).
        first_env_index: Index of the first env in the recording, so several
            vector envs can share one recorder.
        episodes_per_env: A quota of episodes per env (one number, or one per
            env): later episodes still step, as a vector env must, but are
            neither recorded nor written to the manifest.
        on_error: "raise" (default): an env that fails stops the run with
            :class:`WorkerError`. "continue": the env is taken out instead: its
            episode ends (``truncated``, ``info["error"]``, ``end: "error"`` and
            the message in the manifest), then it steps no more (zero reward,
            never done) and :attr:`failed` marks it. A worker process that dies
            takes all of its envs out; the run only stops when no env is left.
        episode_seeds: An evaluation's seed plan (a list or range of seeds):
            every reset that is not given a seed (the first, and each
            autoreset) takes the plan's next seed, whichever env resets, so
            the j-th episode run has seed ``episode_seeds[j]`` however many
            envs there are. Episodes after the plan is used up are not
            counted (neither recorded nor in the manifest); :meth:`seed_indices`
            tells each env's position in the plan. ``reset(seed=...)`` is then
            refused. None (default): resets are seeded only as the caller asks.
        render_after_batch: Workers hold a step's frames until every worker
            has answered the step, then render (while the caller runs its
            policy), so a worker that answers first does not take a core from
            one still stepping. None (default): only when there are more
            workers than usable cores, where that contention happens; with a
            core per worker, rendering at once is earlier and free.
        config: What to record and how (:class:`~rlcapture.RecordConfig`) when
            ``out`` is a folder; None takes the defaults.
        overwrite: Replace a recording already in the folder ``out``.
        **options: :class:`~rlcapture.RecordConfig` options by their flat
            names (``codec="libx265"``, ``drop=True``), applied over ``config``
            when ``out`` is a folder. ``mosaic=True`` means a tile for each
            of these envs.

    Raises:
        ConfigError: An option is unknown (the error lists this class's and
            the config's) or out of range, or recording options come with a
            running :class:`Recorder` (it was configured when it was made).
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        out: str | os.PathLike[str] | Recorder,
        *,
        record: ScheduleSpec = "all",
        envs_per_worker: int = 1,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        shared_memory: bool = True,
        observation_mode: str | tuple[gym.Space, gym.Space] = "same",
        step_timeout: float | None = None,
        context: str | None = None,
        copy: bool = True,
        first_env_index: int = 0,
        episodes_per_env: int | Sequence[int] | None = None,
        on_error: str = "raise",
        episode_seeds: Sequence[int] | None = None,
        render_after_batch: bool | None = None,
        config: RecordConfig | None = None,
        overwrite: bool = False,
        **options: Any,
    ) -> None:
        self._state = _State.CLOSED
        self._pool = WorkerPool(self._unpack, self._lost, self._check_recorder)
        self._owns_recorder = False
        self.recorder: Recorder | None = None
        env_fns = list(env_fns)
        n = len(env_fns)
        if n < 1:
            raise ConfigError("give at least one env function")
        if not (isinstance(envs_per_worker, int) and envs_per_worker >= 1):
            raise ConfigError(
                f"envs_per_worker must be a positive integer, got {envs_per_worker!r}"
            )
        if step_timeout is not None and not (step_timeout > 0 and math.isfinite(step_timeout)):
            raise ConfigError(
                f"step_timeout must be a positive number of seconds, got {step_timeout!r}"
            )
        if not (isinstance(first_env_index, int) and first_env_index >= 0):
            raise ConfigError(
                f"first_env_index must be a non-negative integer, got {first_env_index!r}"
            )
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ConfigError(
                f"autoreset_mode {autoreset_mode!r} is not supported; "
                "use NEXT_STEP, SAME_STEP or DISABLED"
            ) from None
        if isinstance(observation_mode, tuple):
            if len(observation_mode) != 2 or not all(
                isinstance(space, gym.Space) for space in observation_mode
            ):
                raise TypeError(
                    "observation_mode as a tuple must be (observation_space, "
                    f"single_observation_space), two Spaces; got {observation_mode!r}"
                )
        elif observation_mode not in ("same", "different"):
            raise ConfigError(
                "Invalid `observation_mode`, expected: 'same' or 'different' or tuple of single "
                f"and batch observation space, actual got {observation_mode}"
            )
        self.observation_mode = observation_mode
        self.shared_memory = bool(shared_memory)
        if on_error not in ("raise", "continue"):
            raise ConfigError(f"on_error must be 'raise' or 'continue', got {on_error!r}")
        self.on_error = on_error
        workers = -(-n // envs_per_worker)
        if render_after_batch is None:
            render_after_batch = workers > usable_cores()
        self.render_after_batch = bool(render_after_batch)
        self.failed = np.zeros(n, dtype=bool)
        self.errors: dict[int, str] = {}
        self._started = False
        self._new_failures: list[int] = []
        #: Episodes that finished on the last step, by env position: ``{"r", "l",
        #: "t"}``, ``r`` the env's own return (its innermost
        #: ``RecordEpisodeStatistics`` where it has one), as in the manifest.
        self.finished_episodes: dict[int, dict[str, Any]] = {}
        self._pipe_obs: list[Any] = [None] * n
        self._waiting: list[int] = []  # workers holding frames until every worker answered
        schedule = as_schedule(record, envs=n)
        if episodes_per_env is None or isinstance(episodes_per_env, int):
            limits: list[int | None] = [episodes_per_env] * n
        else:
            limits = list(episodes_per_env)
            if len(limits) != n:
                raise ConfigError(f"got {len(limits)} episode quotas for {n} envs")
        if any(q is not None and not (isinstance(q, int) and q >= 0) for q in limits):
            raise ConfigError("episodes_per_env must hold non-negative integers")
        self._limits = limits
        self.episode_seeds = None if episode_seeds is None else check_seeds(episode_seeds, "episode_seeds")
        self.seed_plan: SeedPlan | None = None
        self.num_envs = n
        self.autoreset_mode = mode
        self.step_timeout = step_timeout
        self.copy = copy
        self.first_env_index = first_env_index

        record_config = build_config(
            config,
            options,
            front="CaptureVectorEnv",
            front_options=keyword_names(CaptureVectorEnv.__init__),
        )
        if isinstance(out, Recorder):
            given = sorted(options) + (["config"] if config is not None else [])
            given += ["overwrite"] if overwrite else []
            if given:
                raise ConfigError(
                    f"{', '.join(given)} apply when out is a folder; the Recorder given was "
                    "configured when it was made (pass them to Recorder(...) instead)"
                )
            self.recorder = out
        else:
            if record_config.mosaic is True:  # a tile for each of these envs
                record_config = record_config.replace(mosaic=first_env_index + n)
            self.recorder = Recorder(
                out, record_config, overwrite=overwrite, context=context, envs=first_env_index + n
            )
            self._owns_recorder = True
        try:
            self._start(env_fns, schedule, envs_per_worker, context)
        except BaseException:
            self._shutdown(timeout=5.0)
            raise
        # Registered after the recorder's own exit hook, so it runs first: an
        # env left open at exit closes its workers (ending their videos) before
        # the recorder waits for them to say goodbye.
        self._exit_hook = _exit_hook(weakref.ref(self))
        atexit.register(self._exit_hook)

    # -- startup ------------------------------------------------------------------
    def _start(
        self,
        env_fns: list[Callable[[], gym.Env]],
        schedule: Any,
        per_worker: int,
        context: str | None,
    ) -> None:
        assert self.recorder is not None
        ctx = get_context(context)
        n = self.num_envs
        base = self.first_env_index
        gate = self.render_after_batch
        self._slices = [(i, min(n, i + per_worker)) for i in range(0, n, per_worker)]
        # The observation space is only known from an env: the first worker
        # reports it, then the shared arrays for all are made.
        rewards = ctx.RawArray("d", n)
        terminated = ctx.RawArray("b", n)
        truncated = ctx.RawArray("b", n)
        self._rewards = np.frombuffer(rewards, dtype=np.float64)
        self._terminated = np.frombuffer(terminated, dtype=np.bool_)
        self._truncated = np.frombuffer(truncated, dtype=np.bool_)
        try:
            probe = env_fns[0]()
        except RLCaptureError:
            raise
        except Exception as exc:
            hint = opengl_hint(error_text(exc))
            raise EnvError(
                f"env 0 could not be made: {hint or f'{type(exc).__name__}: {exc}'}"
            ) from exc
        try:
            self._check_env(probe, 0)
            if isinstance(self.observation_mode, tuple):
                self.observation_space, self.single_observation_space = self.observation_mode
            else:
                self.single_observation_space = probe.observation_space
            self.single_action_space = probe.action_space
            self.metadata = dict(probe.metadata)
            self.render_mode = probe.render_mode
            self.spec = probe.spec
        finally:
            probe.close()
        obs_mem = None
        if self.shared_memory:
            try:
                obs_mem = create_shared_memory(self.single_observation_space, n, ctx=ctx)
            except (CustomSpaceError, TypeError) as exc:  # custom; dynamic shapes
                raise ConfigError(
                    f"the observation space {self.single_observation_space} cannot go through "
                    "shared memory; pass shared_memory=False (observations then go through "
                    "the workers' pipes)"
                ) from exc
            self._obs = read_from_shared_memory(self.single_observation_space, obs_mem, n)
        else:
            self._obs = create_empty_array(self.single_observation_space, n, fn=np.zeros)
        shared = Shared(obs_mem, rewards, terminated, truncated)
        if self.episode_seeds is not None:
            self.seed_plan = SeedPlan(self.episode_seeds, n, ctx)
        specs = [
            WorkerSpec(
                index=w,
                env_fns=env_fns[lo:hi],
                first=lo,
                env_indices=list(range(base + lo, base + hi)),
                endpoint=self.recorder.endpoint,
                schedule=schedule,
                autoreset_mode=self.autoreset_mode,
                shared=shared,
                limits=self._limits[lo:hi],
                on_error=self.on_error,
                gate=gate,
                seed_plan=self.seed_plan,
            )
            for w, (lo, hi) in enumerate(self._slices)
        ]
        self._pool.start(ctx, specs)
        self._state = _State.DEFAULT
        spaces = []
        for w in range(len(specs)):
            reply = self._receive_all([w], timeout=max(60.0, self.step_timeout or 0.0))[w]
            for j, info in enumerate(reply):
                self._check_spaces(self._slices[w][0] + j, info)
                spaces.append(info.observation_space)
        if self.observation_mode == "same":
            self.observation_space = batch_space(self.single_observation_space, n)
        elif self.observation_mode == "different":
            self.observation_space = batch_differing_spaces(spaces)
        self.action_space = batch_space(self.single_action_space, n)
        self.metadata["autoreset_mode"] = self.autoreset_mode
        self._started = True

    def _check_spaces(self, env_index: int, info: Any) -> None:
        """Env ``env_index``'s spaces against the vector env's, as AsyncVectorEnv checks them."""
        space = info.observation_space
        if self.observation_mode == "same":
            if space != self.single_observation_space:
                raise SpaceMismatchError(
                    "CaptureVectorEnv(..., observation_mode='same') however the "
                    f"sub-environments observation spaces are not equivalent. Env {env_index} "
                    f"has {space}, env 0 {self.single_observation_space}. If this is "
                    "intentional, use `observation_mode='different'` instead."
                )
        elif not is_space_dtype_shape_equiv(self.single_observation_space, space):
            raise SpaceMismatchError(
                f"env {env_index}'s observation space {space} does not share a shape and "
                f"dtype with {self.single_observation_space}"
            )
        if info.action_space != self.single_action_space:
            raise SpaceMismatchError(
                f"env {env_index} has a different action space from env 0 "
                f"({info.action_space} against {self.single_action_space}); the actions "
                "of a vector env are batched, so every env needs the same"
            )

    @staticmethod
    def _check_env(env: gym.Env, index: int) -> None:
        if env.render_mode == "rgb_array_list":
            raise EnvError(
                f"env {index} has render_mode='rgb_array_list'; rlcapture takes each frame "
                "as it is rendered: make the env with render_mode='rgb_array' instead"
            )
        if env.render_mode != "rgb_array":
            raise EnvError(
                f"env {index} has render_mode={env.render_mode!r}; rlcapture records "
                "envs made with render_mode='rgb_array'"
            )

    # -- talking to workers ---------------------------------------------------------
    @property
    def worker_pids(self) -> list[int]:
        """The process id of each worker (with ``envs_per_worker=W``, worker ``w`` hosts envs ``w*W`` on)."""
        return self._pool.pids()

    def _live(self) -> list[int]:
        return self._pool.live()

    def _send(self, w: int, message: Any) -> None:
        self._pool.send(w, message)

    def _check_recorder(self) -> None:
        """While waiting on workers: an encoder that died is said at once."""
        if self.recorder is not None:
            self.recorder.check()

    def _lost(self, w: int, err: WorkerError) -> None:
        """A worker died or hung: raise, or (on_error="continue") take its envs out."""
        if self.on_error != "continue" or not self._started:
            self._state = _State.BROKEN
            raise err
        self._pool.take_out(w)
        lo, hi = self._slices[w]
        for k in range(lo, hi):
            if not self.failed[k]:
                self._mark_failed(k, str(err))
            self._rewards[k] = 0.0
            self._terminated[k] = False
            self._truncated[k] = True
        if not self._live():
            self._state = _State.BROKEN
            raise WorkerError(f"every env has failed; the last: {err}", err.env_index, err.exitcode)

    def _mark_failed(self, k: int, message: str) -> None:
        self.failed[k] = True
        self.errors[self.first_env_index + k] = message
        self._new_failures.append(k)

    def _receive_all(self, workers: Sequence[int], timeout: float | None = None) -> dict[int, Any]:
        """One reply from each worker (the pool watches liveness and the deadline).

        A worker's error answer is raised once every worker has answered, so
        no reply is left unread in a pipe.
        """
        replies = self._pool.receive_all(workers, timeout)
        failed = [r for r in replies.values() if isinstance(r, _CallFailed)]
        if failed:
            fatal = [f for f in failed if f.fatal]
            if any(isinstance(f.error, WorkerError) for f in fatal):
                logger.error("Raising the last exception back to the main process.")
            raise (fatal or failed)[-1].error
        return replies

    def _unpack(self, w: int, raw: bytes) -> Any:
        msg = decode(raw)
        if type(msg) is Ok:
            lo = self._slices[w][0]
            if msg.failures:
                for j, message in msg.failures:
                    self._mark_failed(lo + j, message)
            if msg.observations is not None:
                self._pipe_obs[lo : lo + len(msg.observations)] = msg.observations
            for j, stats in msg.episodes:
                self.finished_episodes[lo + j] = stats
            if msg.waiting:
                self._waiting.append(w)
            return msg.value
        if type(msg) is Ready:
            return msg.info
        if type(msg) is not Error:
            raise RuntimeError(f"worker {w} answered with {type(msg).__name__}")
        return self._worker_error(w, msg)

    def _worker_error(self, w: int, msg: Error) -> _CallFailed:
        """The error a worker sent back, with its remote traceback, to raise.

        It is raised once every worker has answered (the last, as
        AsyncVectorEnv raises, each logged as AsyncVectorEnv logs them), so
        no reply is left unread in a pipe.
        """
        env, kind, text, tb, user_error = msg.env, msg.kind, msg.text, msg.traceback, msg.user_error
        proc = self._pool.procs[w]
        if msg.recoverable:  # a failed call(): the worker serves on
            cls = _builtin(kind) or ValueError
            call_err = cls(f"env {self.first_env_index + env}: {text}")
            call_err.__cause__ = RemoteTraceback(tb)
            return _CallFailed(call_err)
        proc.join(2.0)
        self._state = _State.BROKEN
        if self.recorder is not None:
            self.recorder.check()  # an encoder death explains a failed render
        where = f"env {self.first_env_index + env}"
        err: Exception
        hint = None if user_error else opengl_hint(f"{text}\n{tb}")
        if hint:
            err = EnvError(f"{where}: {hint}")
        elif user_error:
            user_cls = {"EnvError": EnvError, "FrameError": FrameError}.get(user_error, ConfigError)
            err = user_cls(text if text.startswith("env ") else f"{where}: {text}")
        else:
            # Also an instance of the env's own error where that is a builtin
            # (``except ValueError`` around a step catches it, as with
            # AsyncVectorEnv, which raises the env's error class again).
            err = _worker_error_class(kind)(
                f"{where} raised {kind}: {text} (worker pid {proc.pid}, "
                f"{describe_exit(proc.exitcode)})",
                self.first_env_index + env,
                proc.exitcode,
            )
            logger.error(
                f"Received the following error from Worker-{env - self.first_env_index} "
                "- Shutting it down"
            )
            logger.error(tb)
        err.__cause__ = RemoteTraceback(tb)
        return _CallFailed(err, fatal=True)

    def _release_renders(self) -> None:
        """Every worker has answered: tell those holding frames to render them now."""
        waiting, self._waiting = self._waiting, []
        self._pool.release_renders(waiting)

    def _assert_ready(self, call: str) -> None:
        self._assert_open()
        if self._state != _State.DEFAULT:
            # Gymnasium's words, which code written for AsyncVectorEnv may match.
            raise AlreadyPendingCallError(
                f"Calling `{call}` while waiting for a pending call to `{self._state.value}` "
                "to complete.",
                self._state.value,
            )

    def _assert_open(self) -> None:
        if self._state == _State.CLOSED:
            raise ClosedError(
                f"Trying to operate on `{type(self).__name__}`, after a call to `close()`: "
                "it is closed"
            )
        if self._state == _State.BROKEN:
            raise ClosedError(
                "a worker of this vector env failed earlier; close it and make a new one"
            )

    # -- Gymnasium API ------------------------------------------------------------------
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Reset every env; ``seed`` gives env i the seed ``seed + i`` (or a list, one each).

        ``options["reset_mask"]`` (a boolean array, one flag per env) resets
        only the envs it marks, as AsyncVectorEnv does: the others keep their
        episode, and their observation in the batch.
        """
        self.reset_async(seed=seed, options=options)
        return self.reset_wait()

    def reset_async(
        self,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        """Send the resets without waiting; :meth:`reset_wait` collects them."""
        self._assert_open()
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ConfigError(f"got {len(seeds)} seeds for {self.num_envs} envs")
        if self.seed_plan is not None and any(s is not None for s in seeds):
            raise ConfigError(
                "this vector env takes its seeds from episode_seeds; reset it without a seed"
            )
        self._assert_ready("reset_async")
        mask = None
        if options is not None and "reset_mask" in options:
            options = dict(options)
            mask = _check_mask(options.pop("reset_mask"), self.num_envs)
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(
                seeds[0] if isinstance(seeds[0], int) else None
            )
        self.finished_episodes = {}
        for w in self._live():
            lo, hi = self._slices[w]
            which = None if mask is None else [bool(m) for m in mask[lo:hi]]
            if which is None or any(which):
                self._send(w, Reset(seeds[lo:hi], options, which))
        self._state = _State.WAITING_RESET

    def reset_wait(self, timeout: float | None = None) -> tuple[Any, dict[str, Any]]:
        """Collect what :meth:`reset_async` started.

        Args:
            timeout: Seconds to wait (None: the ``step_timeout`` given at
                construction); past it, :class:`StepTimeoutError` (also a
                ``multiprocessing.TimeoutError``, as AsyncVectorEnv raises).
        """
        if self._state != _State.WAITING_RESET:
            self._assert_open()
            raise NoAsyncCallError(
                "Calling `reset_wait` without any prior call to `reset_async`.", "reset"
            )
        replies = self._receive_all(self._pool.owed_live(), self._timeout(timeout))
        self._release_renders()
        self._state = _State.DEFAULT
        infos = self._gather(replies)
        return self._observations(), infos

    def _timeout(self, timeout: float | None) -> float | None:
        return self.step_timeout if timeout is None else timeout

    def _observations(self) -> Any:
        if not self.shared_memory:
            self._obs = concatenate(self.single_observation_space, self._pipe_obs, self._obs)
        return deepcopy(self._obs) if self.copy else self._obs

    def seed_indices(self) -> np.ndarray:
        """Each env's position in ``episode_seeds`` for its running episode (-1: none).

        A policy that reseeds itself per episode reads this after each reset
        or step: a changed position means a new episode, with seed
        ``episode_seeds[position]``.
        """
        if self.seed_plan is None:
            return np.full(self.num_envs, -1, dtype=np.int64)
        return self.seed_plan.current()

    def _gather(self, replies: dict[int, Any]) -> dict[str, Any]:
        """Merge the workers' infos, with ``info["error"]`` for envs that failed just now."""
        infos: dict[str, Any] = {}
        for w, per_env in replies.items():
            if per_env is not None:
                lo = self._slices[w][0]
                for j, info in enumerate(per_env):
                    if info:
                        infos = self._add_info(infos, info, lo + j)
        for k in self._new_failures:
            infos = self._add_info(infos, {"error": self.errors[self.first_env_index + k]}, k)
        self._new_failures = []
        return infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env; episodes that ended last step are reset (next-step autoreset)."""
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: Any) -> None:
        """Send actions to the workers without waiting."""
        self._assert_ready("step_async")
        assert self.recorder is not None
        self.recorder.check()
        if (
            not hasattr(actions, "__getitem__")
            or isinstance(actions, np.generic)
            or (isinstance(actions, np.ndarray) and actions.ndim == 0)
        ):
            # Sending nothing would leave step_wait waiting for ever.
            raise BatchError(
                f"actions must be a batch of {self.num_envs} actions (an array or a list), "
                f"got {type(actions).__name__}"
            )
        if isinstance(actions, (np.ndarray, list)) and len(actions) != self.num_envs:
            raise ConfigError(f"got {len(actions)} actions for {self.num_envs} envs")
        # Split as AsyncVectorEnv does, by the batched space: right for
        # every space (Dict, nested Tuple, Text, OneOf, Graph, custom).
        split = list(iterate(self.action_space, actions))
        if len(split) != self.num_envs:
            raise ConfigError(f"got {len(split)} actions for {self.num_envs} envs")
        self.finished_episodes = {}
        for w in self._live():
            lo, hi = self._slices[w]
            self._send(w, Step(split[lo:hi]))
        self._state = _State.WAITING_STEP

    def step_wait(
        self, timeout: float | None = None
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Collect what ``step_async`` started.

        Args:
            timeout: Seconds to wait (None: the ``step_timeout`` given at
                construction); past it, :class:`StepTimeoutError` (also a
                ``multiprocessing.TimeoutError``, as AsyncVectorEnv raises).
        """
        if self._state != _State.WAITING_STEP:
            self._assert_open()
            raise NoAsyncCallError(
                "Calling `step_wait` without any prior call to `step_async`.", "step"
            )
        for w in self._pool.dead:  # envs taken out: zero reward, never done
            lo, hi = self._slices[w]
            self._rewards[lo:hi] = 0.0
            self._terminated[lo:hi] = False
            self._truncated[lo:hi] = False
        replies = self._receive_all(self._live(), self._timeout(timeout))
        self._release_renders()
        self._state = _State.DEFAULT
        infos = self._gather(replies)
        obs = self._observations()
        return obs, self._rewards.copy(), self._terminated.copy(), self._truncated.copy(), infos

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call a method (or read an attribute) of every env."""
        return self.call_at(None, name, *args, **kwargs)

    def call_at(
        self, indices: Sequence[int] | None, name: str, *args: Any, **kwargs: Any
    ) -> tuple[Any, ...]:
        """Call a method (or read an attribute) of the envs at ``indices`` only (None: all).

        The other envs are not touched, which matters for methods with side
        effects (SB3's ``env_method(..., indices=...)``). As AsyncVectorEnv,
        ``name`` is looked up through the wrappers (``get_wrapper_attr``).
        """
        self._assert_ready("call")
        plan = self._plan(indices)
        for w, which in plan.items():
            self._send(w, Call(name, args, kwargs, which))
        replies = self._receive_all(list(plan), self.step_timeout)
        return self._results(plan, indices, replies)

    def call_async(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Start :meth:`call` on every env without waiting; :meth:`call_wait` collects it."""
        self._assert_ready("call_async")
        plan = self._plan(None)
        for w, which in plan.items():
            self._send(w, Call(name, args, kwargs, which))
        self._state = _State.WAITING_CALL

    def call_wait(self, timeout: float | None = None) -> tuple[Any, ...]:
        """Collect what :meth:`call_async` started (``timeout`` as in :meth:`step_wait`)."""
        if self._state != _State.WAITING_CALL:
            self._assert_open()
            raise NoAsyncCallError(
                "Calling `call_wait` without any prior call to `call_async`.", "call"
            )
        plan = self._plan(None)
        try:
            replies = self._receive_all(self._pool.owed_live(), self._timeout(timeout))
        finally:
            if self._state == _State.WAITING_CALL:
                self._state = _State.DEFAULT
        return self._results(plan, None, replies)

    def _results(
        self,
        plan: dict[int, list[int] | None],
        indices: Sequence[int] | None,
        replies: dict[int, Any],
    ) -> tuple[Any, ...]:
        """The workers' answers to a call, in the order of ``indices`` (None: all envs)."""
        found: dict[int, Any] = {}
        for w, which in plan.items():
            lo, hi = self._slices[w]
            local = range(hi - lo) if which is None else which
            for j, value in zip(local, replies.get(w) or [None] * len(local)):
                found[lo + j] = value
        order = range(self.num_envs) if indices is None else indices
        return tuple(found.get(i) for i in order)

    def _plan(self, indices: Sequence[int] | None) -> dict[int, list[int] | None]:
        """Per live worker, the positions among its envs that ``indices`` names."""
        live = self._live()
        if indices is None:
            return dict.fromkeys(live)
        plan: dict[int, list[int] | None] = {}
        for i in indices:
            if not (isinstance(i, (int, np.integer)) and 0 <= i < self.num_envs):
                raise ConfigError(f"env index {i!r} is out of range [0, {self.num_envs})")
            w = next(w for w, (lo, hi) in enumerate(self._slices) if lo <= i < hi)
            if w in live:
                local = plan.setdefault(w, [])
                assert local is not None
                local.append(int(i) - self._slices[w][0])
        return plan

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """An attribute of every env, from whichever wrapper (or the env) has it."""
        return self.call(name)

    @property
    def np_random_seed(self) -> tuple[int, ...]:  # type: ignore[override]
        """The seed of each env's ``np_random``, as AsyncVectorEnv's."""
        return self.get_attr("np_random_seed")

    @property
    def np_random(self) -> tuple[np.random.Generator, ...]:  # type: ignore[override]
        """Each env's ``np_random`` (copies, from the workers), as AsyncVectorEnv's."""
        return self.get_attr("np_random")

    def env_is_wrapped(
        self, wrapper_class: type, indices: Sequence[int] | None = None
    ) -> list[bool]:
        """Whether each env (at ``indices``; None: all) has ``wrapper_class`` among its wrappers.

        What SB3's ``VecEnv.env_is_wrapped`` asks (``Monitor``, for example).
        Envs taken out (``on_error="continue"``) answer False.
        """
        self._assert_ready("env_is_wrapped")
        plan = self._plan(indices)
        for w, which in plan.items():
            self._send(w, IsWrapped(wrapper_class, which))
        replies = self._receive_all(list(plan), self.step_timeout)
        found: dict[int, bool] = {}
        for w, which in plan.items():
            lo, hi = self._slices[w]
            local = range(hi - lo) if which is None else which
            for j, value in zip(local, replies.get(w) or [False] * len(local)):
                found[lo + j] = bool(value)
        order = range(self.num_envs) if indices is None else indices
        return [found.get(int(i), False) for i in order]

    def set_attr(
        self,
        name: str,
        values: list[Any] | tuple[Any, ...] | object,
        indices: Sequence[int] | None = None,
    ) -> None:
        """Set an attribute of every env, or of those at ``indices`` (one value for all, or one each).

        On whichever wrapper (or the env) has it (``set_wrapper_attr``), as AsyncVectorEnv.
        """
        self._assert_ready("set_attr")
        count = self.num_envs if indices is None else len(indices)
        if not isinstance(values, (list, tuple)):
            values = [values] * count
        if len(values) != count:
            raise ConfigError(f"got {len(values)} values for {count} envs")
        value_of = dict(zip(range(self.num_envs) if indices is None else indices, values))
        plan = self._plan(indices)
        for w, which in plan.items():
            lo, hi = self._slices[w]
            local = list(range(hi - lo)) if which is None else which
            self._send(w, SetAttr(name, [value_of[lo + j] for j in local], which))
        self._receive_all(list(plan), self.step_timeout)

    def render(self) -> tuple[Any, ...] | None:
        """Frames of every env, fetched through the pipes (recording does not need this)."""
        return self.call("render")

    def close_extras(self, timeout: float | None = None, terminate: bool = False) -> None:
        """Close workers (they end running recorded episodes as "closed"), then the recorder.

        Args:
            timeout: Seconds the workers have to finish (None: 30).
            terminate: Give them one second, as AsyncVectorEnv's forced close.
        """
        if self._state in (_State.WAITING_RESET, _State.WAITING_STEP, _State.WAITING_CALL):
            logger.warn(
                f"Calling `close` while waiting for a pending call to `{self._state.value}` "
                "to complete."
            )
        self._shutdown(timeout=1.0 if terminate else (30.0 if timeout is None else timeout))

    def _shutdown(self, timeout: float) -> None:
        hook = getattr(self, "_exit_hook", None)
        if hook is not None:
            atexit.unregister(hook)
            self._exit_hook = None
        first_error: BaseException | None = None
        pool = self._pool
        if pool.owed_live() and self._state != _State.BROKEN:
            try:  # let a pending step finish so workers read "close" next
                # Only the replies still owed: an interrupt may have come
                # after some were read, and waiting for those would hang.
                self._receive_all(pool.owed_live(), timeout)
            except BaseException as exc:  # noqa: BLE001
                first_error = exc
        self._state = _State.CLOSED
        pool.stop(timeout)
        if self._owns_recorder and self.recorder is not None:
            try:
                self.recorder.close()
            except BaseException as exc:  # noqa: BLE001
                first_error = first_error or exc
        if first_error is not None and not isinstance(first_error, RLCaptureError):
            raise first_error

    def __del__(self) -> None:
        try:  # at interpreter exit even module globals may be gone
            if self._state != _State.CLOSED:
                self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def __repr__(self) -> str:
        return f"CaptureVectorEnv({self.num_envs} envs, out={str(self.recorder.out) if self.recorder else None!r})"


def _exit_hook(ref: weakref.ref[CaptureVectorEnv]) -> Callable[[], None]:
    def close_at_exit() -> None:
        envs = ref()
        if envs is not None and envs._state != _State.CLOSED:
            try:
                envs.close(timeout=10.0)
            except Exception:  # noqa: BLE001 - at exit there is no one to tell
                pass

    return close_at_exit


class _CallFailed:
    """A worker's error answer, raised once every worker has answered.

    ``fatal``: the worker stopped (a step or reset failed); else a ``call``
    failed and the worker serves on.
    """

    def __init__(self, error: Exception, fatal: bool = False) -> None:
        self.error = error
        self.fatal = fatal  # the worker stopped: the vector env is broken


def _check_mask(mask: Any, n: int) -> np.ndarray:
    """``options["reset_mask"]``, checked as AsyncVectorEnv checks it."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"`options['reset_mask']` must be a numpy array, got {type(mask)}")
    if mask.shape != (n,):
        raise ValueError(f"`options['reset_mask']` must have shape `({n},)`, got {mask.shape}")
    if mask.dtype != np.bool_:
        raise TypeError(f"`options['reset_mask']` must have `dtype=np.bool_`, got {mask.dtype}")
    if not np.any(mask):
        raise ValueError(
            "`options['reset_mask']` must contain a boolean array with at least one True "
            f"value, got reset_mask={mask}"
        )
    return mask


def _builtin(kind: str) -> type[Exception] | None:
    """The builtin exception class named ``kind``, if there is one."""
    cls = getattr(builtins, kind, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls
    return None


_WORKER_ERRORS: dict[str, type[WorkerError]] = {}


def _worker_error_class(kind: str) -> type[WorkerError]:
    """:class:`WorkerError`, also a subclass of the builtin error ``kind`` where it can be."""
    cls = _WORKER_ERRORS.get(kind)
    if cls is None:
        base = _builtin(kind)
        cls = WorkerError
        if base is not None and not issubclass(WorkerError, base):
            try:
                cls = type("WorkerError", (WorkerError, base), {"__module__": WorkerError.__module__})
            except TypeError:  # a builtin with its own layout (OSError...)
                cls = WorkerError
        _WORKER_ERRORS[kind] = cls
    return cls


def make_vec(
    env_id: str,
    num_envs: int,
    out: str | os.PathLike[str] | Recorder,
    *,
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    **kwargs: Any,
) -> CaptureVectorEnv:
    """Make ``num_envs`` copies of a registered env that record into ``out``.

    Like :func:`gymnasium.make_vec` with ``render_mode="rgb_array"``; the other
    keyword arguments go to :class:`CaptureVectorEnv` (its own, ``config=``,
    and :class:`~rlcapture.RecordConfig` options).

    Raises:
        EnvError: If the id is unknown, needs a missing extra, or cannot render
            to an array.
    """
    fn = make_env_fn(env_id, env_kwargs=env_kwargs, max_episode_steps=max_episode_steps)
    return CaptureVectorEnv([fn] * num_envs, out, **kwargs)
