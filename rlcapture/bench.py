"""``rlcapture bench``: measure what recording costs on any env, side by side.

For each number of envs N it runs, in alternating repetitions (the order of the
variants rotated each repeat), each in a fresh Python process:

``none``
    :class:`~rlcapture.CaptureVectorEnv` with ``record="none"``: stepping, no
    rendering. The reference step rate.
``render``
    The same vector env over envs wrapped in :class:`RenderEveryFrame`, which
    calls ``render()`` after every ``reset`` and ``step`` and drops the frame.
    Same processes, pipes and shared arrays as ``none``; the only difference is
    the rendering (done inside ``step``, so on the critical path), which makes
    ``render - none`` the CPU cost of rendering a frame.
``all``
    rlcapture recording every frame (``record="all"``).
``every:M``
    rlcapture recording episodes 0, M, 2M, ... of each env (default M = 20).
``gym-vec``
    Gymnasium's ``wrappers.vector.RecordVideo`` around an ``AsyncVectorEnv``
    (every episode: the N frames of a step tiled into one video frame).
``gym-worker``
    Gymnasium's ``RecordVideo`` inside each ``AsyncVectorEnv`` worker (one video
    per episode and env).
``sb3``
    Stable-Baselines3's ``VecVideoRecorder`` around a ``SubprocVecEnv`` (only if
    stable-baselines3 is installed).

With ``--encoders K [K ...]`` the rlcapture recording variants run once per K
(``Recorder(encoders=K)``); a K other than 1 is written ``all/eK``,
``every:M/eK``, so ``--encoders 1 2`` compares one and two encoder processes
in the same alternating repetitions.

A run steps ``ceil(F / N)`` vector steps and is timed from ``reset`` to the
return of ``close`` (every video finished). What it reports:

* env-steps/s, and frames/s (frames actually written to videos; tiled
  variants count N env frames per video frame);
* overhead: how much slower than ``none`` it steps, in %;
* CPU of the whole process tree in the timed window (``getrusage`` of this
  process and of its reaped children, minus what the children had used before
  the window, minus the memory sampler's own CPU), and the CPU of rlcapture's
  encoder process alone (its whole-life CPU, read when it is reaped in
  ``Recorder.close``, minus ``psutil``'s reading of it before the window);
* peak PSS summed over the process tree, sampled by a low-priority thread;
* per-frame CPU costs: render (``render - none``, per frame), copy (copying
  one rendered frame into a numpy buffer, timed here), encode (the encoder's
  CPU per frame in ``all``), and the machine ceiling
  ``cores / (render + encode)`` frames/s with each recording run's share of it.

The results go to the terminal (a table), a JSON file and a PNG bar chart.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space

from .envs import import_object
from .errors import ConfigError, EnvError, OutputError, RLCaptureError
from .measure import (
    MB,
    TreePSS,
    TrialFailed,
    cpu_model,
    headless,
    median,
    proc_cpu,
    reaped_cpu,
    retry_quiet,
    run_trial_process,
    self_cpu,
    time_per_call,
    tree_cpu,
    trial_main,
    video_frames,
)
from .measure import cores as count_cores
from .policies import load_policy

__all__ = ["RenderEveryFrame", "add_parser", "bench", "draw_chart", "variant_names"]

DEFAULT_ENV = "CartPole-v1"
DEFAULT_NUM_ENVS = (1, 2, 4)
DEFAULT_FRAMES = 2000
DEFAULT_REPEATS = 3
DEFAULT_EVERY = 20

#: name -> (short label for tables and the chart, what it is)
_BASE_VARIANTS: dict[str, tuple[str, str]] = {
    "none": ("no recording", "CaptureVectorEnv(record='none'): steps only, never renders"),
    "render": (
        "render, no encode",
        "CaptureVectorEnv(record='none') over envs that render every reset and step and "
        "drop the frame (rendering inside step, on the critical path)",
    ),
    "all": ("rlcapture every frame", "CaptureVectorEnv(record='all')"),
    "every": ("rlcapture 1 ep in M", "CaptureVectorEnv(record='every:M'): episodes 0, M, 2M, ..."),
    "gym-vec": (
        "gym vector RecordVideo",
        "gymnasium.wrappers.vector.RecordVideo(AsyncVectorEnv), every episode, N frames tiled",
    ),
    "gym-worker": (
        "gym RecordVideo/worker",
        "gymnasium.wrappers.RecordVideo inside each AsyncVectorEnv worker, every episode",
    ),
    "sb3": (
        "SB3 VecVideoRecorder",
        "stable_baselines3 VecVideoRecorder(SubprocVecEnv), one video of every step, tiled",
    ),
}
_RECORDING = ("all", "every", "gym-vec", "gym-worker", "sb3")
#: Variants that try to record every frame: their frames/s is compared with the ceiling.
_EVERY_FRAME = ("all", "gym-vec", "gym-worker", "sb3")
_TILED = ("gym-vec", "sb3")
_CORE = ("none", "render", "all", "every")


def variant_names(every: int) -> list[str]:
    """Every variant's name, in order, with ``every`` spelled ``every:M``."""
    return [f"every:{every}" if v == "every" else v for v in _BASE_VARIANTS]


