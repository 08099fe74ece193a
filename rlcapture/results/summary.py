"""What a recording amounts to: the summary printed at the end of a run and ``summary.json``.

One confidence interval, labelled with how it was made: the percentile
bootstrap of the mean, stratified per seed (:func:`rlcapture.results.stats.bootstrap_ci`).
The run used to print a t interval and a bootstrap interval on consecutive
lines, which disagreed (the t interval of 3 CartPole episodes went below
zero). Under ``MIN_CI_EPISODES`` episodes no interval is given: a bootstrap
of one episode is that episode ("-30.06 to -30.06"), which reads as certainty.

``summary.json`` sits beside the manifest so a report, a tracker or a script
reads the numbers without recomputing them; ``rlcapture report`` uses its
success threshold.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .._backend.episode import FINISHED
from .._backend.manifest import read_manifest
from .._backend.run_folder import SUMMARY, RunFolder
from .stats import MIN_CI_EPISODES, Description, describe

__all__ = [
    "RunSummary",
    "SUMMARY_JSON",
    "across_seeds",
    "ci_text",
    "finished",
    "load_summary",
    "print_run",
    "print_seeds",
    "save_json",
    "seeds_json",
    "stats_dict",
    "summarize_run",
    "write_json",
]

#: The file written beside each manifest (named by the run folder).
SUMMARY_JSON = SUMMARY
_LEVEL = 0.95


def finished(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records of episodes that ran to their end and have a return."""
    return [
        r for r in records if r.get("end") in FINISHED and isinstance(r.get("return"), (int, float))
    ]


def ci_text(d: Description, label: str = "return") -> str:
    """One line: ``return 23.40 ± 3.10 (95% bootstrap CI 20.50 to 26.80, n=20), IQM 23.10``."""
    return f"{label} {d}" if label else str(d)


def _num(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def stats_dict(d: Description) -> dict[str, Any]:
    """A :class:`Description` as JSON fields (nan as ``null``; no CI under ``MIN_CI_EPISODES``)."""
    enough = d.n >= MIN_CI_EPISODES
    return {
        "episodes": d.n,
        "mean": _num(d.mean),
        "std": _num(d.std),
        "ci_low": _num(d.low) if enough else None,
        "ci_high": _num(d.high) if enough else None,
        "ci": f"{_LEVEL:.0%} percentile bootstrap of the mean, stratified per seed"
        if enough
        else "too few episodes for a confidence interval",
        "iqm": _num(d.iqm),
        "success_rate": _num(d.success) if d.threshold is not None else None,
        "success_threshold": d.threshold,
        "text": ci_text(d),
    }


@dataclass
class RunSummary:
    """The counts and return statistics of one recording folder."""

    out: Path
    records: list[dict[str, Any]]
    returns: list[float]
    lengths: list[int]
    description: Description
    frames: int
    dropped: int
    videos: int
    images: int
    keyframes: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, **fields: Any) -> dict[str, Any]:
        """The ``summary.json`` object; ``fields`` (env id, seed, elapsed...) go first."""
        data: dict[str, Any] = dict(fields)
        data.update(stats_dict(self.description))
        data["episodes_in_manifest"] = len(self.records)
        data["length_mean"] = sum(self.lengths) / len(self.lengths) if self.lengths else None
        data["frames"] = self.frames
        data["dropped"] = self.dropped
        data["videos"] = self.videos
        data["keyframes"] = self.keyframes
        data["images"] = self.images
        data.update(self.extra)
        return data


def summarize_run(out: str | os.PathLike[str], threshold: float | None = None) -> RunSummary:
    """Read ``out``'s manifest (update lines folded) and summarize it; no manifest: nothing."""
    folder = Path(out)
    records = read_manifest(RunFolder(folder).manifest, missing_ok=True)
    done = finished(records)
    returns = [float(r["return"]) for r in done]
    return RunSummary(
        out=folder,
        records=records,
        returns=returns,
        lengths=[int(r["length"]) for r in done if r.get("length") is not None],
        description=describe([returns], threshold=threshold),
        frames=sum(int(r.get("frames") or 0) for r in records),
        dropped=sum(int(r.get("dropped") or 0) for r in records),
        videos=sum(1 for r in records if r.get("video")),
        images=sum(int(r.get("image_count") or 0) for r in records if r.get("images")),
        keyframes=sum(len(r.get("keyframes") or ()) for r in records),
    )


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write ``data`` as JSON atomically (a reader never sees half a file)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def save_json(path: str | os.PathLike[str], data: Mapping[str, Any], stderr: TextIO) -> None:
    """:func:`write_json`, saying in one line on ``stderr`` if it could not (the run stands)."""
    try:
        write_json(path, data)
    except OSError as exc:
        print(f"rlcapture: could not write {str(path)!r}: {exc.strerror or exc}", file=stderr)


