"""The ``rlcapture`` command.

``rlcapture record ENV_ID`` evaluates a policy on N envs for K episodes and
records them: one video per episode in ``DIR/videos/``, one line per episode
in the manifest of ``DIR``, what ran in ``DIR/run.json``, a summary at the end.
Episode j resets with seed ``--seed + j`` whichever env runs it
(:func:`rlcapture.evaluate`). ``rlcapture replay DIR --env E --episode K``
renders one recorded episode again. Errors a user can fix are one
line on stderr and exit status 2; Ctrl-C stops cleanly with status 130.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ._backend.manifest import MANIFEST
from ._backend.run_folder import RUN_FILE, KeptFilesWarning, RunFolder
from .config import RecordConfig
from .envs import EnvFactory, make_env_fn
from .errors import ConfigError, RLCaptureError
from .evaluate import evaluate
from .policies import allocate_episodes, load_policy
from .results.progress import RunProgress
from .results.summary import (
    print_run,
    print_seeds,
    save_json,
    seeds_json,
    stats_dict,
    summarize_run,
)
from .triggers import as_schedule

__all__ = ["allocate_episodes", "load_policy", "main", "parse_seeds", "record_config"]

DEFAULT_ENV = "CartPole-v1"




def _encoders_arg(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    return _positive(int, 1, 64, "--encoders")(text)


def _positive(kind: type, low: float, high: float, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not (low <= value <= high) or (isinstance(value, float) and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{what} must be from {low:g} to {high:g}, got {text}")
        return value

    return parse


class SeedCount(list):  # type: ignore[type-arg]
    """``--seeds N`` (a count): seeds 0..N-1, which :func:`record` spaces K apart."""


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: "0,1,2" (a list; "5," is the one seed 5) or "3" (a count: 0, 1, 2).

    A count comes back as a :class:`SeedCount`: a run with ``--seed S`` takes
    seeds S..S+K-1, so ``record`` spreads counted runs K apart to keep their
    episodes apart.
    """
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        else:
            count = int(text)
            if not 1 <= count <= 10_000:
                raise argparse.ArgumentTypeError(f"--seeds count must be from 1 to 10000, got {text}")
            seeds = SeedCount(range(count))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds must be a count (3) or a list (0,1,2), got {text!r}"
        ) from None
    if not seeds or any(not 0 <= s < 2**63 for s in seeds):
        raise argparse.ArgumentTypeError(f"--seeds must hold seeds from 0 to 2**63-1, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds repeats a seed: {text!r}")
    return seeds


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--success-threshold must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"--success-threshold must be finite, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlcapture", description="Record what reinforcement-learning agents do."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser(
        "record",
        help="evaluate a policy and record one video per episode",
        description="Run K episodes on N parallel envs and record them.",
    )
    rec.add_argument(
        "env_id",
        nargs="?",
        default=DEFAULT_ENV,
        help=f"what gymnasium.make takes: an id (default {DEFAULT_ENV}), ALE/Pong-v5 with "
        "--import ale_py, or module:EnvName-v0",
    )
    rec.add_argument(
        "--env-kwargs",
        metavar="JSON",
        help='keyword arguments of the env, as a JSON object: \'{"continuous": true}\'',
    )
    rec.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (it registers envs, e.g. ale_py for ALE/Pong-v5); repeatable",
    )
    rec.add_argument("--num-envs", "-n", type=_positive(int, 1, 1024, "--num-envs"), default=2)
    rec.add_argument("--episodes", "-k", type=_positive(int, 1, 10**7, "--episodes"), default=10)
    rec.add_argument("--out", "-o", help="output folder (default runs/ENV_ID)")
    rec.add_argument("--seed", type=_positive(int, 0, 2**63 - 1, "--seed"), default=0)
    rec.add_argument(
        "--seeds",
        type=parse_seeds,
        help="several runs, one per seed, into OUT/seed-S/: a list (0,1000,2000) or a count "
        "(3: seeds 0, K, 2K for K episodes, so the runs share no episode)",
    )
    rec.add_argument(
        "--success-threshold",
        type=_finite,
        metavar="R",
        help="report the fraction of episodes with return >= R",
    )
    rec.add_argument("--record", default="all", help="all, none or every:M (default all)")
    rec.add_argument("--max-episode-steps", type=_positive(int, 1, 10**9, "--max-episode-steps"))
    rec.add_argument(
        "--policy", default="random", help="random (default), sb3:ALGO:path.zip or module:callable"
    )
    rec.add_argument(
        "--stochastic", action="store_true", help="SB3 policies: sample actions (default: deterministic)"
    )
    rec.add_argument("--fps", type=_positive(float, 0.1, 1000, "--fps"), help="default: the env's render_fps")
    rec.add_argument("--codec", default="libx264", help="FFmpeg encoder (default libx264)")
    rec.add_argument("--crf", type=_positive(int, 0, 63, "--crf"), default=23)
    rec.add_argument("--no-video", action="store_true", help="write no videos (use with --frames/--keyframes)")
    rec.add_argument(
        "--frames",
        type=_positive(int, 1, 10**9, "--frames"),
        metavar="K",
        help="also save every K-th step as PNG in OUT/frames/envE-episodeK/ (1: every frame)",
    )
    rec.add_argument(
        "--keyframes",
        nargs="?",
        const=True,
        type=_positive(int, 1, 10**9, "--keyframes"),
        metavar="K",
        help="save the first and last frame of each episode as PNG next to its video "
        "(and every K-th step if K is given)",
    )
    rec.add_argument(
        "--keep",
        default="all",
        metavar="RULES",
        help="which episodes keep their files: all (default), worst:K, best:K, failures, "
        "failures:R (return below R), sample:K or sample:P; combine with commas",
    )
    rec.add_argument("--mosaic", action="store_true", help="also write OUT/mosaic.mp4 with every env side by side")
    rec.add_argument("--envs-per-worker", type=_positive(int, 1, 1024, "--envs-per-worker"), default=1)
    rec.add_argument(
        "--encoders",
        type=_encoders_arg,
        default="auto",
        help="encoder processes, or auto (default: from the usable cores and --num-envs); "
        "env i is encoded by encoder i %% K",
    )
    rec.add_argument("--drop", action="store_true", help="drop frames rather than slow the envs")
    rec.add_argument("--step-timeout", type=_positive(float, 0.001, 1e6, "--step-timeout"))
    rec.add_argument(
        "--on-error",
        choices=("raise", "continue"),
        default="raise",
        help="when an env fails: stop (default) or go on without it, noting it in the manifest",
    )
    rec.add_argument(
        "--log",
        dest="loggers",
        action="append",
        metavar="TRACKER",
        help="also send each episode's statistics and video to wandb[:PROJECT], "
        "tensorboard[:DIR] or mlflow[:TRACKING_URI] (repeatable)",
    )
    rec.add_argument(
        "--upload-attempts",
        type=_positive(int, 1, 100, "--upload-attempts"),
        help="tries per upload before it is given up and named (default 3)",
    )
    rec.add_argument(
        "--upload-timeout",
        type=_positive(float, 0.1, 86400, "--upload-timeout"),
        metavar="SECONDS",
        help="how long the end of the run waits for uploads under way (default 60)",
    )
    rec.add_argument("--overwrite", action="store_true", help="replace a recording already in --out")
    rec.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    rec.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run the episodes on a Ray cluster: HOST:6379, ray://HOST:10001, or none to join "
        "(or start) a local Ray; --num-envs is then per actor",
    )
    rec.add_argument(
        "--ray-storage",
        choices=("auto", "shared", "stream"),
        default="auto",
        help="with --ray: nodes write into --out (shared), stream files back (stream), or detect (auto)",
    )
    rec.add_argument("--ray-scratch", metavar="DIR", help="with --ray-storage stream: node-local folder")
    rep = sub.add_parser(
        "replay",
        help="re-create one recorded episode and render it into a new video",
        description="Re-create an episode from its seed (or its env generator's state) and "
        "the run's run.json, and render it into a new video.",
    )
    rep.add_argument("dir", help=f"a recording's folder (holding {MANIFEST} and {RUN_FILE})")
    rep.add_argument("--env", type=_positive(int, 0, 10**7, "--env"), default=0, help="env index (default 0)")
    rep.add_argument(
        "--episode", type=_positive(int, 0, 10**9, "--episode"), default=0, help="that env's episode (default 0)"
    )
    rep.add_argument("--policy", help="default: the run's (random, sb3:ALGO:path.zip or module:callable)")
    rep.add_argument("--stochastic", action="store_true", help="SB3 policies: sample actions")
    rep.add_argument("--out", "-o", help="the new video (default DIR/replays/envE-episodeK.mp4)")
    rep.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    plot = sub.add_parser(
        "plot",
        help="draw the return per episode of a recording into DIR/learning_curve.png",
        description="Draw every finished episode's return and a moving average, per seed (matplotlib).",
    )
    plot.add_argument(
        "dir",
        help=f"a recording's folder (holding {MANIFEST}, seed-S/ folders, or a RecordCallback's "
        "step-T/ rounds, drawn against the training timestep)",
    )
    plot.add_argument(
        "--x", choices=("steps", "episode", "time"), default="steps", help="x axis: env steps (default), episode or time"
    )
    plot.add_argument(
        "--window", type=_positive(int, 1, 10**7, "--window"), help="moving-average window (default: a tenth of the episodes)"
    )
    plot.add_argument("--output", help="PNG or SVG path, by its suffix (default DIR/learning_curve.png)")
    plot.add_argument("--format", choices=("png", "svg", "both"), help="png, svg or both (default: by --output's suffix, else png)")
    report = sub.add_parser(
        "report",
        help="write a static HTML page of one or more recordings",
        description="Write DIR/report.html: summary, learning curve, every episode, every video, "
        "and for several runs a comparison on the seeds they share.",
    )
    report.add_argument(
        "runs", nargs="+", metavar="RUN_DIR",
        help="recording folders (or --seeds folders, or a RecordCallback's folder of step-T/ rounds)",
    )  # fmt: skip
    report.add_argument("--out", "-o", help="folder for report.html (default: RUN_DIR for one run)")
    report.add_argument(
        "--success-threshold", type=_finite, metavar="R", help="success: return >= R (default: the one recorded)"
    )
    from .bench import add_parser as add_bench_parser

    add_bench_parser(sub)
    return parser


