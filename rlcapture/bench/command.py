"""``rlcapture bench``: measure what recording costs on any env, side by side.

For each number of envs N it runs, in alternating repetitions (the order of the
variants rotated each repeat), each in a fresh Python process:

``none``
    :class:`~rlcapture.CaptureVectorEnv` with ``record="none"``: stepping, no
    rendering. The reference step rate.
``render``
    The same vector env over envs wrapped in :class:`.trial.RenderEveryFrame`,
    which calls ``render()`` after every ``reset`` and ``step`` and drops the frame.
    Same processes, pipes and shared arrays as ``none``; the only difference is
    the rendering (done inside ``step``, so on the critical path), which makes
    ``render - none`` the CPU cost of rendering a frame.
``all``
    rlcapture recording every frame (``record="all"``).
``every:M``
    rlcapture recording episodes 0, M, 2M, ... of each env (default M = 20).
``record`` (only when named in ``--variants``)
    The whole ``rlcapture record ENV -n N -k K`` command in a subprocess,
    timed from its start (interpreter and imports included) to its exit; K
    episodes of about 22 frames each make about as many frames as the other
    runs step. With ``first_video_s`` (every recording variant has it:
    seconds from making the envs, or from starting the command, until the
    first ``.mp4`` appears) and
    ``frames_per_s_whole`` (frames over the time from making the envs to
    closing them, set-up included) it compares the whole command with
    Gymnasium's recorders.
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
(``Recorder(encoders=K)``); a number K is written ``all/eK``, ``every:M/eK``,
and ``auto`` (the default: the recorder's own choice from the cores and N)
is plain ``all``, so ``--encoders auto 1 2`` compares the default with one
and two encoder processes in the same alternating repetitions.

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
  ``min(cores / (step + render + encode), N / (worker step + render))`` frames/s
  with each recording run's share of it (:func:`~rlcapture.bench.report.frame_ceiling`).

The results go to the terminal (a table, :mod:`.report`), a JSON file and a PNG bar
chart (:mod:`.chart`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO

import gymnasium as gym

from ..errors import ConfigError, EnvError, OutputError, RLCaptureError
from ..policies import load_policy
from .chart import draw_chart
from .measure import TrialFailed, headless, machine_info, retry_quiet, run_trial_process
from .report import format_table, summarize_trials
from .trial import is_factory_spec, module_root, probe_env
from .variants import (
    CORE,
    select_variants,
    unavailable,
    variant_base,
    variant_label,
    variant_what,
)

__all__ = ["bench"]


# ======================================================================================
# the driver
# ======================================================================================
#: What a trial process runs (``python -c``), its spec as argument.
_TRIAL = (
    "import sys; from rlcapture.bench.trial import trial_entry; sys.exit(trial_entry(sys.argv[1]))"
)


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
    here = str(Path(__file__).resolve().parents[2])  # the folder holding rlcapture/
    parts = [here, *extra, os.getcwd()]
    old = os.environ.get("PYTHONPATH")
    if old:
        parts.append(old)
    seen: list[str] = []
    for p in parts:
        if p and p not in seen:
            seen.append(p)
    return os.pathsep.join(seen)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "env"


def _command(args: argparse.Namespace, ns: Sequence[int]) -> str:
    parts = ["rlcapture", "bench", args.env_id, "--num-envs", *map(str, ns)]
    parts += ["--frames", str(args.frames), "--repeats", str(args.repeats)]
    parts += ["--every-episode", str(args.every_episode)]
    if args.policy != "random":
        parts += ["--policy", args.policy]
    if args.variants:
        parts += ["--variants", args.variants]
    encoders = list(dict.fromkeys(getattr(args, "encoders", None) or ["auto"]))
    if encoders != ["auto"]:
        parts += ["--encoders", *map(str, encoders)]
    if args.max_other_load is not None:
        parts += ["--max-other-load", f"{args.max_other_load:g}"]
    return " ".join(parts)


def _writable(path: Path, what: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write the {what} to {str(path)!r}: no folder {str(parent)!r}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write the {what} in {str(parent)!r}: permission denied")


def _run_trials(
    args: argparse.Namespace, env: str, runnable: list[str], ns: list[int], pythonpath: str,
    log: Callable[[str], None],
) -> tuple[list[dict[str, Any]], dict[str, str]]:  # fmt: skip
    """Every repeat of every (N, variant), the order of the variants rotated each repeat.

    Returns the trials' results, and why each variant that failed (and was
    left out from then on) failed. A failure of one of rlcapture's own
    variants stops the bench.
    """
    trials: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
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
                        if variant_base(v) in CORE:
                            cls = EnvError if exc.user else RLCaptureError
                            raise cls(f"bench run {v!r} with N={n} failed: {exc}") from None
                        failures[v] = str(exc)
                        log(f"  {v} failed with N={n}: {exc} (left out from now on)")
                        continue
                    finally:
                        shutil.rmtree(folder, ignore_errors=True)
                    trials.append(r)
                    log(
                        f"  rep {rep} N={n:<3} {variant_label(v):<28} {r['steps_per_s']:8.0f} steps/s "
                        f"{r['frames_per_s']:8.0f} frames/s  {r['run_s']:6.2f} s  "
                        f"peak PSS {r['peak_pss_mb']:5.0f} MB  other load "
                        f"{r['other_load_cores']:.2f} cores"
                    )
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return trials, failures


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
    encoders = list(dict.fromkeys(getattr(args, "encoders", None) or ["auto"]))
    variants = select_variants(args.variants, args.every_episode, encoders)
    ns = list(dict.fromkeys(args.num_envs))
    json_path = Path(args.json) if args.json else Path(f"bench-{_safe_name(env)}.json")
    png_path = Path(args.png) if args.png else json_path.with_suffix(".png")
    _writable(json_path, "JSON results")
    _writable(png_path, "chart")
    probe = probe_env(env)
    extra_path = []
    if is_factory_spec(env):
        root = module_root(env)
        if root:
            extra_path.append(root)
    if args.policy != "random":
        # Made here too: errors now, not in every trial.
        load_policy(args.policy, SimpleNamespace(action_space=gym.spaces.Discrete(2)), 0)
        root = module_root(args.policy)
        if root:
            extra_path.append(root)
    pythonpath = _python_path(extra_path)
    skipped = {v: why for v in variants if (why := unavailable(v)) is not None}
    runnable = [v for v in variants if v not in skipped]
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
    started = time.perf_counter()
    trials, failures = _run_trials(args, env, runnable, ns, pythonpath, log)
    ran = [v for v in runnable if v not in failures]
    machine = machine_info()
    rows, costs = summarize_trials(trials, ran, ns, machine["cores"], probe["copy_ms_per_frame"])
    result: dict[str, Any] = {
        "env": env,
        "date": date,
        "command": _command(args, ns),
        "machine": machine,
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
        "variants": {v: {"label": variant_label(v), "what": variant_what(v)} for v in variants},
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
