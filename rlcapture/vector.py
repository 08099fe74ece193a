"""``CaptureVectorEnv``: a Gymnasium vector env whose workers record as they step.

It behaves like :class:`gymnasium.vector.AsyncVectorEnv` (next-step autoreset
by default, same-step on request), and adds what recording needs: each worker
renders the episodes its schedule picks into its own shared-memory ring, the
encoder process writes one video per (env, episode), and every finished
episode gets ``info["episode"]`` and a line in the manifest. Frames never pass
through this process.
"""

from __future__ import annotations

import atexit
import math
import os
import time
import weakref
from collections.abc import Callable, Sequence
from copy import deepcopy
from enum import Enum
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, create_shared_memory, read_from_shared_memory

from ._backend.messages import (
    Call,
    Close,
    Error,
    Message,
    Ok,
    Ready,
    Render,
    Reset,
    SetAttr,
    Step,
    decode,
    encode,
)
from ._backend.procs import RemoteTraceback, describe_exit, get_context, stop_process, wait
from ._backend.seedplan import SeedPlan, check_seeds
from ._backend.worker import Shared, WorkerSpec, worker_main
from .config import RecordConfig, build_config, keyword_names
from .envs import make_env_fn
from .errors import (
    AlreadyPendingCallError,
    ClosedError,
    ConfigError,
    EnvError,
    FrameError,
    NoAsyncCallError,
    RLCaptureError,
    StepTimeoutError,
    WorkerError,
)
from .recorder import Recorder
from .triggers import ScheduleSpec, as_schedule

__all__ = ["CaptureVectorEnv", "make_vec"]