def _default_out(env_id: str) -> str:
    return str(Path("runs") / re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id).strip("._") or "env")


def record(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run ``rlcapture record``; returns the exit status.

    With ``--seeds``, one run per seed into ``OUT/seed-S/`` (each its own
    recorder and manifest), a summary per seed, then one across seeds.
    """
    out = args.out or _default_out(args.env_id)
    if not args.seeds:
        code, returns = _record_one(args, Path(out), args.seed, stdout, stderr)
        return code
    per_seed: dict[int, list[float]] = {}
    code = 0
    start = time.perf_counter()
    seeds = list(args.seeds)
    if isinstance(args.seeds, SeedCount):
        # Run S evaluates seeds S..S+K-1: counted runs start K apart, so no
        # two share an episode (0, K, 2K, ...).
        seeds = [s * args.episodes for s in seeds]
    else:
        ordered = sorted(seeds)
        close = [(a, b) for a, b in itertools.pairwise(ordered) if b - a < args.episodes]
        if close:
            a, b = close[0]
            print(
                f"rlcapture: note: the runs of seeds {a} and {b} share episodes (a run with "
                f"seed S evaluates seeds S..S+{args.episodes - 1}); space the seeds at least "
                f"{args.episodes} apart, or give a count (--seeds {len(seeds)})",
                file=stderr,
            )
    # The top folder is locked for the whole run, cleared with --overwrite (an
    # earlier plain recording there included), and says which seeds it holds.
    top = RunFolder(out)
    top.open(args.overwrite, folders=())
    try:
        top.write_seeds_index(seeds)
        for seed in seeds:
            code, returns = _record_one(args, top.seed(seed), seed, stdout, stderr)
            per_seed[seed] = returns
            if code:
                break
    finally:
        top.release()
    print_seeds(per_seed, args.success_threshold, stdout)
    save_json(
        top.summary,
        seeds_json(
            per_seed,
            args.success_threshold,
            env_id=args.env_id,
            seeds=list(per_seed),
            elapsed_s=round(time.perf_counter() - start, 3),
            interrupted=code == 130,
        ),
        stderr,
    )
    return code


def record_config(args: argparse.Namespace, **overrides: Any) -> RecordConfig:
    """The :class:`RecordConfig` that ``rlcapture record``'s arguments ask for.

    An argument whose destination is named like a config option (``--codec``,
    ``--drop``, ``--keep``, ...) is that option, so a new option needs only
    its flag here; the few named otherwise are mapped below. Arguments left
    unset (None) keep the config's defaults; ``overrides`` win over all.
    ``--mosaic`` stays True (a tile per env), which the vector env resolves.
    """
    options = {
        name: getattr(args, name)
        for name in RecordConfig.option_names()
        if getattr(args, name, None) is not None
    }
    options["videos"] = not getattr(args, "no_video", False)
    options.update(overrides)
    return RecordConfig.from_options(**options)


def parse_env_kwargs(text: str | None) -> dict[str, Any]:
    """``--env-kwargs``: a JSON object of the env's keyword arguments (None: none)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--env-kwargs must be a JSON object such as '{{\"continuous\": true}}': {exc} in {text!r}"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"--env-kwargs must be a JSON object ({{...}}), got {text!r}")
    return value


def env_factory(args: argparse.Namespace) -> EnvFactory:
    """The env that ``rlcapture record``'s arguments name (``--import`` first, then the id)."""
    return make_env_fn(
        args.env_id,
        env_kwargs=parse_env_kwargs(getattr(args, "env_kwargs", None)),
        max_episode_steps=args.max_episode_steps,
        imports=getattr(args, "imports", None) or (),
    )


def _record_one(
    args: argparse.Namespace, out: Path, seed: int, stdout: TextIO, stderr: TextIO
) -> tuple[int, list[float]]:
    """One evaluation: episode j resets with seed ``seed + j`` (j < --episodes), on any env.

    Returns the exit status and the finished episodes' returns.
    """
    schedule = as_schedule(args.record, envs=args.num_envs)
    if getattr(args, "ray", None) is not None:
        return _record_on_ray(args, out, seed, schedule, stdout, stderr)
    start = time.perf_counter()
    # Drawn from the first step on, so an error before it is one line alone.
    bars: list[RunProgress] = []
    seen = [0, 0]  # env steps, episodes ended

    def tick(done: int, total: int, steps: int, lengths: Sequence[int]) -> None:
        if not bars:
            longest = max(allocate_episodes(args.episodes, min(args.num_envs, args.episodes)))
            label = f"seed {seed}" if args.seeds else ""
            bars.append(
                RunProgress(
                    args.episodes, args.num_envs, longest, stderr, enabled=not args.quiet, label=label
                )
            )
        for length in lengths:
            bars[0].episode_ended(length)
        seen[:] = [steps, done]
        bars[0].update(steps, done)

    try:
        result = _evaluate(args, out, seed, schedule, tick)
    except BaseException:
        if bars:
            bars[0].__exit__(None, None, None)
        raise
    if bars:
        bars[0].close(*seen)
    elapsed = time.perf_counter() - start
    label = args.env_id if not args.seeds else f"{args.env_id} seed {seed}"
    summary = summarize_run(out, args.success_threshold)
    print_run(summary, label, args.num_envs, elapsed, result.interrupted, stdout)
    for env, message in sorted(result.errors.items()):
        print(f"  failed   env {env}: {message} (the run went on without it)", file=stdout)
    _save_summary(
        args, out, seed, summary, elapsed, result.interrupted, stderr,
        failed_envs={str(env): message for env, message in sorted(result.errors.items())},
    )  # fmt: skip
    _report_uploads(result.recording, stdout)
    return (130 if result.interrupted else 0), summary.returns


def _save_summary(
    args: argparse.Namespace,
    out: Path,
    seed: int,
    summary: Any,
    elapsed: float,
    interrupted: bool,
    stderr: TextIO,
    **extra: Any,
) -> None:
    """Write ``OUT/summary.json`` for one recording (local or on Ray), if it left a folder."""
    if summary.records or out.is_dir():
        save_json(
            RunFolder(out).summary,
            summary.to_json(
                env_id=args.env_id,
                seed=seed,
                num_envs=args.num_envs,
                policy=args.policy,
                elapsed_s=round(elapsed, 3),
                interrupted=interrupted,
                per_seed={str(seed): stats_dict(summary.description)},
                **extra,
            ),
            stderr,
        )


def _evaluate(
    args: argparse.Namespace, out: Path, seed: int, schedule: Any, tick: Callable[..., None]
) -> Any:
    """``rlcapture.evaluate`` with the arguments of ``rlcapture record``."""
    return evaluate(
        args.env_id,
        None if args.policy == "random" else args.policy,
        **_evaluation_options(args, out, seed, schedule),
        progress=tick,
        run_info={"command": "record", "seed": seed, "episodes": args.episodes},
    )


def _evaluation_options(args: argparse.Namespace, out: Path, seed: int, schedule: Any) -> dict[str, Any]:
    """What ``rlcapture record``'s arguments ask of an evaluation, local or on Ray (one mapping)."""
    return {
        "seeds": range(seed, seed + args.episodes),
        "num_envs": args.num_envs,
        "out": out,
        "config": record_config(args, keep_seed=seed),
        "env_kwargs": parse_env_kwargs(getattr(args, "env_kwargs", None)),
        "imports": getattr(args, "imports", None) or (),
        "max_episode_steps": args.max_episode_steps,
        "deterministic": not args.stochastic,
        "overwrite": args.overwrite,
        "record": schedule,
        "envs_per_worker": args.envs_per_worker,
        "step_timeout": args.step_timeout,
        "on_error": args.on_error,
    }


def _record_on_ray(
    args: argparse.Namespace, out: Path, seed: int, schedule: Any, stdout: TextIO, stderr: TextIO
) -> tuple[int, list[float]]:
    """``--ray``: the same evaluation, its seeds run by actors over a Ray cluster, one manifest."""
    from .cluster import RayEvaluation

    longest = max(allocate_episodes(args.episodes, min(args.num_envs, args.episodes)))
    label = f"seed {seed}" if args.seeds else ""
    bar = RunProgress(args.episodes, args.num_envs, longest, stderr, enabled=not args.quiet, label=label)
    seen = [0, 0]  # env steps, episodes settled

    def tick(done: int, steps: int) -> None:
        seen[:] = [steps, done]
        bar.update(steps, done)

    run = RayEvaluation(
        args.env_id,
        None if args.policy == "random" else args.policy,
        **_evaluation_options(args, out, seed, schedule),
        address=args.ray,
        storage=args.ray_storage,
        scratch=args.ray_scratch,
        progress=tick,
    )
    try:
        result = run.run()
    except KeyboardInterrupt:
        result = run.result
    except BaseException:
        bar.__exit__(None, None, None)
        raise
    bar.close(*seen)
    label = args.env_id if not args.seeds else f"{args.env_id} seed {seed}"
    summary = summarize_run(out, args.success_threshold)
    print_run(summary, label, args.num_envs, result.elapsed, result.interrupted, stdout)
    print(
        f"  ray      {len(result.nodes)} nodes, {result.actors} actors, {result.tasks} tasks, "
        f"first task after {result.startup:.1f} s",
        file=stdout,
    )
    print(f"  storage  {result.describe_storage()}", file=stdout)
    for event in result.events:
        print(f"  event    {event}", file=stdout)
    _save_summary(
        args, out, seed, summary, result.elapsed, result.interrupted, stderr,
        ray={"nodes": len(result.nodes), "actors": result.actors, "tasks": result.tasks},
    )  # fmt: skip
    return (130 if result.interrupted else 0), summary.returns


def replay_command(args: argparse.Namespace, stdout: TextIO) -> int:
    """Run ``rlcapture replay``: 0 if the replay matches the manifest, 1 if not."""
    from .replay import replay

    result = replay(
        args.dir,
        args.env,
        args.episode,
        policy=args.policy,
        out=args.out,
        deterministic=False if args.stochastic else None,
        overwrite=args.overwrite,
    )
    head = f"replayed env {args.env} episode {args.episode}: return {result.ret:g}, length {result.length}"
    if result.matches:
        print(f"{head} (as recorded)", file=stdout)
    else:
        print(
            f"{head}; the manifest says return {result.recorded_return}, length "
            f"{result.recorded_length}: the replay went another way (a policy or env that "
            "is not deterministic?)",
            file=stdout,
        )
    print(f"  video    {result.video} ({result.frames} frames)", file=stdout)
    return 0 if result.matches else 1


def _report_uploads(summary: dict[str, Any], stdout: TextIO) -> None:
    """One line per tracker: what it took, or what it missed and why."""
    for spec, counts in summary.get("uploads", {}).items():
        if not counts["not_sent"]:
            print(f"  tracker  {spec}: {counts['sent']} uploads sent", file=stdout)
    for line in summary.get("not_uploaded", ()):
        print(f"  NOT SENT {line} (see not_uploaded in {MANIFEST})", file=stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlcapture`` command."""
    args = _parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _warning_lines(warnings.showwarning)
        warnings.simplefilter("always", KeptFilesWarning)
        return _main(args)


def _warning_lines(show: Callable[..., None]) -> Callable[..., None]:
    """``show``, except that what rlcapture warns the user of is one ``rlcapture: warning:`` line."""

    def show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, KeptFilesWarning):
            print(f"rlcapture: warning: {message}", file=sys.stderr)
        else:
            show(message, category, *args, **kwargs)

    return show_warning


def _main(args: argparse.Namespace) -> int:
    try:
        if args.command == "record":
            return record(args, sys.stdout, sys.stderr)
        if args.command == "replay":
            return replay_command(args, sys.stdout)
        if args.command == "plot":
            from .results.plot import plot_manifest

            first = plot_manifest(args.dir, path=args.output, x=args.x, window=args.window, formats=args.format)
            written = [first] + ([first.with_suffix(".svg")] if args.format == "both" else [])
            print(f"wrote {' and '.join(map(str, written))}", file=sys.stdout)
            return 0
        if args.command == "report":
            from .results.report import write_report

            page = write_report(args.runs, args.out, threshold=args.success_threshold, warn=sys.stderr)
            print(f"wrote {page}", file=sys.stdout)
            return 0
        if args.command == "bench":
            from .bench import bench

            return bench(args, sys.stdout, sys.stderr)
    except RLCaptureError as exc:
        message = " ".join(str(exc).split("\n"))  # one line, whatever the message holds
        print(f"rlcapture: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlcapture: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
