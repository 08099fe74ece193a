"""``rlcapture plot DIR``: a learning curve of a recording, drawn with matplotlib.

Writes ``DIR/learning_curve.png`` (or ``.svg``, or both): the return of every
finished episode against env steps (the cumulative lengths of the episodes
ended so far, as SB3's ``Monitor`` counts timesteps), the episode index or
the wall time, one series per seed (a ``--seeds`` recording's ``seed-S/``
folders), each with a trailing moving average. The rounds of
:class:`~rlcapture.sb3.RecordCallback` (``step-T/`` folders) are drawn against
the training timestep T instead, with each round's mean: the curve of a
training. matplotlib is what users' own learning-curve code uses, and it gives SVG and real text; it is an extra
(``rlcapture[plot]``), imported only when a plot is drawn, through the Agg
canvas of a ``Figure`` (no pyplot, no global backend switch).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._backend.episode import FINISHED
from .._backend.manifest import MANIFEST, read_manifest
from .._backend.run_folder import RunFolder
from ..errors import ConfigError

__all__ = [
    "AXES",
    "Series",
    "draw_curves",
    "load_series",
    "moving_average",
    "nice_ticks",
    "plot_manifest",
    "rounds_series",
]

#: The x axes a curve can be drawn against.
AXES = ("steps", "episode", "time")
_XLABEL = {
    "steps": "env steps",
    "episode": "episode",
    "time": "wall time (s)",
    "timestep": "training timestep",
}
INSTALL = 'matplotlib is not installed: pip install "rlcapture[plot]"'


def moving_average(values: Any, window: int) -> np.ndarray:
    """Trailing mean of the last ``window`` values (fewer at the start)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return x
    c = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def default_window(n: int) -> int:
    """About a tenth of the episodes (5 at least, 100 at most): smooth, yet following the trend."""
    return max(1, min(n, 5), min(100, round(n / 10)))


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """About ``count`` round tick values (1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    t = first
    while t <= high + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < high:
        ticks.append(round(t, 10))
    return ticks


@dataclass(frozen=True)
class Series:
    """One curve: a label (the seed, the run) and its episodes' x values and returns."""

    label: str
    xs: np.ndarray
    returns: np.ndarray


def _episode_times(lines: list[dict[str, Any]]) -> np.ndarray:
    """When each episode ended, in seconds from the first start (from ``time`` per env)."""
    clock: dict[int, float] = {}
    ends = []
    for r in lines:
        env = int(r.get("env", 0))
        clock[env] = clock.get(env, 0.0) + float(r.get("time") or 0.0)
        ends.append(clock[env])
    return np.asarray(ends, dtype=np.float64)


def series_of(records: Sequence[dict[str, Any]], label: str, x: str) -> Series | None:
    """The finished episodes of one manifest as a series against ``x`` (None if none)."""
    lines = [
        r for r in records if r.get("end") in FINISHED and isinstance(r.get("return"), (int, float))
    ]
    if not lines:
        return None
    returns = np.asarray([float(r["return"]) for r in lines])
    if x == "time":
        xs = _episode_times(lines)
        order = np.argsort(xs, kind="stable")
        xs, returns = xs[order], returns[order]
    elif x == "steps":
        xs = np.cumsum([float(r.get("length") or 0) for r in lines])
    else:
        xs = np.arange(len(returns), dtype=np.float64)
    return Series(label, xs, returns)


def rounds_series(rounds: dict[int, Sequence[dict[str, Any]]], label: str = "") -> Series | None:
    """The finished episodes of training rounds against their timestep (None if none).

    ``rounds`` maps each round's training timestep to its manifest lines.
    """
    xs: list[float] = []
    returns: list[float] = []
    for timestep, records in sorted(rounds.items()):
        for r in records:
            if r.get("end") in FINISHED and isinstance(r.get("return"), (int, float)):
                xs.append(float(timestep))
                returns.append(float(r["return"]))
    if not returns:
        return None
    return Series(label, np.asarray(xs), np.asarray(returns))