def load_summary(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``folder/summary.json`` if there is a readable one."""
    try:
        data = json.loads(RunFolder(folder).summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def print_run(
    summary: RunSummary,
    label: str,
    num_envs: int,
    elapsed: float,
    interrupted: bool,
    stdout: TextIO,
) -> None:
    """The summary of one recording, as ``rlcapture record`` prints it."""
    out = summary.out
    head = "interrupted: kept" if interrupted else "recorded"
    n = len(summary.returns)
    print(f"{label}: {head} {n} episodes over {num_envs} envs in {elapsed:.1f} s", file=stdout)
    print(f"  {ci_text(summary.description, 'return  ')}", file=stdout)
    if summary.lengths:
        print(f"  length   {sum(summary.lengths) / len(summary.lengths):.1f} mean", file=stdout)
    print(
        f"  frames   {summary.frames} recorded, {summary.dropped} dropped, "
        f"{summary.frames / max(elapsed, 1e-9):.0f} frames/s",
        file=stdout,
    )
    judged = [r for r in summary.records if "kept" in r]
    if judged:
        kept = [r for r in judged if r["kept"]]
        print(f"  kept     {len(kept)} of {len(judged)} episodes' files:", file=stdout)
        for r in kept:
            ret = r.get("return")
            value = f"return {ret:g}" if isinstance(ret, (int, float)) else "no return"
            print(
                f"           env {r['env']} episode {r['episode']} ({value}): {r['why']}",
                file=stdout,
            )
    run = RunFolder(out)
    print(
        f"  output   {run.videos} ({summary.videos} videos), {run.manifest}, {run.summary}",
        file=stdout,
    )
    if summary.images:
        print(f"           {summary.images} PNG frames in {run.frames}", file=stdout)
    if summary.keyframes:
        print(f"           {summary.keyframes} PNG keyframes in {run.videos}", file=stdout)
    mosaics = run.mosaics()
    if mosaics:
        print(f"           overview {mosaics[-1]}", file=stdout)


def across_seeds(
    per_seed: Mapping[int, Sequence[float]], threshold: float | None
) -> tuple[Description, dict[int, Description]]:
    """All seeds' returns described together (bootstrap stratified per seed), and each seed's."""
    each = {seed: describe([list(v)], threshold=threshold) for seed, v in per_seed.items()}
    return describe([list(v) for v in per_seed.values()], threshold=threshold), each


def print_seeds(
    per_seed: Mapping[int, Sequence[float]], threshold: float | None, stdout: TextIO
) -> None:
    """The summary across the seeds of a ``--seeds`` recording."""
    overall, each = across_seeds(per_seed, threshold)
    print(f"across {len(per_seed)} seeds ({', '.join(map(str, per_seed))}):", file=stdout)
    for seed, d in each.items():
        print(f"  seed {seed:<4} {d.n} episodes: {d}", file=stdout)
    print(f"  all       {overall.n} episodes: {overall}", file=stdout)
    means = [d.mean for d in each.values() if d.n]
    if len(means) > 1:
        mean = sum(means) / len(means)
        spread = math.sqrt(sum((m - mean) ** 2 for m in means) / (len(means) - 1))
        print(
            f"  per-seed means {', '.join(f'{m:.2f}' for m in means)}: std {spread:.2f}",
            file=stdout,
        )


def seeds_json(
    per_seed: Mapping[int, Sequence[float]], threshold: float | None, **fields: Any
) -> dict[str, Any]:
    """The ``summary.json`` of a ``--seeds`` recording: all seeds together, then each."""
    overall, each = across_seeds(per_seed, threshold)
    data: dict[str, Any] = dict(fields)
    data.update(stats_dict(overall))
    data["per_seed"] = {str(seed): stats_dict(d) for seed, d in each.items()}
    return data