_RENDER = encode(Render())


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
        autoreset_mode: ``NEXT_STEP`` (Gymnasium's default) or ``SAME_STEP``.
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
        self._procs: list[Any] = []
        self._conns: list[Any] = []
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
                f"autoreset_mode {autoreset_mode!r} is not supported; use NEXT_STEP or SAME_STEP"
            ) from None
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ConfigError("autoreset_mode must be NEXT_STEP or SAME_STEP")
        if on_error not in ("raise", "continue"):
            raise ConfigError(f"on_error must be 'raise' or 'continue', got {on_error!r}")
        self.on_error = on_error
        workers = -(-n // envs_per_worker)
        if render_after_batch is None:
            render_after_batch = workers > usable_cores()
        self.render_after_batch = bool(render_after_batch)
        self.failed = np.zeros(n, dtype=bool)
        self.errors: dict[int, str] = {}
        self._dead: set[int] = set()
        self._owed: set[int] = set()  # workers whose reply has not been read yet
        self._started = False
        self._new_failures: list[int] = []
        self._waiting: list[int] = []  # workers holding frames until every worker answered
        schedule = as_schedule(record)
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
            self.recorder = Recorder(out, record_config, overwrite=overwrite, context=context)
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
            raise EnvError(f"env 0 could not be made: {type(exc).__name__}: {exc}") from exc
        try:
            self._check_env(probe, 0)
            self.single_observation_space = probe.observation_space
            self.single_action_space = probe.action_space
            self.metadata = dict(probe.metadata)
            self.render_mode = probe.render_mode
            self.spec = probe.spec
        finally:
            probe.close()
        obs_mem = create_shared_memory(self.single_observation_space, n, ctx=ctx)
        self._obs = read_from_shared_memory(self.single_observation_space, obs_mem, n)
        shared = Shared(obs_mem, rewards, terminated, truncated)
        if self.episode_seeds is not None:
            self.seed_plan = SeedPlan(self.episode_seeds, n, ctx)
        for w, (lo, hi) in enumerate(self._slices):
            spec = WorkerSpec(
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
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(spec, child, parent),
                name=f"rlcapture-worker-{w}",
                daemon=True,
            )
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        self._state = _State.DEFAULT
        for w in range(len(self._procs)):
            reply = self._receive(w, timeout=max(60.0, self.step_timeout or 0.0))
            for j, info in enumerate(reply):
                env_index = self._slices[w][0] + j
                if (
                    info.observation_space != self.single_observation_space
                    or info.action_space != self.single_action_space
                ):
                    raise EnvError(
                        f"env {env_index} has different spaces from env 0; "
                        "all envs of a vector env need the same spaces"
                    )
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self.metadata["autoreset_mode"] = self.autoreset_mode
        self._started = True

    @staticmethod
    def _check_env(env: gym.Env, index: int) -> None:
        if env.render_mode != "rgb_array":
            raise EnvError(
                f"env {index} has render_mode={env.render_mode!r}; rlcapture records "
                "envs made with render_mode='rgb_array'"
            )

    # -- talking to workers ---------------------------------------------------------
    def _env_of(self, w: int) -> int:
        return self.first_env_index + self._slices[w][0]

    def _live(self) -> list[int]:
        return [w for w in range(len(self._slices)) if w not in self._dead]

    def _send(self, w: int, message: Message) -> None:
        try:
            self._conns[w].send_bytes(encode(message))
            self._owed.add(w)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._lost(w, self._died(w))

    def _lost(self, w: int, err: WorkerError) -> None:
        """A worker died or hung: raise, or (on_error="continue") take its envs out."""
        if self.on_error != "continue" or not self._started:
            self._state = _State.BROKEN
            raise err
        proc = self._procs[w]
        if proc.exitcode is None:
            proc.kill()
            proc.join(2.0)
        self._dead.add(w)
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

    def _died(self, w: int) -> WorkerError:
        proc = self._procs[w]
        proc.join(1.0)
        return WorkerError(
            f"the worker of env {self._env_of(w)} (pid {proc.pid}) died: {describe_exit(proc.exitcode)}",
            self._env_of(w),
            proc.exitcode,
        )

    def _receive(self, w: int, timeout: float | None = None) -> Any:
        replies = self._receive_all([w], timeout)
        return replies[w]

    def _receive_all(self, workers: Sequence[int], timeout: float | None = None) -> dict[int, Any]:
        """Wait for one reply from each worker, watching their liveness and the encoder."""
        pending = {self._conns[w]: w for w in workers}
        sentinels = {self._procs[w].sentinel: w for w in workers}
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: dict[int, Any] = {}
        while pending:
            wait_for = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
            ready = wait(
                list(pending) + [s for s, w in sentinels.items() if w not in replies], wait_for
            )
            for obj in ready:
                if obj in pending:
                    w = pending.pop(obj)
                    self._owed.discard(w)
                    try:
                        raw = obj.recv_bytes()
                    except (EOFError, OSError):
                        self._lost(w, self._died(w))
                        replies[w] = None
                        continue
                    replies[w] = self._unpack(w, raw)
            for obj in ready:
                w = sentinels.get(obj)  # type: ignore[arg-type]
                if (
                    w is not None
                    and w not in replies
                    and self._conns[w] in pending
                    and not self._conns[w].poll()
                ):
                    pending.pop(self._conns[w])
                    self._lost(w, self._died(w))
                    replies[w] = None
            if not ready:
                assert self.recorder is not None
                self.recorder.check()
                if deadline is not None and time.monotonic() >= deadline:
                    for conn, w in list(pending.items()):
                        pending.pop(conn)
                        self._lost(
                            w,
                            StepTimeoutError(
                                f"env {self._env_of(w)} did not answer within {timeout:g} s "
                                f"(worker pid {self._procs[w].pid}); is it stuck?",
                                self._env_of(w),
                                None,
                            ),
                        )
                        replies[w] = None
        for reply in replies.values():
            if isinstance(reply, _CallFailed):  # raised once every worker has answered
                raise reply.error
        return replies

    def _unpack(self, w: int, raw: bytes) -> Any:
        msg = decode(raw)
        if type(msg) is Ok:
            if msg.failures:
                lo = self._slices[w][0]
                for j, message in msg.failures:
                    self._mark_failed(lo + j, message)
            if msg.waiting:
                self._waiting.append(w)
            return msg.value
        if type(msg) is Ready:
            return msg.info
        if type(msg) is not Error:
            raise RuntimeError(f"worker {w} answered with {type(msg).__name__}")
        return self._worker_error(w, msg)

    def _worker_error(self, w: int, msg: Error) -> _CallFailed:
        """Raise the error a worker sent back, with its remote traceback.

        A failed ``call`` (the worker serves on) is returned instead, to be
        raised once every worker has answered.
        """
        env, kind, text, tb, user_error = msg.env, msg.kind, msg.text, msg.traceback, msg.user_error
        proc = self._procs[w]
        if msg.recoverable:  # a failed call(): the worker serves on
            cls = {"AttributeError": AttributeError, "TypeError": TypeError}.get(kind, ValueError)
            call_err = cls(f"env {self.first_env_index + env}: {text}")
            call_err.__cause__ = RemoteTraceback(tb)
            return _CallFailed(call_err)
        proc.join(2.0)
        self._state = _State.BROKEN
        if self.recorder is not None:
            self.recorder.check()  # an encoder death explains a failed render
        where = f"env {self.first_env_index + env}"
        err: Exception
        if user_error:
            user_cls = {"EnvError": EnvError, "FrameError": FrameError}.get(user_error, ConfigError)
            err = user_cls(text if text.startswith("env ") else f"{where}: {text}")
        else:
            err = WorkerError(
                f"{where} raised {kind}: {text} (worker pid {proc.pid}, "
                f"{describe_exit(proc.exitcode)})",
                self.first_env_index + env,
                proc.exitcode,
            )
        err.__cause__ = RemoteTraceback(tb)
        raise err

    def _release_renders(self) -> None:
        """Every worker has answered: tell those holding frames to render them now."""
        waiting, self._waiting = self._waiting, []
        for w in waiting:
            try:
                self._conns[w].send_bytes(_RENDER)
            except OSError:
                pass  # a dead worker is noticed on the next step

    def _assert_ready(self) -> None:
        self._assert_open()
        if self._state != _State.DEFAULT:
            raise AlreadyPendingCallError(
                f"a call to {self._state.value} is already pending; wait for it first",
                self._state.value,
            )

    def _assert_open(self) -> None:
        if self._state == _State.CLOSED:
            raise ClosedError("the vector env is closed")
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
        """Reset every env; ``seed`` gives env i the seed ``seed + i`` (or a list, one each)."""
        self._assert_ready()
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
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(
                seeds[0] if isinstance(seeds[0], int) else None
            )
        self._state = _State.WAITING_RESET
        for w in self._live():
            lo, hi = self._slices[w]
            self._send(w, Reset(seeds[lo:hi], options))
        replies = self._receive_all(self._live(), self.step_timeout)
        self._release_renders()
        self._state = _State.DEFAULT
        infos = self._gather(replies)
        return (deepcopy(self._obs) if self.copy else self._obs), infos

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
        self._assert_ready()
        assert self.recorder is not None
        self.recorder.check()
        if (
            not hasattr(actions, "__getitem__")
            or isinstance(actions, np.generic)
            or (isinstance(actions, np.ndarray) and actions.ndim == 0)
        ):
            # Sending nothing would leave step_wait waiting for ever.
            raise ConfigError(
                f"actions must be a batch of {self.num_envs} actions (an array or a list), "
                f"got {type(actions).__name__}"
            )
        if isinstance(actions, (np.ndarray, list)) and len(actions) != self.num_envs:
            raise ConfigError(f"got {len(actions)} actions for {self.num_envs} envs")
        for w in self._live():
            lo, hi = self._slices[w]
            self._send(w, Step(_take(actions, lo, hi, self.single_action_space)))
        self._state = _State.WAITING_STEP

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Collect what ``step_async`` started."""
        if self._state != _State.WAITING_STEP:
            self._assert_open()
            raise NoAsyncCallError("step_wait called without step_async", "step")
        for w in self._dead:  # envs taken out: zero reward, never done
            lo, hi = self._slices[w]
            self._rewards[lo:hi] = 0.0
            self._terminated[lo:hi] = False
            self._truncated[lo:hi] = False
        replies = self._receive_all(self._live(), self.step_timeout)
        self._release_renders()
        self._state = _State.DEFAULT
        infos = self._gather(replies)
        obs = deepcopy(self._obs) if self.copy else self._obs
        return obs, self._rewards.copy(), self._terminated.copy(), self._truncated.copy(), infos

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call a method (or read an attribute) of every env."""
        return self.call_at(None, name, *args, **kwargs)

    def call_at(
        self, indices: Sequence[int] | None, name: str, *args: Any, **kwargs: Any
    ) -> tuple[Any, ...]:
        """Call a method (or read an attribute) of the envs at ``indices`` only (None: all).

        The other envs are not touched, which matters for methods with side
        effects (SB3's ``env_method(..., indices=...)``).
        """
        self._assert_ready()
        plan = self._plan(indices)
        for w, which in plan.items():
            self._send(w, Call(name, args, kwargs, which))
        replies = self._receive_all(list(plan), self.step_timeout)
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
        """An attribute of every env."""
        return self.call(name)

    def set_attr(
        self,
        name: str,
        values: list[Any] | tuple[Any, ...] | object,
        indices: Sequence[int] | None = None,
    ) -> None:
        """Set an attribute of every env, or of those at ``indices`` (one value for all, or one each)."""
        self._assert_ready()
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

    def close_extras(self, **kwargs: Any) -> None:
        """Close workers (they end running recorded episodes as "closed"), then the recorder."""
        self._shutdown(timeout=kwargs.get("timeout", 30.0))

    def _shutdown(self, timeout: float) -> None:
        hook = getattr(self, "_exit_hook", None)
        if hook is not None:
            atexit.unregister(hook)
            self._exit_hook = None
        first_error: BaseException | None = None
        if self._owed - self._dead and self._state != _State.BROKEN:
            try:  # let a pending step finish so workers read "close" next
                # Only the replies still owed: an interrupt may have come
                # after some were read, and waiting for those would hang.
                self._receive_all(sorted(self._owed - self._dead), timeout)
            except BaseException as exc:  # noqa: BLE001
                first_error = exc
        self._state = _State.CLOSED
        for w, conn in enumerate(self._conns):
            if self._procs[w].is_alive():
                try:
                    conn.send_bytes(encode(Close()))
                except OSError:
                    pass
        deadline = time.monotonic() + timeout
        for conn in self._conns:
            try:
                if conn.poll(max(0.0, deadline - time.monotonic())):
                    conn.recv_bytes()
            except (EOFError, OSError):
                pass
        for proc in self._procs:
            stop_process(proc, max(0.1, deadline - time.monotonic()))
        for conn in self._conns:
            conn.close()
        self._conns = []
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
    """A worker's answer to a ``call`` that raised (the worker itself is fine)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _take(actions: Any, lo: int, hi: int, space: gym.Space) -> Any:
    if isinstance(actions, np.ndarray):
        return actions[lo:hi]
    if isinstance(actions, dict):
        return [
            {k: _take(v, i, i + 1, space)[0] for k, v in actions.items()} for i in range(lo, hi)
        ]
    if isinstance(actions, tuple):
        return [tuple(a[i] for a in actions) for i in range(lo, hi)]
    return list(actions[lo:hi])


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
