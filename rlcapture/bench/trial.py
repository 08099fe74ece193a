"""One trial of ``rlcapture bench``, in its own process: make, reset, step, close; measure.

:func:`run_trial` runs one variant with one N (the driver in
:mod:`rlcapture.bench.command` starts a fresh Python process for each, through
:func:`trial_entry`), and :func:`probe_env` checks the env in the driver first.
How time, CPU and memory are taken is :mod:`rlcapture.bench.measure`'s.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space

from .._backend.manifest import read_manifest
from .._backend.run_folder import RunFolder
from ..envs import import_object
from ..errors import ConfigError, EnvError, RLCaptureError
from ..policies import load_policy
from .measure import (
    MB,
    TreePSS,
    proc_cpu,
    reaped_cpu,
    self_cpu,
    time_per_call,
    tree_cpu,
    trial_main,
    video_frames,
)
from .variants import CORE, TILED, variant_base, variant_encoders

__all__ = [
    "RenderEveryFrame",
    "is_factory_spec",
    "module_root",
    "probe_env",
    "run_trial",
    "trial_entry",
]


# ======================================================================================
# envs
# ======================================================================================
class RenderEveryFrame(gym.Wrapper):
    """Renders after every ``reset`` and ``step`` and drops the frame.

    The ``render`` variant's envs: the frames a recording of every frame would
    take, rendered and thrown away, so nothing is copied or encoded.
    """

    def reset(self, **kwargs: Any) -> Any:
        out = self.env.reset(**kwargs)
        self.env.render()
        return out

    def step(self, action: Any) -> Any:
        out = self.env.step(action)
        self.env.render()
        return out


class _Rendering:
    """A picklable factory of :class:`RenderEveryFrame` envs."""

    def __init__(self, fn: Callable[[], gym.Env]) -> None:
        self.fn = fn

    def __call__(self) -> gym.Env:
        return RenderEveryFrame(self.fn())


def is_factory_spec(spec: str) -> bool:
    """``module:callable`` (a factory), as opposed to a Gymnasium id like ``ale_py:ALE/Pong-v5``."""
    if ":" not in spec:
        return False
    module, _, attr = spec.partition(":")
    ident = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
    return bool(ident.match(module)) and bool(ident.match(attr))


def module_root(spec: str) -> str | None:
    """The folder to put on ``sys.path`` so that ``spec``'s module imports (after importing it)."""
    name = spec.partition(":")[0]
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if not path:
        return None
    p = Path(path).resolve()
    if p.name == "__init__.py":
        p = p.parent
    return str(p.parents[len(name.split(".")) - 1])


def _env_factory(env: str) -> Callable[[], gym.Env]:
    """A function that makes the benchmarked env (in this process or a worker)."""
    if is_factory_spec(env):
        return import_object(env, "env factory")
    from ..envs import make_env_fn

    return make_env_fn(env)


def probe_env(env: str) -> dict[str, Any]:
    """Make the env once here: check it, and time copying one of its frames.

    Raises:
        EnvError: If it cannot be made, does not render to an RGB array, or fails.
    """
    fn = _env_factory(env)
    try:
        e = fn()
    except RLCaptureError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the user's env is reported
        raise EnvError(f"env {env!r} could not be made: {type(exc).__name__}: {exc}") from None
    try:
        if getattr(e, "render_mode", None) != "rgb_array":
            raise EnvError(
                f"env {env!r} has render_mode={getattr(e, 'render_mode', None)!r}; "
                "rlcapture bench needs envs made with render_mode='rgb_array'"
            )
        try:
            e.reset(seed=0)
            frame = e.render()
        except Exception as exc:  # noqa: BLE001 - any failure of the user's env is reported
            raise EnvError(
                f"env {env!r} failed to reset or render: {type(exc).__name__}: {exc}"
            ) from None
        from .._backend.frames import as_frame

        try:
            frame = as_frame(frame, f"env {env!r}")
        except RLCaptureError as exc:
            raise EnvError(str(exc)) from None
        copy_ms = _copy_cost_ms(frame)
        return {
            "frame_shape": list(frame.shape),
            "frame_bytes": int(frame.nbytes),
            "copy_ms_per_frame": copy_ms,
            "render_fps": (e.metadata or {}).get("render_fps"),
            "spec": env,
        }
    finally:
        with contextlib.suppress(Exception):
            e.close()


