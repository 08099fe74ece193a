"""``rlcapture plot DIR``: the return of every episode of a recording, drawn with Pillow.

Writes ``DIR/learning_curve.png``: one dot per finished episode (in manifest
order, or against the time it ended) and a moving average, with axes, ticks
and labels. No matplotlib needed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ._backend.episode import FINISHED
from ._backend.manifest import read_manifest
from .errors import ConfigError

__all__ = ["moving_average", "nice_ticks", "plot_manifest"]

PNG = "learning_curve.png"


def moving_average(values: Any, window: int) -> np.ndarray:
    """Trailing mean of the last ``window`` values (fewer at the start)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return x
    c = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


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


def _fmt(v: float) -> str:
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.3g}"


def _episode_times(lines: list[dict[str, Any]]) -> np.ndarray:
    """When each episode ended, in seconds from the first start (from ``time`` per env)."""
    clock: dict[int, float] = {}
    ends = []
    for r in lines:
        env = int(r.get("env", 0))
        clock[env] = clock.get(env, 0.0) + float(r.get("time") or 0.0)
        ends.append(clock[env])
    return np.asarray(ends)


def plot_manifest(
    out: str | os.PathLike[str],
    *,
    path: str | os.PathLike[str] | None = None,
    x: str = "episode",
    window: int | None = None,
    size: tuple[int, int] = (960, 540),
    title: str | None = None,
) -> Path:
    """Draw the returns of ``out/episodes.jsonl`` into a PNG (default ``out/learning_curve.png``).

    Args:
        x: "episode" (manifest order) or "time" (seconds, each env's episode
            times summed: the wall time at which the episode ended).
        window: Moving-average window; default about a tenth of the episodes.
    Returns:
        The PNG's path.
    Raises:
        ConfigError: No manifest, or no finished episode in it.
    """
    folder = Path(out)
    manifest = folder / "episodes.jsonl"
    if not manifest.is_file():
        raise ConfigError(f"no manifest at {str(manifest)!r}: is {str(folder)!r} a recording?")
    if x not in ("episode", "time"):
        raise ConfigError(f"x must be 'episode' or 'time', got {x!r}")
    lines = [r for r in read_manifest(manifest) if r.get("end") in FINISHED and r.get("return") is not None]
    if not lines:
        raise ConfigError(f"{str(manifest)!r} holds no finished episode to plot")
    returns = np.asarray([float(r["return"]) for r in lines])
    if x == "time":
        xs = _episode_times(lines)
        order = np.argsort(xs, kind="stable")
        xs, returns = xs[order], returns[order]
        xlabel = "time (s)"
    else:
        xs = np.arange(len(returns), dtype=np.float64)
        xlabel = "episode"
    window = window or max(1, round(len(returns) / 10))
    smooth = moving_average(returns, window)
    target = Path(path) if path is not None else folder / PNG
    _draw(xs, returns, smooth, window, xlabel, title or f"{folder.name}: return per episode", size, target)
    return target


def _draw(
    xs: np.ndarray,
    ys: np.ndarray,
    smooth: np.ndarray,
    window: int,
    xlabel: str,
    title: str,
    size: tuple[int, int],
    target: Path,
) -> None:
    width, height = size
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(10, height // 36))
    small = ImageFont.load_default(size=max(9, height // 42))
    left, right, top, bottom = int(width * 0.1), int(width * 0.97), int(height * 0.1), int(height * 0.85)

    x_ticks = nice_ticks(float(xs.min()), float(xs.max()))
    y_ticks = nice_ticks(float(ys.min()), float(ys.max()))
    x0, x1 = x_ticks[0], x_ticks[-1]
    y0, y1 = y_ticks[0], y_ticks[-1]

    def px(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - y0) / (y1 - y0) * (bottom - top)

    grid, axis, ink = (225, 225, 225), (40, 40, 40), (20, 20, 20)
    for t in y_ticks:
        y = py(t)
        draw.line([(left, y), (right, y)], fill=grid)
        draw.line([(left - 5, y), (left, y)], fill=axis, width=2)
        draw.text((left - 8, y), _fmt(t), fill=ink, font=small, anchor="rm")
    for t in x_ticks:
        x = px(t)
        draw.line([(x, top), (x, bottom)], fill=grid)
        draw.line([(x, bottom), (x, bottom + 5)], fill=axis, width=2)
        draw.text((x, bottom + 8), _fmt(t), fill=ink, font=small, anchor="mt")
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=axis, width=2)

    dot = max(2, height // 200)
    for xv, yv in zip(xs, ys):
        cx, cy = px(float(xv)), py(float(yv))
        draw.ellipse([cx - dot, cy - dot, cx + dot, cy + dot], fill=(120, 160, 220))
    points = [(px(float(a)), py(float(b))) for a, b in zip(xs, smooth)]
    if len(points) > 1:
        draw.line(points, fill=(215, 60, 40), width=max(2, height // 180), joint="curve")

    draw.text(((left + right) / 2, top / 2), title, fill=ink, font=font, anchor="mm")
    draw.text(((left + right) / 2, height - (height - bottom) / 3), xlabel, fill=ink, font=font, anchor="mm")
    label = Image.new("RGB", (int(draw.textlength("return", font=font)) + 8, font.size + 8), "white")
    ImageDraw.Draw(label).text((4, 2), "return", fill=ink, font=font)
    label = label.rotate(90, expand=True)
    img.paste(label, (max(0, left // 6), int((top + bottom) / 2 - label.height / 2)))
    # Legend, top right.
    lx, ly = right - int(width * 0.28), top + 8
    draw.rectangle([lx - 8, ly - 6, right - 6, ly + 2 * (font.size + 6) + 2], fill="white", outline=grid)
    draw.ellipse([lx, ly + font.size / 2 - dot, lx + 2 * dot, ly + font.size / 2 + dot], fill=(120, 160, 220))
    draw.text((lx + 20, ly), "episode return", fill=ink, font=small)
    ly2 = ly + font.size + 6
    draw.line([(lx, ly2 + font.size / 2), (lx + 14, ly2 + font.size / 2)], fill=(215, 60, 40), width=3)
    draw.text((lx + 20, ly2), f"moving average ({window})", fill=ink, font=small)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    img.save(tmp, format="PNG")
    os.replace(tmp, target)