def _split_encoders(variant: str) -> tuple[str, int]:
    """``all/e2`` -> (``all``, 2); ``all`` -> (``all``, 1)."""
    name, sep, k = variant.partition("/e")
    return (name, int(k)) if sep else (variant, 1)


def _encoders_of(variant: str) -> int:
    """How many encoder processes the variant's recorder runs."""
    return _split_encoders(variant)[1]


def _with_encoders(variant: str, k: int) -> str:
    return variant if k == 1 else f"{variant}/e{k}"


def _base(variant: str) -> str:
    variant = _split_encoders(variant)[0]
    return "every" if variant.startswith("every:") else variant


def _what(variant: str) -> str:
    variant, k = _split_encoders(variant)
    more = f", Recorder(encoders={k})" if k != 1 else ""
    if variant.startswith("every:"):
        m = int(variant.split(":", 1)[1])
        return (
            f"CaptureVectorEnv(record='{variant}'){more}: episodes 0, {m}, {2 * m}, ... of each env"
        )
    what = _BASE_VARIANTS[variant][1]
    return f"{what}{more}" if k != 1 else what


def _label(variant: str) -> str:
    variant, k = _split_encoders(variant)
    if variant.startswith("every:"):
        label = f"rlcapture 1 ep in {variant.split(':', 1)[1]}"
    else:
        label = _BASE_VARIANTS[variant][0]
    return f"{label}, {k} enc" if k != 1 else label


# ======================================================================================
# envs and policies
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


class _GymFactory:
    """A picklable factory of a registered env with ``render_mode='rgb_array'``."""

    def __init__(self, env_id: str) -> None:
        self.env_id = env_id

    def __call__(self) -> gym.Env:
        return gym.make(self.env_id, render_mode="rgb_array")


def _is_factory_spec(spec: str) -> bool:
    """``module:callable`` (a factory), as opposed to a Gymnasium id like ``ale_py:ALE/Pong-v5``."""
    if ":" not in spec:
        return False
    module, _, attr = spec.partition(":")
    ident = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
    return bool(ident.match(module)) and bool(ident.match(attr))


def _module_root(spec: str) -> str | None:
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
    if _is_factory_spec(env):
        return import_object(env, "env factory")
    from .envs import make_env_fn

    return make_env_fn(env)


def _probe(env: str) -> dict[str, Any]:
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
        from ._backend.frames import as_frame

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
# one trial (runs in its own process)
# ======================================================================================
class _Run:
    """A vector env of one variant, with a uniform step/reset/close."""

    def __init__(self, variant: str, spec: dict[str, Any], folder: Path) -> None:
        self.variant = variant
        self.base = _base(variant)
        self.n = n = int(spec["n"])
        self.recorder: Any = None
        self.sb3 = False
        fn = _env_factory(spec["env"])
        if self.base in _CORE:
            from .recorder import Recorder
            from .vector import CaptureVectorEnv

            record = {"none": "none", "render": "none", "all": "all"}.get(self.base, variant)
            fns = [_Rendering(fn) if self.base == "render" else fn] * n
            self.recorder = Recorder(folder / "out", encoders=_encoders_of(variant))
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