def _copy_cost_ms(frame: np.ndarray, batches: int = 7, per_batch: int = 40) -> float:
    """Median time of copying ``frame`` (as rendered: same strides) into a numpy buffer."""
    buf = np.empty(frame.shape, np.uint8)
    np.copyto(buf, frame)  # touch the pages
    return 1e3 * time_per_call(lambda: np.copyto(buf, frame), per_batch, batches)


# ======================================================================================
# one trial
# ======================================================================================
class _Run:
    """A vector env of one variant, with a uniform step/reset/close."""

    def __init__(self, variant: str, spec: dict[str, Any], folder: Path) -> None:
        self.variant = variant
        self.base = variant_base(variant)
        self.n = n = int(spec["n"])
        self.recorder: Any = None
        self.sb3 = False
        fn = _env_factory(spec["env"])
        if self.base in CORE:
            from ..recorder import Recorder
            from ..vector import CaptureVectorEnv

            schedule = variant.partition("/e")[0]  # every:20/e2 -> every:20
            record = {"none": "none", "render": "none", "all": "all"}.get(self.base, schedule)
            fns = [_Rendering(fn) if self.base == "render" else fn] * n
            self.recorder = Recorder(folder / "out", encoders=variant_encoders(variant), envs=n)
            try:
                self.envs: Any = CaptureVectorEnv(fns, self.recorder, record=record)
            except BaseException:
                self.recorder.close()
                raise
            self.single_action_space = self.envs.single_action_space
        elif self.base == "gym-vec":
            from gymnasium.wrappers.vector import RecordVideo as VecRecordVideo

            inner = gym.vector.AsyncVectorEnv([fn] * n)
            # A new video at every episode of env 0; video_length 0 = whole
            # episodes: every step of the run is captured, N envs tiled.
            self.envs = VecRecordVideo(
                inner, str(folder / "videos"), episode_trigger=_always, disable_logger=True
            )
            self.single_action_space = inner.single_action_space
        elif self.base == "gym-worker":
            fns = [_GymRecording(fn, str(folder / f"env{i}")) for i in range(n)]
            self.envs = gym.vector.AsyncVectorEnv(fns)
            self.single_action_space = self.envs.single_action_space
        elif self.base == "sb3":
            from stable_baselines3.common.vec_env import SubprocVecEnv, VecVideoRecorder

            self.sb3 = True
            steps = int(spec["steps"])
            inner = SubprocVecEnv([fn] * n)
            self.envs = VecVideoRecorder(
                inner,
                str(folder / "videos"),
                record_video_trigger=lambda step: step == 0,
                video_length=steps + 1,
            )
            self.single_action_space = inner.action_space
        else:
            raise ConfigError(f"unknown variant {variant!r}")
        # What a random policy samples: the same batch for every variant (SB3's
        # VecEnv has an unbatched action_space).
        self.action_space = batch_space(self.single_action_space, n)

    def reset(self, seed: int) -> Any:
        if self.sb3:
            self.envs.seed(seed)
            return self.envs.reset()
        return self.envs.reset(seed=seed)[0]

    def step(self, actions: Any) -> Any:
        return self.envs.step(actions)[0]

    def encoder_cpu(self) -> float | None:
        """CPU used so far by the encoder processes (all of them, summed)."""
        if self.recorder is None:
            return None
        import psutil

        try:
            return sum(proc_cpu(psutil.Process(pid)) for pid in self.recorder.encoder_pids)
        except psutil.Error:
            return None

    def close(self) -> dict[str, Any]:
        """Close everything; for rlcapture, the encoder's whole-life CPU and summary."""
        self.envs.close()
        if self.recorder is None:
            return {}
        import psutil

        ours = False
        with contextlib.suppress(psutil.Error):
            ours = all(
                psutil.Process(pid).ppid() == os.getpid() for pid in self.recorder.encoder_pids
            )
        r0 = reaped_cpu()
        summary = self.recorder.close()
        total = reaped_cpu() - r0 if ours else None
        return {"summary": summary, "encoder_life_cpu_s": total}


def _always(episode: int) -> bool:
    return True


class _GymRecording:
    """A picklable factory of ``RecordVideo(env)`` recording every episode."""

    def __init__(self, fn: Callable[[], gym.Env], folder: str) -> None:
        self.fn = fn
        self.folder = folder

    def __call__(self) -> gym.Env:
        from gymnasium.wrappers import RecordVideo

        return RecordVideo(self.fn(), self.folder, episode_trigger=_always, disable_logger=True)


