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
import os
import sys
import weakref
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import asdict
from enum import Enum
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import logger
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import concatenate

from ._backend.gl_platform import GL_VARIABLES, GLPlatform, prepare
from ._backend.messages import Call, IsWrapped, SetAttr, Step
from ._backend.procs import get_context
from ._backend.seedplan import SeedPlan
from ._backend.vector_spaces import VectorSpaces, check_mask, reset_seeds, split_actions
from ._backend.worker_group import WorkerGroup
from .config import RecordConfig, build_config, keyword_names
from .envs import describe_env_fns, error_text, make_env_fn, opengl_hint
from .errors import (
    AlreadyPendingCallError,
    ClosedError,
    ConfigError,
    EnvError,
    NoAsyncCallError,
    RLCaptureError,
)
from .recorder import Recorder
from .triggers import ScheduleSpec
from .vector_options import VectorOptions, check_count

__all__ = ["CaptureVectorEnv", "make_vec"]


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
            ``(env_index, episode_index) -> bool``, evaluated in the worker at each reset.
        envs_per_worker: Envs hosted by one worker process.
        autoreset_mode: ``NEXT_STEP`` (Gymnasium's default), ``SAME_STEP`` or ``DISABLED``.
        shared_memory: Shared memory (True), the pipes (False), or None: shared memory if it can.
        observation_mode: "same", "different" or ``(observation_space, single_observation_space)``.
        step_timeout: Seconds a worker may take to answer (None: as long as it lives).
        context: ``multiprocess`` start method for the workers.
        copy: Return copies of the observations (else views the next step overwrites).
        first_env_index: Index of the first env in the recording (recorders shared).
        episodes_per_env: A quota of episodes per env (one number, or one per env).
        on_error: "raise" (default), or "continue": an env that fails is taken out.
        episode_seeds: An evaluation's seed plan: every unseeded reset takes its next seed.
        render_after_batch: Render once every worker has answered the step (None:
            when there are more workers than usable cores).
        config: What to record and how (:class:`~rlcapture.RecordConfig`) when
            ``out`` is a folder; None takes the defaults.
        overwrite: Replace a recording already in the folder ``out``.
        **options: :class:`~rlcapture.RecordConfig` options by their flat
            names (``codec="libx265"``, ``drop=True``), applied over ``config``
            when ``out`` is a folder. ``mosaic=True`` means a tile for each
            of these envs.

    Each of the options from ``envs_per_worker`` to ``render_after_batch`` is
    told in full, with its defaults and why, by
    :class:`~rlcapture.vector_options.VectorOptions`, which checks them.

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
        shared_memory: bool | None = None,
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
        env_fns = list(env_fns)
        self._options = opts = VectorOptions(
            len(env_fns), record, envs_per_worker, autoreset_mode, shared_memory,
            observation_mode, step_timeout, context, copy, first_env_index,
            episodes_per_env, on_error, episode_seeds, render_after_batch,
        )  # fmt: skip
        self.num_envs = opts.num_envs
        self.autoreset_mode = opts.autoreset_mode
        self.observation_mode = opts.observation_mode
        self.shared_memory = opts.shared_memory
        self.step_timeout = opts.step_timeout
        self.copy = opts.copy
        self.first_env_index = opts.first_env_index
        self.on_error = opts.on_error
        self.render_after_batch = opts.render_after_batch
        self.episode_seeds = opts.episode_seeds
        self.seed_plan: SeedPlan | None = None
        self.gl_platform: GLPlatform = prepare()  # MuJoCo's OpenGL, here and in the workers
        self.recorder: Recorder = _recorder(out, config, overwrite, options, opts)
        self._owns_recorder = self.recorder is not out
        self._group = WorkerGroup(
            self.num_envs, opts.envs_per_worker, self.first_env_index, self.on_error,
            self.step_timeout, check=self.recorder.check, hint=opengl_hint,
            on_broken=weakref.WeakMethod(self._broke),
        )  # fmt: skip
        # on_error="continue": the envs taken out, and (by recording index) why
        self.failed: np.ndarray = self._group.failed
        self.errors: dict[int, str] = self._group.errors
        try:
            self._start(env_fns)
            self.run_info: dict[str, Any] = _run_info(self, env_fns)  # what run.json says
        except BaseException:
            self._shutdown(timeout=5.0)
            raise
        # Registered after the recorder's own exit hook, so it runs first: an
        # env left open at exit closes its workers (ending their videos) before
        # the recorder waits for them to say goodbye.
        self._exit_hook: Callable[[], None] | None = _exit_hook(weakref.ref(self))
        atexit.register(self._exit_hook)

    # -- startup ------------------------------------------------------------------
    def _start(self, env_fns: list[Callable[[], gym.Env]]) -> None:
        opts = self._options
        ctx = get_context(opts.context)
        n = self.num_envs
        spaces = _spaces_of(env_fns[0], self.observation_mode)
        self.single_observation_space = spaces.single_observation_space
        self.single_action_space = spaces.single_action_space
        self.metadata, self.render_mode = spaces.metadata, spaces.render_mode
        self.spec = spaces.spec
        obs_mem, self._obs = spaces.buffer(n, self.shared_memory, ctx)
        self.shared_memory = obs_mem is not None
        if self.episode_seeds is not None:
            self.seed_plan = SeedPlan(self.episode_seeds, n, ctx)
        observation_spaces: list[gym.Space] = []
        self._state = _State.DEFAULT
        self._group.start(
            ctx, env_fns, obs_mem, opts.quotas,
            check_env=lambda k, info: observation_spaces.append(spaces.check(k, info)),
            timeout=max(60.0, self.step_timeout or 0.0),
            endpoint=self.recorder.endpoint, schedule=opts.schedule,
            autoreset_mode=self.autoreset_mode, gate=self.render_after_batch,
            seed_plan=self.seed_plan,
            gl={k: os.environ[k] for k in GL_VARIABLES if k in os.environ},
        )  # fmt: skip
        self.observation_space, self.action_space = spaces.batched(observation_spaces, n)
        self.metadata["autoreset_mode"] = self.autoreset_mode

    # -- what the workers said ----------------------------------------------------------
    @property
    def worker_pids(self) -> list[int]:
        """The process id of each worker (with ``envs_per_worker=W``, worker ``w`` hosts envs ``w*W`` on)."""
        return self._group.pids()

    @property
    def finished_episodes(self) -> dict[int, dict[str, Any]]:
        """Episodes that finished on the last step, by env position: ``{"r", "l", "t"}``.

        ``r`` is the env's own return (its innermost ``RecordEpisodeStatistics``),
        as in the manifest.
        """
        return self._group.finished

    # -- states -------------------------------------------------------------------------
    def _broke(self) -> None:
        """A worker failed or was lost (the group raises it): only close() is left."""
        if self._state != _State.CLOSED:
            self._state = _State.BROKEN

    def _assert_ready(self, call: str) -> None:
        self._assert_open()
        if self._state != _State.DEFAULT:
            # Gymnasium's words, which code written for AsyncVectorEnv may match.
            raise AlreadyPendingCallError(
                f"Calling `{call}` while waiting for a pending call to `{self._state.value}` "
                "to complete.", self._state.value,
            )  # fmt: skip

    def _assert_pending(self, state: _State, call: str) -> None:
        """``call`` (``step_wait``) collects what ``state``'s ``*_async`` call started."""
        if self._state != state:
            self._assert_open()
            raise NoAsyncCallError(
                f"Calling `{call}` without any prior call to `{state.value}_async`.", state.value
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
        seeds = reset_seeds(seed, self.num_envs, planned=self.seed_plan is not None)
        self._assert_ready("reset_async")
        mask = None
        if options is not None and "reset_mask" in options:
            options = dict(options)
            mask = check_mask(options.pop("reset_mask"), self.num_envs)
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(
                seeds[0] if isinstance(seeds[0], int) else None
            )
        self._group.send(self._group.resets(seeds, options, mask), steps=True)
        self._state = _State.WAITING_RESET

    def reset_wait(self, timeout: float | None = None) -> tuple[Any, dict[str, Any]]:
        """Collect what :meth:`reset_async` started (``timeout`` as in :meth:`step_wait`)."""
        self._assert_pending(_State.WAITING_RESET, "reset_wait")
        replies = self._group.receive(self._group.owed_live(), timeout)
        self._group.release_renders()
        self._state = _State.DEFAULT
        infos = self._group.infos(replies, self._add_info)
        return self._observations(), infos

    def _observations(self) -> Any:
        if not self.shared_memory:
            self._obs = concatenate(
                self.single_observation_space, self._group.observations, self._obs
            )
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

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env; episodes that ended last step are reset (next-step autoreset)."""
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: Any) -> None:
        """Send actions to the workers without waiting."""
        self._assert_ready("step_async")
        self.recorder.check()
        split = split_actions(self.action_space, actions, self.num_envs)
        self._group.send({w: Step(split[lo:hi]) for w, lo, hi in self._group.spans()}, steps=True)
        self._state = _State.WAITING_STEP

    def step_wait(
        self, timeout: float | None = None
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Collect what :meth:`step_async` started.

        ``timeout``: seconds to wait (None: ``step_timeout``); past it,
        :class:`StepTimeoutError` (also ``multiprocessing.TimeoutError``, as AsyncVectorEnv raises).
        """
        self._assert_pending(_State.WAITING_STEP, "step_wait")
        group = self._group
        group.zero_taken_out()
        replies = group.receive(group.live(), timeout)
        group.release_renders()
        self._state = _State.DEFAULT
        infos = self._group.infos(replies, self._add_info)
        obs = self._observations()
        return obs, group.rewards.copy(), group.terminated.copy(), group.truncated.copy(), infos

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
        return tuple(self._group.ask(indices, lambda _, which: Call(name, args, kwargs, which)))

    def call_async(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Start :meth:`call` on every env without waiting; :meth:`call_wait` collects it."""
        self._assert_ready("call_async")
        plan = self._group.plan(None)
        self._group.send({w: Call(name, args, kwargs, which) for w, which in plan.items()})
        self._state = _State.WAITING_CALL

    def call_wait(self, timeout: float | None = None) -> tuple[Any, ...]:
        """Collect what :meth:`call_async` started (``timeout`` as in :meth:`step_wait`)."""
        self._assert_pending(_State.WAITING_CALL, "call_wait")
        plan = self._group.plan(None)
        try:
            replies = self._group.receive(self._group.owed_live(), timeout)
        finally:
            if self._state == _State.WAITING_CALL:
                self._state = _State.DEFAULT
        return tuple(self._group.collect(plan, replies, None))

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
        answers = self._group.ask(indices, lambda _, which: IsWrapped(wrapper_class, which), False)
        return [bool(a) for a in answers]

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
        positions = self._group.positions

        def message(w: int, which: list[int] | None) -> SetAttr:
            return SetAttr(name, [value_of[k] for k in positions(w, which)], which)

        self._group.ask(indices, message)

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
        first_error = self._group.stop(timeout, drain=self._state != _State.BROKEN)
        self._state = _State.CLOSED
        if self._owns_recorder:
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
        return f"CaptureVectorEnv({self.num_envs} envs, out={str(self.recorder.out)!r})"


def _exit_hook(ref: weakref.ref[CaptureVectorEnv]) -> Callable[[], None]:
    def close_at_exit() -> None:
        envs = ref()
        if envs is not None and envs._state != _State.CLOSED:
            try:
                envs.close(timeout=10.0)
            except Exception:  # noqa: BLE001 - at exit there is no one to tell
                pass

    return close_at_exit


def _recorder(
    out: str | os.PathLike[str] | Recorder,
    config: RecordConfig | None,
    overwrite: bool,
    options: dict[str, Any],
    opts: VectorOptions,
) -> Recorder:
    """The recorder given as ``out``, or one made in the folder ``out``.

    Raises:
        ConfigError: An option is unknown, or recording options come with a
            running recorder (it was configured when it was made).
    """
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
        return out
    envs = opts.first_env_index + opts.num_envs
    if record_config.mosaic is True:  # a tile for each of these envs
        record_config = record_config.replace(mosaic=envs)
    return Recorder(out, record_config, overwrite=overwrite, context=opts.context, envs=envs)


def _run_info(envs: CaptureVectorEnv, env_fns: Sequence[Callable[[], gym.Env]]) -> dict[str, Any]:
    """What ``run.json`` says of ``envs``, written in the folder it owns.

    The env (named where it can be: an id, an ``EnvSpec``, ``module:Env``, so
    that ``rlcapture replay`` can re-create its episodes), the envs, autoreset
    mode, encoding and OpenGL platform (:attr:`CaptureVectorEnv.gl_platform`,
    from ``_backend/gl_platform.py``). :func:`~rlcapture.evaluate` and
    ``RecordCallback`` write it again with what they know (policy, seeds, timestep).
    """
    info = {
        **describe_env_fns(env_fns),
        "num_envs": envs.num_envs,
        "autoreset_mode": envs.autoreset_mode.name,
        "video": asdict(envs.recorder.config.video),
        "gl": envs.gl_platform.as_json(),
    }
    if envs._owns_recorder:
        # The package's version, read where it is (importing the package
        # root here would import the tools above this layer).
        version = getattr(sys.modules[__package__], "__version__", "")
        envs.recorder.folder.write_run_file(info, version=version)
    return info


def _spaces_of(
    make: Callable[[], gym.Env], mode: str | tuple[gym.Space, gym.Space]
) -> VectorSpaces:
    """Env 0's spaces, from env 0 made (and closed) in this process; the workers make their own."""
    try:
        env = make()
    except RLCaptureError:
        raise
    except Exception as exc:
        hint = opengl_hint(error_text(exc))
        what = hint or f"{type(exc).__name__}: {exc}"
        raise EnvError(f"env 0 could not be made: {what}") from exc
    try:
        return VectorSpaces.of(env, mode)
    finally:
        env.close()


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
        ConfigError: If ``num_envs`` is not a positive integer.
        EnvError: If the id is unknown, needs a missing extra, or cannot render
            to an array.
    """
    num_envs = check_count("num_envs", num_envs)
    fn = make_env_fn(env_id, env_kwargs=env_kwargs, max_episode_steps=max_episode_steps)
    return CaptureVectorEnv([fn] * num_envs, out, **kwargs)
