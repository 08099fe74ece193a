"""The PNG bar chart of ``rlcapture bench``: env-steps/s per N and variant, drawn with Pillow only.

Pillow is already a dependency, so the chart needs no plotting library (matplotlib is
the ``plot`` extra's); it is imported when a chart is drawn.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .variants import variant_base, variant_encoders

__all__ = ["draw_chart"]

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
            color = _COLORS.get(variant_base(r["variant"]), (100, 100, 100))
            if variant_encoders(r["variant"]) != "auto":  # a set count: a darker shade
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