class _FirstVideo:
    """Notes when the first ``.mp4`` appears under a folder (polled every 10 ms).

    Its CPU (a small directory listing per poll, until the first video) is
    counted in the trial's, like the memory sampler's before it is taken out.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.t0 = time.perf_counter()
        self.seconds: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            with contextlib.suppress(OSError):
                for _root, _dirs, files in os.walk(self.folder):
                    if any(f.endswith(".mp4") for f in files):
                        self.seconds = time.perf_counter() - self.t0
                        return

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return self.seconds


#: Frames of a random-policy CartPole episode, about: sizes the record command's run.
_EPISODE_GUESS = 22


def _run_command(spec: dict[str, Any]) -> dict[str, Any]:
    """The ``record`` variant: the whole command, timed from its start to its exit."""
    variant, n, steps, seed = spec["variant"], int(spec["n"]), int(spec["steps"]), int(spec["seed"])
    folder = Path(spec["folder"])
    out = folder / "out"
    episodes = max(n, math.ceil(n * steps / _EPISODE_GUESS))
    cmd = [sys.executable, "-m", "rlcapture.cli", "record", spec["env"], "-n", str(n),
           "-k", str(episodes), "--out", str(out), "--seed", str(seed), "--quiet"]  # fmt: skip
    if spec["policy"] != "random":
        cmd += ["--policy", spec["policy"]]
    k = variant_encoders(variant)
    if k != "auto":
        cmd += ["--encoders", str(k)]
    mem = TreePSS()
    with mem:
        r0 = reaped_cpu()
        first = _FirstVideo(out)
        t0 = first.t0
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        t3 = time.perf_counter()
        first_video_s = first.stop()
        mem.stop()
    cpu = reaped_cpu() - r0
    if proc.returncode != 0:
        raise RLCaptureError(f"rlcapture record exited with {proc.returncode}: {proc.stderr[-2000:]}")
    lines = [x for x in read_manifest(RunFolder(out).manifest, raw=True) if not x.get("update")]
    frames = sum(int(x.get("frames") or 0) for x in lines)
    env_steps = sum(int(x.get("length") or 0) for x in lines)
    size = sum(p.stat().st_size for p in out.rglob("*.mp4"))
    whole = t3 - t0
    return {
        "variant": variant, "encoders": k if k != "auto" else None, "n": n, "steps": steps,
        "repeat": spec.get("repeat", 0), "env_steps": env_steps, "frames": frames,
        "frames_rendered": frames, "video_frames": frames, "videos": len(lines),
        "bytes_written": size, "setup_s": 0.0, "run_s": whole, "close_s": 0.0,
        "whole_s": whole, "first_video_s": first_video_s,
        "steps_per_s": env_steps / whole, "frames_per_s": frames / whole,
        "frames_per_s_whole": frames / whole, "cpu_s": cpu, "main_cpu_s": None,
        "encoder_cpu_s": None, "encoder_cpu_before_close_s": None,
        "peak_pss_mb": mem.peak / MB, "pss_samples": mem.samples, "sampler_cpu_s": mem.cpu_s,
        "tree_cpu_total_s": None,
    }  # fmt: skip


def run_trial(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of one variant: make, reset, step, close; time, CPU and memory."""
    base = variant_base(spec["variant"])
    if base == "record":
        return _run_command(spec)
    if base in ("gym-vec", "gym-worker", "sb3"):
        import moviepy.video.io.ImageSequenceClip  # noqa: F401 - imported before timing
    _warm_up(spec["env"], int(spec["seed"]))
    return _figures(spec, _timed_run(spec))


def _warm_up(env: str, seed: int) -> None:
    """Makes, resets and renders one env, untimed.

    What rendering imports (pygame, ...) is then imported before the workers
    fork, the same for every variant.
    """
    warm = _env_factory(env)()
    try:
        warm.reset(seed=seed)
        warm.render()
    finally:
        warm.close()


@dataclass(frozen=True)
class _Timings:
    """What :func:`_timed_run` read: clocks, CPU counters and memory around one run."""

    t0: float  # made the envs (the first-video clock's start)
    t1: float  # envs made, policy loaded: the timed window starts
    t2: float  # the last step returned
    t3: float  # closed (every video finished)
    self0: float
    self1: float
    tree0: float
    tree1: float
    enc0: float | None
    enc_before_close: float | None
    closed: dict[str, Any]
    first_video_s: float | None
    encoders: Any
    mem: TreePSS