def _round_means(xs: np.ndarray, returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct x (a round) and the mean return of its episodes."""
    at, index = np.unique(xs, return_inverse=True)
    return at, np.bincount(index, weights=returns) / np.bincount(index)


def load_series(out: str | os.PathLike[str], x: str = "steps") -> list[Series]:
    """The series of a recording folder: itself, or each ``seed-S/`` of a ``--seeds`` recording.

    A folder of training rounds (``step-T/``) gives one series against the
    timestep, whatever ``x`` says.

    Raises:
        ConfigError: No manifest, or no finished episode in any.
    """
    if x not in AXES:
        raise ConfigError(f"x must be one of {', '.join(AXES)}; got {x!r}")
    folder = Path(out)
    parts = RunFolder(folder).parts()
    if not parts:
        raise ConfigError(
            f"no manifest at {str(RunFolder(folder).manifest)!r}: is {str(folder)!r} a recording "
            f"({MANIFEST}, seed-S/ or a RecordCallback's step-T/ folders)?"
        )
    if parts[0].timestep is not None:
        series = rounds_series({p.timestep: read_manifest(p.manifest) for p in parts})
        if series is None:
            raise ConfigError(f"the rounds in {str(folder)!r} hold no finished episode to plot")
        return [series]
    found = [
        series_of(read_manifest(p.manifest), "" if p.seed is None else f"seed {p.seed}", x)
        for p in parts
    ]
    series = [s for s in found if s is not None]
    if not series:
        where = parts[0].manifest if parts[0].seed is None else folder
        raise ConfigError(f"{str(where)!r} holds no finished episode to plot")
    return series


def _targets(path: Path, formats: str | None) -> list[Path]:
    suffix = path.suffix.lower()
    if formats is None:
        formats = suffix[1:] if suffix in (".png", ".svg") else "png"
    if formats not in ("png", "svg", "both"):
        raise ConfigError(f"format must be png, svg or both; got {formats!r}")
    stem = path.with_suffix("") if suffix in (".png", ".svg") else path
    wanted = ("png", "svg") if formats == "both" else (formats,)
    return [stem.with_name(f"{stem.name}.{f}") for f in wanted]


def draw_curves(
    series: Sequence[Series],
    targets: Sequence[str | os.PathLike[str]],
    *,
    x: str = "steps",
    window: int | None = None,
    title: str = "",
    size: tuple[int, int] = (960, 540),
) -> list[Path]:
    """Draw ``series`` into each target (PNG or SVG by its suffix): dots and a moving average.

    The legend sits right of the axes, off the data. Returns the paths written.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(INSTALL) from None
    dpi = 100
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(series))]
    for s, color in zip(series, colors):
        name = f"{s.label}: " if s.label else ""
        ax.scatter(
            s.xs, s.returns, s=16, alpha=0.5, color=color, linewidths=0, label=f"{name}episodes"
        )
        if x == "timestep":  # training rounds: the mean of each
            at, means = _round_means(s.xs, s.returns)
            ax.plot(at, means, color=color, linewidth=2, marker="o", label=f"{name}mean of the round")
            continue
        w = window or default_window(len(s.returns))
        ax.plot(
            s.xs,
            moving_average(s.returns, w),
            color=color,
            linewidth=2,
            label=f"{name}mean of last {w}",
        )
    ax.set_xlabel(_XLABEL.get(x, x))
    ax.set_ylabel("episode return")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    fig.legend(loc="outside right upper", fontsize="small", frameon=False)
    written = []
    for target in map(Path, targets):
        target.parent.mkdir(parents=True, exist_ok=True)
        fmt = target.suffix.lower().lstrip(".") or "png"
        tmp = target.with_name(target.name + ".tmp")
        fig.savefig(tmp, format=fmt, dpi=dpi, metadata={"Title": title} if fmt == "svg" else None)
        os.replace(tmp, target)
        written.append(target)
    return written


def _recording_axis(out: str | os.PathLike[str], x: str) -> str:
    """The axis a folder is drawn against: ``x``, or "timestep" for training rounds."""
    parts = RunFolder(out).parts()
    return "timestep" if parts and parts[0].timestep is not None else x


def plot_manifest(
    out: str | os.PathLike[str],
    *,
    path: str | os.PathLike[str] | None = None,
    x: str = "steps",
    window: int | None = None,
    size: tuple[int, int] = (960, 540),
    title: str | None = None,
    formats: str | None = None,
) -> Path:
    """Draw the returns of a recording (default into ``out/learning_curve.png``).

    Args:
        out: A recording folder: its manifest, a ``--seeds``
            recording's ``seed-S/`` folders (one series per seed), or a
            ``RecordCallback``'s ``step-T/`` rounds (against the timestep).
        path: Where to write; ``.png`` or ``.svg`` picks the format.
        x: "steps" (cumulative episode lengths), "episode" (manifest order)
            or "time" (seconds, each env's episode times summed: when the
            episode ended).
        window: Moving-average window; default about a tenth of the episodes (5 to 100).
        size: Pixels of the PNG (at 100 dpi).
        formats: "png", "svg" or "both" (default: by ``path``'s suffix, else PNG).
    Returns:
        The first file written (the PNG when both are).
    Raises:
        ConfigError: No manifest, no finished episode, or matplotlib missing.
    """
    folder = Path(out)
    series = load_series(folder, x)
    x = _recording_axis(folder, x)
    target = Path(path) if path is not None else RunFolder(folder).curve(".png")
    targets = _targets(target, formats)
    name = folder.resolve().name or str(folder)
    written = draw_curves(
        series, targets, x=x, window=window, size=size, title=title or f"{name}: return per episode"
    )
    return written[0]