def run_trial(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of one variant: make, reset, step, close; time, CPU and memory."""
    variant, n, steps, seed = spec["variant"], int(spec["n"]), int(spec["steps"]), int(spec["seed"])
    base = _base(variant)
    if base in ("gym-vec", "gym-worker", "sb3"):
        import moviepy.video.io.ImageSequenceClip  # noqa: F401 - imported before timing
    folder = Path(spec["folder"])
    # Render once here: what rendering imports (pygame, ...) is imported before
    # the workers fork, the same for every variant.
    fn = _env_factory(spec["env"])
    warm = fn()
    try:
        warm.reset(seed=seed)
        warm.render()
    finally:
        warm.close()
    mem = TreePSS()
    with mem:
        t0 = time.perf_counter()
        run = _Run(variant, spec, folder)
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
        mem.stop()  # its CPU, all of it counted in ours, is taken out below
        self1, tree1 = self_cpu(), tree_cpu()
    cpu = tree1 - tree0 - mem.cpu_s
    main_cpu = (self1 - self0) - mem.cpu_s
    env_steps = n * steps
    encoder_cpu = None
    if enc0 is not None:
        life = closed.get("encoder_life_cpu_s")
        last = life if life is not None else enc_before_close
        encoder_cpu = None if last is None else max(0.0, last - enc0)
    summary = closed.get("summary") or {}
    if base in _CORE:
        video_files, written = int(summary.get("videos", 0)), int(summary.get("frames", 0))
        size = sum(p.stat().st_size for p in folder.rglob("*.mp4"))
    else:
        video_files, written, size = video_frames(folder)
    frames = written * n if base in _TILED else written
    rendered = n * (steps + 1) if base == "render" else frames
    run_s = t3 - t1
    return {
        "variant": variant,
        "encoders": _encoders_of(variant),
        "n": n,
        "steps": steps,
        "repeat": spec.get("repeat", 0),
        "env_steps": env_steps,
        "frames": frames,
        "frames_rendered": rendered,
        "video_frames": written,
        "videos": video_files,
        "bytes_written": size,
        "setup_s": t1 - t0,
        "run_s": run_s,
        "close_s": t3 - t2,
        "steps_per_s": env_steps / run_s,
        "frames_per_s": frames / run_s,
        "cpu_s": cpu,
        "main_cpu_s": main_cpu,
        "encoder_cpu_s": encoder_cpu,
        "encoder_cpu_before_close_s": (
            None if enc0 is None or enc_before_close is None else enc_before_close - enc0
        ),
        "peak_pss_mb": mem.peak / MB,
        "pss_samples": mem.samples,
        "sampler_cpu_s": mem.cpu_s,
        "tree_cpu_total_s": tree1,
    }


def _trial_main(raw: str) -> int:
    """Entry point of a trial process: one JSON spec in, one JSON line out."""
    return trial_main(run_trial, raw, (ConfigError, EnvError))


# ======================================================================================
# the driver
# ======================================================================================
_TRIAL = "import sys; from rlcapture.bench import _trial_main; sys.exit(_trial_main(sys.argv[1]))"


def _measure(
    spec: dict[str, Any], timeout: float, pythonpath: str, max_load: float | None,
    log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """One run in a fresh process; with ``max_load``, on a machine that others leave alone."""
    base = Path(spec["folder"])
    env = dict(os.environ, PYTHONPATH=pythonpath)

    def attempt(k: int) -> dict[str, Any]:
        folder = base / f"attempt{k}"
        folder.mkdir()
        try:
            trial = json.dumps({**spec, "folder": str(folder)})
            return run_trial_process(["-c", _TRIAL, trial], timeout, env=env)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return retry_quiet(attempt, max_load, log)


def _python_path(extra: Sequence[str]) -> str:
    here = str(Path(__file__).resolve().parent.parent)
    parts = [here, *extra, os.getcwd()]
    old = os.environ.get("PYTHONPATH")
    if old:
        parts.append(old)
    seen: list[str] = []
    for p in parts:
        if p and p not in seen:
            seen.append(p)
    return os.pathsep.join(seen)


def _available(variant: str) -> str | None:
    """Why ``variant`` cannot run here, or None."""
    base = _base(variant)
    if base in ("gym-vec", "gym-worker", "sb3"):
        try:
            import moviepy  # noqa: F401
        except ImportError:
            return "moviepy is not installed (pip install 'gymnasium[other]')"
    if base == "sb3":
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            return "stable-baselines3 is not installed"
        except Exception as exc:  # noqa: BLE001
            return f"stable-baselines3 does not import: {type(exc).__name__}: {exc}"
    return None


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "env"


def summarize_trials(
    trials: list[dict[str, Any]], variants: Sequence[str], ns: Sequence[int], cores: int,
    copy_ms: float | None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:  # fmt: skip
    """Medians per (N, variant), and per-frame costs and the ceiling per N."""
    rows: list[dict[str, Any]] = []
    costs: dict[str, dict[str, Any]] = {}
    every = next((v for v in variants if v.startswith("every:")), None)
    for n in ns:
        med: dict[str, dict[str, Any]] = {}
        for v in variants:
            rs = [t for t in trials if t["n"] == n and t["variant"] == v]
            if not rs:
                continue
            m = {
                key: median([t.get(key) for t in rs])
                for key in (
                    "steps_per_s", "frames_per_s", "cpu_s", "main_cpu_s", "encoder_cpu_s",
                    "encoder_cpu_before_close_s", "peak_pss_mb", "run_s", "close_s",
                    "setup_s", "other_load_cores",
                )
            }  # fmt: skip
            m["env_steps"] = rs[0]["env_steps"]
            m["frames"] = median([t["frames"] for t in rs])
            m["frames_rendered"] = median([t["frames_rendered"] for t in rs])
            m["repeats"] = len(rs)
            med[v] = m
        none = med.get("none")
        render = med.get("render")
        step_ms = 1e3 * none["cpu_s"] / none["env_steps"] if none else None
        render_ms = None
        if none and render and render["frames_rendered"]:
            render_ms = max(
                0.0, 1e3 * (render["cpu_s"] - none["cpu_s"]) / render["frames_rendered"]
            )
        encode_ms = None
        # One encoder's figures first (k encoders on few cores also pay for
        # switching between them), then any variant that encoded every frame.
        sources = ["all", every, *(v for v in variants if _base(v) in ("all", "every"))]
        for source in sources:
            m = med.get(source) if source else None
            if m and m["encoder_cpu_s"] is not None and m["frames"]:
                encode_ms = 1e3 * m["encoder_cpu_s"] / m["frames"]
                encode_source = source
                break
        ceiling = None
        if render_ms is not None and encode_ms is not None and render_ms + encode_ms > 0:
            ceiling = 1e3 * cores / (render_ms + encode_ms)
        backlog = None
        a = med.get("all")
        if a and a["encoder_cpu_s"] and a["encoder_cpu_before_close_s"] is not None:
            backlog = 1.0 - a["encoder_cpu_before_close_s"] / a["encoder_cpu_s"]
        costs[str(n)] = {
            "n": n,
            "step_ms": step_ms,
            "render_ms": render_ms,
            "copy_ms": copy_ms,
            "encode_ms": encode_ms,
            "encode_from": encode_source if encode_ms is not None else None,
            "ceiling_frames_per_s": ceiling,
            "encoder_share_of_work_left_at_close": backlog,
        }
        for v, m in med.items():
            base = _base(v)
            row = {"n": n, "variant": v, "label": _label(v), **m}
            row["overhead_pct"] = (
                100.0 * (1.0 - m["steps_per_s"] / none["steps_per_s"]) if none else None
            )
            row["cpu_ms_per_step"] = 1e3 * m["cpu_s"] / m["env_steps"] if m["cpu_s"] else None
            row["cpu_busy_pct"] = (
                100.0 * m["cpu_s"] / (m["run_s"] * cores) if m["cpu_s"] and m["run_s"] else None
            )
            row["recorded_fraction"] = m["frames"] / m["env_steps"] if m["env_steps"] else None
            row["ceiling_pct"] = (
                100.0 * m["frames_per_s"] / ceiling if ceiling and base in _EVERY_FRAME else None
            )
            row["encoders"] = _encoders_of(v) if base in ("all", "every") else None
            row["encode_ms"] = (
                1e3 * m["encoder_cpu_s"] / m["frames"]
                if base in ("all", "every") and m["encoder_cpu_s"] is not None and m["frames"]
                else None
            )
            rows.append(row)
    return rows, costs


def _fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def format_table(result: dict[str, Any]) -> str:
    """The terminal report."""
    s = result["settings"]
    m = result["machine"]
    lines = [
        f"rlcapture bench {result['env']}: {s['frames']} env-steps per run, median of "
        f"{s['repeats']} run{'s' if s['repeats'] != 1 else ''}, policy {s['policy']}; "
        f"{m['cores']} cores ({m['cpu_model']})",
        f"{'N':>3}  {'variant':<28} {'steps/s':>9} {'frames/s':>9} {'recorded':>8} {'overhead':>9} "
        f"{'CPU ms/step':>11} {'CPU busy':>8} {'peak PSS':>9} {'of ceiling':>10}",
    ]
    for row in result["results"]:
        fps = _fmt(row["frames_per_s"], ".0f")
        if row["variant"] == "render":
            fps = f"({row['frames_rendered'] / row['run_s']:.0f})" if row["run_s"] else "-"
        over = "-" if row["variant"] == "none" else _fmt(row["overhead_pct"], ".1f") + "%"
        rec = _fmt(100 * row["recorded_fraction"], ".1f") + "%" if row["recorded_fraction"] else "-"
        lines.append(
            f"{row['n']:>3}  {row['label']:<28} {row['steps_per_s']:9.0f} {fps:>9} {rec:>8} "
            f"{over:>9} {_fmt(row['cpu_ms_per_step'], '.2f'):>11} "
            f"{_fmt(row['cpu_busy_pct'], '.0f') + '%':>8} "
            f"{_fmt(row['peak_pss_mb'], '.0f') + ' MB':>9} "
            f"{(_fmt(row['ceiling_pct'], '.0f') + '%') if row['ceiling_pct'] is not None else '-':>10}"
        )
    lines.append(
        "frames/s: frames written to videos (tiled variants count N per video frame); "
        "(render: rendered, not recorded)"
    )
    lines.append(
        "recorded: frames recorded per env-step; overhead: how much slower than "
        "'no recording' the run stepped; CPU busy: share of all cores the run used"
    )
    lines.append(f"per-frame CPU, ms, and the ceiling = {m['cores']} cores / (render + encode):")
    lines.append(
        f"{'N':>3}  {'step':>6} {'render':>7} {'copy':>6} {'encode':>7} {'ceiling frames/s':>17}"
    )
    for c in result["costs"].values():
        lines.append(
            f"{c['n']:>3}  {_fmt(c['step_ms'], '.3f'):>6} {_fmt(c['render_ms'], '.3f'):>7} "
            f"{_fmt(c['copy_ms'], '.3f'):>6} {_fmt(c['encode_ms'], '.3f'):>7} "
            f"{_fmt(c['ceiling_frames_per_s'], '.0f'):>17}"
        )
    skipped = [f"{v} ({why})" for v, why in result["skipped"].items()]
    if skipped:
        lines.append("not run: " + "; ".join(skipped))
    load = result.get("other_load_cores_max")
    if load is not None and load >= 0.25:
        lines.append(
            f"warning: other programs used up to {load:.1f} cores during the runs; "
            "the figures were taken under load"
        )
    return "\n".join(lines)


# ======================================================================================
# the chart (Pillow only)
# ======================================================================================
_COLORS = {
    "none": (120, 120, 120),
    "render": (170, 170, 170),
    "all": (31, 119, 180),
    "every": (106, 174, 214),
    "gym-vec": (214, 39, 40),
    "gym-worker": (255, 127, 14),
    "sb3": (44, 160, 44),
}


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _nice_step(top: float) -> float:
    raw = top / 5 if top > 0 else 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * mag:
            return mult * mag
    return 10 * mag


def draw_chart(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """A horizontal bar chart of env-steps/s per N and variant, written as PNG."""
    from PIL import Image, ImageDraw

    rows = result["results"]
    ns = sorted({r["n"] for r in rows})
    title_f, label_f, small_f = _font(18), _font(14), _font(12)
    row_h, head_h, gap = 22, 26, 10
    left, right_pad, top = 250, 230, 74
    plot_w = 640
    width = left + plot_w + right_pad
    height = top + sum(head_h + row_h * sum(1 for r in rows if r["n"] == n) + gap for n in ns) + 50
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    s, m = result["settings"], result["machine"]
    d.text((16, 12), f"rlcapture bench: {result['env']}, env-steps/s (higher is better)",
           fill="black", font=title_f)  # fmt: skip
    d.text(
        (16, 40),
        f"median of {s['repeats']}, {s['frames']} env-steps per run, timed reset..close; "
        f"{m['cores']} cores, {result['date'][:10]}",
        fill=(80, 80, 80),
        font=small_f,
    )
    top_value = max((r["steps_per_s"] for r in rows), default=1.0)
    step = _nice_step(top_value)
    axis_max = step * math.ceil(top_value / step) if top_value > 0 else 1.0
    scale = plot_w / axis_max
    bottom = height - 40
    # grid
    v = 0.0
    while v <= axis_max + 1e-9:
        x = left + v * scale
        d.line([(x, top - 6), (x, bottom)], fill=(225, 225, 225))
        text = f"{v:,.0f}"
        tw = d.textlength(text, font=small_f)
        d.text((x - tw / 2, bottom + 6), text, fill=(80, 80, 80), font=small_f)
        v += step
    y = top
    for n in ns:
        d.text((16, y + 4), f"N = {n} env{'s' if n != 1 else ''}", fill="black", font=label_f)
        y += head_h
        for r in (r for r in rows if r["n"] == n):
            color = _COLORS.get(_base(r["variant"]), (100, 100, 100))
            if _encoders_of(r["variant"]) != 1:  # more encoders: a darker shade
                color = tuple(c * 3 // 5 for c in color)
            d.text((32, y + 3), r["label"], fill=(40, 40, 40), font=label_f)
            w = max(1.0, r["steps_per_s"] * scale)
            d.rectangle([left, y + 3, left + w, y + row_h - 3], fill=color)
            note = f"{r['steps_per_s']:,.0f}"
            if r["variant"] != "none" and r.get("overhead_pct") is not None:
                note += f"  ({-r['overhead_pct']:+.0f}%)"
            if r.get("ceiling_pct") is not None:
                note += f"  {r['ceiling_pct']:.0f}% of ceiling"
            d.text((left + w + 6, y + 4), note, fill=(40, 40, 40), font=small_f)
            y += row_h
        y += gap
    d.line([(left, top - 6), (left, bottom)], fill=(120, 120, 120))
    img.save(str(path), format="PNG")


# ======================================================================================
# command line
# ======================================================================================
def _int_range(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be from {low} to {high}, got {text}")
        return value

    return parse


def _cores_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--max-other-load must be a number, got {text!r}"
        ) from None
    if not (0 < value <= 1024):
        raise argparse.ArgumentTypeError(f"--max-other-load must be above 0, got {text}")
    return value


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to the ``rlcapture`` parser's subparsers."""
    p = sub.add_parser(
        "bench",
        help="measure what recording costs on an env",
        description=(
            "Run an env without rendering, rendering without encoding, recording every "
            "frame, recording 1 episode in M, and Gymnasium's (and SB3's) recorders, side "
            "by side; report steps/s, overhead, per-frame CPU costs, memory and the "
            "machine ceiling as a table, a JSON file and a PNG chart."
        ),
    )
    p.add_argument(
        "env_id", nargs="?", default=DEFAULT_ENV,
        help=f"Gymnasium env id, or module:factory returning an env with render_mode='rgb_array' "
        f"(default {DEFAULT_ENV})",
    )  # fmt: skip
    p.add_argument(
        "--num-envs", "-n", type=_int_range(1, 1024, "--num-envs"), nargs="+",
        default=list(DEFAULT_NUM_ENVS), metavar="N",
        help="one or more env counts (default 1 2 4)",
    )  # fmt: skip
    p.add_argument("--policy", default="random", help="random (default) or module:callable")
    p.add_argument(
        "--frames", "-f", type=_int_range(1, 10**8, "--frames"), default=DEFAULT_FRAMES,
        help=f"env-steps per run, over all envs (default {DEFAULT_FRAMES})",
    )  # fmt: skip
    p.add_argument(
        "--repeats", "-r", type=_int_range(1, 100, "--repeats"), default=DEFAULT_REPEATS,
        help=f"runs per variant and N, alternating (default {DEFAULT_REPEATS})",
    )  # fmt: skip
    p.add_argument(
        "--every-episode", "-m", type=_int_range(1, 10**6, "--every-episode"),
        default=DEFAULT_EVERY, metavar="M",
        help=f"the sparse variant records 1 episode in M (default {DEFAULT_EVERY})",
    )  # fmt: skip
    p.add_argument(
        "--variants",
        help="comma-separated subset of none,render,all,every,gym-vec,gym-worker,sb3 "
        "(default: all that are installed)",
    )
    p.add_argument(
        "--encoders", "-e", type=_int_range(1, 64, "--encoders"), nargs="+", default=[1],
        metavar="K",
        help="encoder processes of the rlcapture recording variants; several values run "
        "each of those variants once per K, side by side (default 1)",
    )  # fmt: skip
    p.add_argument("--seed", type=_int_range(0, 2**31 - 1, "--seed"), default=0)
    p.add_argument("--json", help="where to write the results (default bench-ENV.json)")
    p.add_argument("--png", help="where to draw the chart (default: the JSON path, .png)")
    p.add_argument(
        "--timeout", type=_int_range(1, 86400, "--timeout"), default=600,
        help="seconds one run may take (default 600)",
    )  # fmt: skip
    p.add_argument(
        "--max-other-load", type=_cores_arg, metavar="CORES",
        help="on a shared machine: before each run wait (up to 5 min) until other programs "
        "use fewer than CORES cores, and redo a run they disturbed more (up to twice)",
    )  # fmt: skip
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    return p


def _command(args: argparse.Namespace, ns: Sequence[int]) -> str:
    parts = ["rlcapture", "bench", args.env_id, "--num-envs", *map(str, ns)]
    parts += ["--frames", str(args.frames), "--repeats", str(args.repeats)]
    parts += ["--every-episode", str(args.every_episode)]
    if args.policy != "random":
        parts += ["--policy", args.policy]
    if args.variants:
        parts += ["--variants", args.variants]
    encoders = list(dict.fromkeys(getattr(args, "encoders", None) or [1]))
    if encoders != [1]:
        parts += ["--encoders", *map(str, encoders)]
    if args.max_other_load is not None:
        parts += ["--max-other-load", f"{args.max_other_load:g}"]
    return " ".join(parts)


def _select_variants(text: str | None, every: int, encoders: Sequence[int] = (1,)) -> list[str]:
    """The variants to run: ``--variants`` (default all), each recording one once per K."""
    chosen = _chosen_variants(text, every)
    out = []
    for v in chosen:
        if _base(v) in ("all", "every"):
            out.extend(_with_encoders(v, k) for k in dict.fromkeys(encoders))
        else:
            out.append(v)
    return out


def _chosen_variants(text: str | None, every: int) -> list[str]:
    names = variant_names(every)
    if not text:
        return names
    chosen = []
    for part in (x.strip() for x in text.split(",")):
        if not part:
            continue
        key = "every" if part.startswith("every") else part
        if key not in _BASE_VARIANTS:
            raise ConfigError(f"unknown variant {part!r}: choose from {', '.join(_BASE_VARIANTS)}")
        if part.startswith("every:"):
            raise ConfigError("write the variant as 'every' and set M with --every-episode")
        name = f"every:{every}" if key == "every" else key
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ConfigError("--variants names no variant")
    return [v for v in names if v in chosen]


def _writable(path: Path, what: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write the {what} to {str(path)!r}: no folder {str(parent)!r}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write the {what} in {str(parent)!r}: permission denied")


def bench(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``rlcapture bench``; returns the exit status."""
    # pygame (classic-control rendering) needs no display for rgb_array.
    headless()
    try:
        import psutil  # noqa: F401
    except ImportError:
        raise ConfigError(
            "rlcapture bench needs psutil: pip install psutil (or rlcapture[bench])"
        ) from None
    env = args.env_id
    if not isinstance(env, str) or not env.strip():
        raise EnvError("give an env id or module:factory")
    encoders = list(dict.fromkeys(getattr(args, "encoders", None) or [1]))
    variants = _select_variants(args.variants, args.every_episode, encoders)
    ns = list(dict.fromkeys(args.num_envs))
    json_path = Path(args.json) if args.json else Path(f"bench-{_safe_name(env)}.json")
    png_path = Path(args.png) if args.png else json_path.with_suffix(".png")
    _writable(json_path, "JSON results")
    _writable(png_path, "chart")
    probe = _probe(env)
    extra_path = []
    if _is_factory_spec(env):
        root = _module_root(env)
        if root:
            extra_path.append(root)
    if args.policy != "random":
        # Made here too: errors now, not in every trial.
        load_policy(args.policy, SimpleNamespace(action_space=gym.spaces.Discrete(2)), 0)
        root = _module_root(args.policy)
        if root:
            extra_path.append(root)
    pythonpath = _python_path(extra_path)
    skipped = {v: why for v in variants if (why := _available(v)) is not None}
    runnable = [v for v in variants if v not in skipped]
    cores = count_cores()
    date = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    log = (
        (lambda text: print(text, file=stderr, flush=True))
        if not args.quiet
        else (lambda text: None)
    )
    log(
        f"rlcapture bench {env}: N = {' '.join(map(str, ns))}, {len(runnable)} variants, "
        f"{args.repeats} repeat(s), {args.frames} env-steps per run"
    )
    trials: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    started = time.perf_counter()
    tmp_root = Path(tempfile.mkdtemp(prefix="rlcapture-bench-"))
    try:
        for rep in range(args.repeats):
            k = rep % len(runnable) if runnable else 0
            order = runnable[k:] + runnable[:k]
            for n in ns:
                steps = max(1, math.ceil(args.frames / n))
                for v in order:
                    if v in failures:
                        continue
                    folder = tmp_root / f"r{rep}-n{n}-{_safe_name(v)}"
                    folder.mkdir()
                    spec = {
                        "variant": v, "n": n, "steps": steps, "env": env, "policy": args.policy,
                        "seed": args.seed, "repeat": rep, "folder": str(folder),
                    }  # fmt: skip
                    try:
                        r = _measure(
                            spec, float(args.timeout), pythonpath, args.max_other_load, log
                        )
                    except TrialFailed as exc:
                        if _base(v) in _CORE:
                            cls = EnvError if exc.user else RLCaptureError
                            raise cls(f"bench run {v!r} with N={n} failed: {exc}") from None
                        failures[v] = str(exc)
                        log(f"  {v} failed with N={n}: {exc} (left out from now on)")
                        continue
                    finally:
                        shutil.rmtree(folder, ignore_errors=True)
                    trials.append(r)
                    log(
                        f"  rep {rep} N={n:<3} {_label(v):<28} {r['steps_per_s']:8.0f} steps/s "
                        f"{r['frames_per_s']:8.0f} frames/s  {r['run_s']:6.2f} s  "
                        f"peak PSS {r['peak_pss_mb']:5.0f} MB  other load "
                        f"{r['other_load_cores']:.2f} cores"
                    )
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    ran = [v for v in runnable if v not in failures]
    rows, costs = summarize_trials(trials, ran, ns, cores, probe["copy_ms_per_frame"])
    import av

    result: dict[str, Any] = {
        "env": env,
        "date": date,
        "command": _command(args, ns),
        "machine": {
            "cores": cores,
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "gymnasium": gym.__version__,
            "av": av.__version__,
            "numpy": np.__version__,
        },
        "settings": {
            "num_envs": ns,
            "frames": args.frames,
            "repeats": args.repeats,
            "every_episode": args.every_episode,
            "policy": args.policy,
            "seed": args.seed,
            "max_other_load": args.max_other_load,
            "encoders": encoders,
        },
        "probe": probe,
        "variants": {v: {"label": _label(v), "what": _what(v)} for v in variants},
        "skipped": {**skipped, **{v: f"failed: {why}" for v, why in failures.items()}},
        "results": rows,
        "costs": costs,
        "other_load_cores_max": max((t["other_load_cores"] for t in trials), default=None),
        "wall_s": time.perf_counter() - started,
        "trials": trials,
    }
    print(format_table(result), file=stdout)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    if rows:
        draw_chart(result, png_path)
    print(f"wrote {json_path} and {png_path}", file=stdout)
    return 0