def _timed_run(spec: dict[str, Any]) -> _Timings:
    """Makes the variant's envs, steps them ``steps`` times with the policy and closes them."""
    variant, steps, seed = spec["variant"], int(spec["steps"]), int(spec["seed"])
    base = variant_base(variant)
    folder = Path(spec["folder"])
    mem = TreePSS()
    with mem:
        # none and render write no video: no need to look (its CPU would count)
        first = _FirstVideo(folder) if base not in ("none", "render") else None
        t0 = first.t0 if first is not None else time.perf_counter()
        run = _Run(variant, spec, folder)
        run_encoders = run.recorder.encoders if run.recorder is not None else None
        try:
            policy = load_policy(spec["policy"], run, seed)
            t1 = time.perf_counter()
            self0, tree0 = self_cpu(), tree_cpu()
            enc0 = run.encoder_cpu()
            obs = run.reset(seed)
            for _ in range(steps):
                obs = run.step(policy(obs))
            t2 = time.perf_counter()
            enc_before_close = run.encoder_cpu()
            mem.sample()
        except BaseException:
            with contextlib.suppress(Exception):
                run.close()
            raise
        closed = run.close()
        t3 = time.perf_counter()
        first_video_s = first.stop() if first is not None else None
        mem.stop()  # its CPU, all of it counted in ours, is taken out below
        self1, tree1 = self_cpu(), tree_cpu()
    return _Timings(
        t0=t0, t1=t1, t2=t2, t3=t3, self0=self0, self1=self1, tree0=tree0, tree1=tree1,
        enc0=enc0, enc_before_close=enc_before_close, closed=closed,
        first_video_s=first_video_s, encoders=run_encoders, mem=mem,
    )  # fmt: skip


def _figures(spec: dict[str, Any], t: _Timings) -> dict[str, Any]:
    """The trial's result: rates, CPU and memory from the timings, frames from the outputs."""
    variant, n, steps = spec["variant"], int(spec["n"]), int(spec["steps"])
    base = variant_base(variant)
    folder = Path(spec["folder"])
    mem = t.mem
    cpu = t.tree1 - t.tree0 - mem.cpu_s
    main_cpu = (t.self1 - t.self0) - mem.cpu_s
    env_steps = n * steps
    encoder_cpu = None
    if t.enc0 is not None:
        life = t.closed.get("encoder_life_cpu_s")
        last = life if life is not None else t.enc_before_close
        encoder_cpu = None if last is None else max(0.0, last - t.enc0)
    summary = t.closed.get("summary") or {}
    if base in CORE:
        video_files, written = int(summary.get("videos", 0)), int(summary.get("frames", 0))
        size = sum(p.stat().st_size for p in folder.rglob("*.mp4"))
    else:
        video_files, written, size = video_frames(folder)
    frames = written * n if base in TILED else written
    rendered = n * (steps + 1) if base == "render" else frames
    run_s = t.t3 - t.t1
    return {
        "variant": variant,
        "encoders": t.encoders,
        "n": n,
        "steps": steps,
        "repeat": spec.get("repeat", 0),
        "env_steps": env_steps,
        "frames": frames,
        "frames_rendered": rendered,
        "video_frames": written,
        "videos": video_files,
        "bytes_written": size,
        "setup_s": t.t1 - t.t0,
        "run_s": run_s,
        "close_s": t.t3 - t.t2,
        "whole_s": t.t3 - t.t0,
        "first_video_s": t.first_video_s,
        "steps_per_s": env_steps / run_s,
        "frames_per_s": frames / run_s,
        "frames_per_s_whole": frames / (t.t3 - t.t0),
        "cpu_s": cpu,
        "main_cpu_s": main_cpu,
        "encoder_cpu_s": encoder_cpu,
        "encoder_cpu_before_close_s": (
            None if t.enc0 is None or t.enc_before_close is None else t.enc_before_close - t.enc0
        ),
        "peak_pss_mb": mem.peak / MB,
        "pss_samples": mem.samples,
        "sampler_cpu_s": mem.cpu_s,
        "tree_cpu_total_s": t.tree1,
    }


def trial_entry(raw: str) -> int:
    """Entry point of a trial process: one JSON spec in, one JSON line out."""
    return trial_main(run_trial, raw, (ConfigError, EnvError))
