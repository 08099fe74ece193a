"""A vector env's worker processes, seen as its envs.

:class:`~rlcapture._backend.pool.WorkerPool` knows processes: it starts them,
sends bytes and waits on pipes, sentinels and a deadline. This file knows what
those processes mean to the vector env: worker ``w`` hosts the envs at
positions ``lo:hi`` (the one place that mapping is written), a reply carries
infos, failures, finished episodes and observations for those envs, an error
reply is raised once every worker has answered, and a lost worker either
breaks the vector env or (``on_error="continue"``) takes its envs out.

The vector env keeps the Gymnasium API, its spaces and its state; it asks the
group to start, send, receive and map indices. The group holds the vector
env's one callback (it broke) weakly, and the pool holds the group's weakly,
so a vector env dropped without ``close()`` is still finalized at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from gymnasium import logger

from ..errors import ConfigError, EnvError, FrameError, WorkerError
from .messages import Error, Message, Ok, Ready, Reset, decode
from .pool import WorkerPool
from .procs import describe_exit
from .remote_error import RemoteTraceback, also_builtin, rebuild
from .worker import Shared, WorkerSpec

__all__ = ["WorkerGroup"]

#: What a worker raises that is the caller's own mistake: raised as itself.
_CALLERS_MISTAKES = (EnvError, FrameError, ConfigError)

#: Per live worker, the positions among its envs that a call names (None: all).
Plan = dict[int, "list[int] | None"]


class _Failed:
    """A worker's error answer, raised once every worker has answered.

    ``fatal``: the worker stopped (a step or reset failed); else a ``call``
    failed and the worker serves on.
    """

    def __init__(self, error: BaseException, fatal: bool = False) -> None:
        self.error = error
        self.fatal = fatal


class WorkerGroup:
    """The envs at positions ``0..num_envs-1``, ``per_worker`` to a worker process.

    Args:
        num_envs: Envs of the vector env.
        per_worker: Envs hosted by one worker process.
        first_env_index: Index of env 0 in the recording.
        on_error: "raise" (a failed or lost worker breaks the group) or
            "continue" (a lost worker's envs are taken out).
        step_timeout: Seconds a worker may take to answer (None: as long as
            it lives), unless a wait says otherwise.
        check: Called while waiting on workers, and before an error is
            raised: the recorder's check, so an encoder that died is said
            first (it explains a failed render).
        hint: What to do about an env's error, from its message and
            traceback, or None (MuJoCo without OpenGL).
        on_broken: Called (if its object lives) when the group breaks, before
            the error is raised: the vector env's state change. Held weakly,
            as the pool holds the group's callbacks, so the vector env is
            finalized as soon as it is dropped.

    Attributes:
        broken: A worker failed or was lost: only :meth:`stop` is left.
        failed: Per env, taken out (``on_error="continue"``).
        errors: Recording index -> the error that took the env out.
        finished: Episodes that ended with the last replies, by env position.
        rewards, terminated, truncated: The step's results (shared with the
            workers; set by :meth:`start`).
    """

    def __init__(
        self,
        num_envs: int,
        per_worker: int,
        first_env_index: int,
        on_error: str,
        step_timeout: float | None,
        check: Callable[[], None],
        hint: Callable[[str], str | None],
        on_broken: weakref.WeakMethod,  # type: ignore[type-arg]
    ) -> None:
        self.num_envs = num_envs
        self.first_env_index = first_env_index
        self.on_error = on_error
        self.step_timeout = step_timeout
        self.slices = [
            (lo, min(num_envs, lo + per_worker)) for lo in range(0, num_envs, per_worker)
        ]
        self._worker_of = [w for w, (lo, hi) in enumerate(self.slices) for _ in range(lo, hi)]
        self._check = check
        self._hint = hint
        self._on_broken = on_broken
        self.pool = WorkerPool(self._unpack, self._lost, self._idle)
        self.broken = False
        self.started = False
        self.failed = np.zeros(num_envs, dtype=bool)
        self.errors: dict[int, str] = {}
        self.finished: dict[int, dict[str, Any]] = {}
        self.observations: list[Any] = [None] * num_envs  # when they come through the pipes
        self.rewards = self.terminated = self.truncated = np.zeros(0)
        self._new_failures: list[int] = []
        self._waiting: list[int] = []  # workers holding frames until every worker answered

    # -- start and stop -------------------------------------------------------------
    def start(
        self,
        ctx: Any,
        env_fns: Sequence[Callable[[], Any]],
        obs_mem: Any,
        limits: Sequence[int | None],
        check_env: Callable[[int, Any], None],
        timeout: float,
        **spec: Any,
    ) -> None:
        """Start a worker per slice of ``env_fns``, and wait for each to be ready.

        Args:
            ctx: The ``multiprocess`` context.
            env_fns: One function per env.
            obs_mem: Shared memory for the observations (None: the pipes).
            limits: Each env's episode quota (None: none).
            check_env: ``check_env(position, info)`` for each env's
                :class:`~rlcapture._backend.messages.EnvInfo`, as its worker
                reports it.
            timeout: Seconds each worker has to make its envs.
            **spec: The rest of each :class:`WorkerSpec`, the same for all
                (endpoint, schedule, autoreset_mode, gate, seed_plan).
        """
        n = self.num_envs
        raw = (ctx.RawArray("d", n), ctx.RawArray("b", n), ctx.RawArray("b", n))
        shared = Shared(obs_mem, *raw)
        self.rewards, self.terminated, self.truncated = shared.views()
        base = self.first_env_index
        self.pool.start(
            ctx,
            [
                WorkerSpec(
                    index=w,
                    env_fns=env_fns[lo:hi],
                    first=lo,
                    env_indices=list(range(base + lo, base + hi)),
                    shared=shared,
                    limits=limits[lo:hi],
                    on_error=self.on_error,
                    **spec,
                )
                for w, (lo, hi) in enumerate(self.slices)
            ],
        )
        for w, (lo, _hi) in enumerate(self.slices):
            for j, info in enumerate(self.receive([w], timeout)[w]):
                check_env(lo + j, info)
        self.started = True

    def stop(self, timeout: float, drain: bool) -> BaseException | None:
        """Ask every live worker to close (ending its videos), then make sure each is gone.

        Args:
            timeout: Seconds the workers have.
            drain: First read the replies still owed (a pending step), so
                workers read "close" next.

        Returns:
            The error that reading the owed replies raised, if any.
        """
        error = None
        if drain and self.pool.owed_live():
            try:  # only the replies still owed: an interrupt may have come
                # after some were read, and waiting for those would hang
                self.receive(self.pool.owed_live(), timeout)
            except BaseException as exc:  # noqa: BLE001 - the caller decides
                error = exc
        self.pool.stop(timeout)
        return error

    # -- who hosts which env ----------------------------------------------------------
    def live(self) -> list[int]:
        """Workers started and not taken out."""
        return self.pool.live()

    def owed_live(self) -> list[int]:
        """Live workers whose reply to the last message is still to be read."""
        return self.pool.owed_live()

    def pids(self) -> list[int]:
        return self.pool.pids()

    def spans(self) -> list[tuple[int, int, int]]:
        """``(worker, lo, hi)`` of each live worker: it hosts the envs at ``lo:hi``."""
        return [(w, *self.slices[w]) for w in self.pool.live()]

    def plan(self, indices: Sequence[int] | None) -> Plan:
        """Per live worker, the positions among its envs that ``indices`` names (None: all).

        Raises:
            ConfigError: An index is out of range.
        """
        live = self.pool.live()
        if indices is None:
            return dict.fromkeys(live)
        plan: Plan = {}
        for i in indices:
            if not (isinstance(i, (int, np.integer)) and 0 <= i < self.num_envs):
                raise ConfigError(f"env index {i!r} is out of range [0, {self.num_envs})")
            w = self._worker_of[i]
            if w in live:
                local = plan.setdefault(w, [])
                assert local is not None
                local.append(int(i) - self.slices[w][0])
        return plan

    def positions(self, w: int, which: list[int] | None) -> list[int]:
        """The env positions of worker ``w``'s envs ``which`` (None: all of them)."""
        lo, hi = self.slices[w]
        return list(range(lo, hi)) if which is None else [lo + j for j in which]

    def collect(
        self,
        plan: Plan,
        replies: dict[int, Any],
        indices: Sequence[int] | None,
        default: Any = None,
    ) -> list[Any]:
        """The per-env answers to a :meth:`plan`'s messages, in the order of ``indices``.

        An env whose worker did not answer (taken out) gets ``default``.
        """
        found: dict[int, Any] = {}
        for w, which in plan.items():
            envs = self.positions(w, which)
            found.update(zip(envs, replies.get(w) or [default] * len(envs)))
        order = range(self.num_envs) if indices is None else indices
        return [found.get(int(i), default) for i in order]

    def infos(
        self, replies: dict[int, Any], add_info: Callable[..., dict[str, Any]]
    ) -> dict[str, Any]:
        """The replies' infos merged, with ``info["error"]`` for envs taken out just now.

        Args:
            replies: Worker -> its envs' infos (None: lost).
            add_info: ``VectorEnv._add_info``, which merges one env's info.
        """
        infos: dict[str, Any] = {}
        for w, per_env in replies.items():
            if per_env is not None:
                lo = self.slices[w][0]
                for j, info in enumerate(per_env):
                    if info:
                        infos = add_info(infos, info, lo + j)
        for k in self._new_failures:
            infos = add_info(infos, {"error": self.errors[self.first_env_index + k]}, k)
        self._new_failures = []
        return infos

    def resets(
        self, seeds: Sequence[int | None], options: dict[str, Any] | None, mask: np.ndarray | None
    ) -> dict[int, Message]:
        """The reset of each live worker with an env that ``mask`` marks (None: all)."""
        messages: dict[int, Message] = {}
        for w, lo, hi in self.spans():
            which = None if mask is None else [bool(m) for m in mask[lo:hi]]
            if which is None or any(which):
                messages[w] = Reset(seeds[lo:hi], options, which)
        return messages

    # -- messages -----------------------------------------------------------------------
    def ask(
        self,
        indices: Sequence[int] | None,
        message: Callable[[int, list[int] | None], Message],
        default: Any = None,
    ) -> list[Any]:
        """Send the envs at ``indices`` (None: all) a message and wait for their answers.

        Args:
            indices: Env positions.
            message: ``message(w, which)``: worker ``w``'s, for its envs ``which``
                (None: all of them).
            default: The answer of an env taken out.

        Returns:
            One answer per env, in the order of ``indices``.
        """
        plan = self.plan(indices)
        self.send({w: message(w, which) for w, which in plan.items()})
        return self.collect(plan, self.receive(list(plan)), indices, default)

    def send(self, messages: dict[int, Message], steps: bool = False) -> None:
        """Send each worker its message.

        Args:
            messages: Worker -> message.
            steps: The messages step or reset envs: :attr:`finished` starts
                over, for the episodes their replies end.
        """
        if steps:
            self.finished = {}
        for w, message in messages.items():
            self.pool.send(w, message)

    def receive(self, workers: Sequence[int], timeout: float | None = None) -> dict[int, Any]:
        """One reply from each worker (the pool watches liveness and the deadline).

        ``timeout``: seconds to wait (None: the step timeout).

        A worker's error answer is raised once every worker has answered (the
        last, as AsyncVectorEnv raises), so no reply is left unread in a pipe.
        """
        replies = self.pool.receive_all(workers, self.step_timeout if timeout is None else timeout)
        failed = [r for r in replies.values() if isinstance(r, _Failed)]
        if failed:
            fatal = [f for f in failed if f.fatal]
            if any(isinstance(f.error, WorkerError) for f in fatal):
                logger.error("Raising the last exception back to the main process.")
            raise (fatal or failed)[-1].error
        return replies

    def release_renders(self) -> None:
        """Every worker has answered: tell those holding frames to render them now."""
        waiting, self._waiting = self._waiting, []
        self.pool.release_renders(waiting)

    def zero_taken_out(self) -> None:
        """Envs taken out step no more: zero reward, never done."""
        for w in self.pool.dead:
            lo, hi = self.slices[w]
            self.rewards[lo:hi] = 0.0
            self.terminated[lo:hi] = False
            self.truncated[lo:hi] = False

    # -- the pool's callbacks -------------------------------------------------------------
    def _unpack(self, w: int, raw: bytes) -> Any:
        msg = decode(raw)
        if type(msg) is Ok:
            lo = self.slices[w][0]
            if msg.failures:
                for j, message in msg.failures:
                    self._mark_failed(lo + j, message)
            if msg.observations is not None:
                self.observations[lo : lo + len(msg.observations)] = msg.observations
            for j, stats in msg.episodes:
                self.finished[lo + j] = stats
            if msg.waiting:
                self._waiting.append(w)
            return msg.value
        if type(msg) is Ready:
            return msg.info
        if type(msg) is not Error:
            raise RuntimeError(f"worker {w} answered with {type(msg).__name__}")
        return self._failed(w, msg)

    def _failed(self, w: int, msg: Error) -> _Failed:
        """The error a worker sent back, to raise once every worker has answered."""
        where = f"env {msg.env}"
        if msg.recoverable:  # a failed call(): the worker serves on
            return _Failed(rebuild(msg.error, where))
        proc = self.pool.procs[w]
        proc.join(2.0)
        self._break()
        self._check()  # an encoder death explains a failed render
        exc = rebuild(msg.error, where)
        if isinstance(exc, _CALLERS_MISTAKES):
            return _Failed(exc, fatal=True)
        error = msg.error
        hint = self._hint(f"{error.text}\n{error.traceback}")
        if hint:
            exc = EnvError(f"{where}: {hint}")
        else:
            # Also an instance of the env's own error where that is a builtin
            # (``except ValueError`` around a step catches it, as with
            # AsyncVectorEnv, which raises the env's error class again).
            exc = also_builtin(WorkerError, error.builtin)(
                f"{where} raised {error.kind}: {error.text} (worker pid {proc.pid}, "
                f"{describe_exit(proc.exitcode)})",
                msg.env,
                proc.exitcode,
            )
            logger.error(
                f"Received the following error from Worker-{msg.env - self.first_env_index} "
                "- Shutting it down"
            )
            logger.error(error.traceback)
        exc.__cause__ = RemoteTraceback(error.traceback)
        return _Failed(exc, fatal=True)

    def _lost(self, w: int, err: WorkerError) -> None:
        """A worker died or hung: raise, or (on_error="continue") take its envs out."""
        if self.on_error != "continue" or not self.started:
            self._break()
            raise err
        self.pool.take_out(w)
        lo, hi = self.slices[w]
        for k in range(lo, hi):
            if not self.failed[k]:
                self._mark_failed(k, str(err))
            self.rewards[k] = 0.0
            self.terminated[k] = False
            self.truncated[k] = True
        if not self.pool.live():
            self._break()
            raise WorkerError(f"every env has failed; the last: {err}", err.env_index, err.exitcode)

    def _break(self) -> None:
        self.broken = True
        on_broken = self._on_broken()
        if on_broken is not None:
            on_broken()

    def _idle(self) -> None:
        """While waiting on workers: an encoder that died is said at once."""
        self._check()

    def _mark_failed(self, k: int, message: str) -> None:
        self.failed[k] = True
        self.errors[self.first_env_index + k] = message
        self._new_failures.append(k)
