"""The report of ``rlcapture bench``: medians per (N, variant), per-frame costs, the table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .measure import median
from .variants import EVERY_FRAME, variant_base, variant_encoders, variant_label

__all__ = ["format_table", "frame_ceiling", "summarize_trials"]


def frame_ceiling(
    cores: int, n: int, step_ms: float, render_ms: float, encode_ms: float,
    worker_step_ms: float | None = None,
) -> tuple[float, float]:  # fmt: skip
    """The most frames/s N envs can record on this machine, and the older, looser bound.

    Every recorded frame costs a step (the whole tree's CPU per env-step
    without rendering), a render and an encode, and the machine has
    ``cores`` cores: ``cores / (step + render + encode)``. And an env steps
    and renders in one process, so N envs cannot produce frames faster than
    ``N / (worker_step + render)``, where ``worker_step`` is the worker's own
    share of a step (default: all of it). That bound matters below N =
    cores: one env never gets two cores. The ceiling is the smaller.

    The second value is the ceiling as the bench reported it before
    2026-11-30, ``cores / (render + encode)``: it left out the step's CPU
    (about a tenth of a CartPole frame's) and promised one env every core.
    It is kept so that figures from then can be compared.
    """
    per_frame = step_ms + render_ms + encode_ms
    cpu = 1e3 * cores / per_frame
    own = step_ms if worker_step_ms is None else worker_step_ms
    serial = 1e3 * n / (own + render_ms) if own + render_ms > 0 else float("inf")
    return min(cpu, serial), 1e3 * cores / (render_ms + encode_ms)


def summarize_trials(
    trials: list[dict[str, Any]], variants: Sequence[str], ns: Sequence[int], cores: int,
    copy_ms: float | None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:  # fmt: skip
    """Medians per (N, variant), and per-frame costs and the ceiling per N."""
    rows: list[dict[str, Any]] = []
    costs: dict[str, dict[str, Any]] = {}
    for n in ns:
        med = _medians(trials, n, variants)
        cost = costs[str(n)] = _costs(med, n, variants, cores, copy_ms)
        rows.extend(_row(trials, n, v, m, med, cost, cores) for v, m in med.items())
    return rows, costs


#: The figures of a trial whose median over the repeats is reported.
_MEDIAN_KEYS = (
    "steps_per_s", "frames_per_s", "cpu_s", "main_cpu_s", "encoder_cpu_s",
    "encoder_cpu_before_close_s", "peak_pss_mb", "run_s", "close_s",
    "setup_s", "other_load_cores", "whole_s", "first_video_s",
    "frames_per_s_whole",
)  # fmt: skip


def _medians(
    trials: list[dict[str, Any]], n: int, variants: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each variant's medians over its repeats at N (variants that did not run left out)."""
    med: dict[str, dict[str, Any]] = {}
    for v in variants:
        rs = [t for t in trials if t["n"] == n and t["variant"] == v]
        if not rs:
            continue
        m = {key: median([t.get(key) for t in rs]) for key in _MEDIAN_KEYS}
        m["env_steps"] = rs[0]["env_steps"]
        m["frames"] = median([t["frames"] for t in rs])
        m["frames_rendered"] = median([t["frames_rendered"] for t in rs])
        m["repeats"] = len(rs)
        med[v] = m
    return med


def _costs(
    med: dict[str, dict[str, Any]], n: int, variants: Sequence[str], cores: int,
    copy_ms: float | None,
) -> dict[str, Any]:  # fmt: skip
    """The per-frame CPU costs at N (step, render, copy, encode) and the machine's ceiling."""
    none = med.get("none")
    render = med.get("render")
    step_ms = 1e3 * none["cpu_s"] / none["env_steps"] if none else None
    render_ms = None
    if none and render and render["frames_rendered"]:
        render_ms = max(0.0, 1e3 * (render["cpu_s"] - none["cpu_s"]) / render["frames_rendered"])
    encode_ms = encode_source = None
    # One encoder's figures first (k encoders on few cores also pay for
    # switching between them), then any variant that encoded every frame.
    every = next((v for v in variants if v.startswith("every:")), None)
    sources = ["all/e1", "all", every, *(v for v in variants if variant_base(v) in ("all", "every"))]
    for source in sources:
        m = med.get(source) if source else None
        if m and m["encoder_cpu_s"] is not None and m["frames"]:
            encode_ms = 1e3 * m["encoder_cpu_s"] / m["frames"]
            encode_source = source
            break
    ceiling = ceiling_cpu = None
    if render_ms is not None and encode_ms is not None and render_ms + encode_ms > 0:
        worker_step_ms = step_ms or 0.0
        if none and none["main_cpu_s"] is not None:  # the main process's share is not the env's
            other = none["main_cpu_s"] + (none["encoder_cpu_s"] or 0.0)
            worker_step_ms = max(0.0, 1e3 * (none["cpu_s"] - other) / none["env_steps"])
        ceiling, ceiling_cpu = frame_ceiling(
            cores, n, step_ms or 0.0, render_ms, encode_ms, worker_step_ms
        )
    backlog = None
    a = med.get("all")
    if a and a["encoder_cpu_s"] and a["encoder_cpu_before_close_s"] is not None:
        backlog = 1.0 - a["encoder_cpu_before_close_s"] / a["encoder_cpu_s"]
    return {
        "n": n,
        "step_ms": step_ms,
        "render_ms": render_ms,
        "copy_ms": copy_ms,
        "encode_ms": encode_ms,
        "encode_from": encode_source,
        "ceiling_frames_per_s": ceiling,
        "ceiling_before_2026_11_30_frames_per_s": ceiling_cpu,
        "encoder_share_of_work_left_at_close": backlog,
    }


def _row(
    trials: list[dict[str, Any]], n: int, v: str, m: dict[str, Any],
    med: dict[str, dict[str, Any]], cost: dict[str, Any], cores: int,
) -> dict[str, Any]:  # fmt: skip
    """Variant v's row at N: its medians and the figures derived from them and from ``cost``."""
    none, render = med.get("none"), med.get("render")
    render_ms, encode_ms = cost["render_ms"], cost["encode_ms"]
    ceiling = cost["ceiling_frames_per_s"]
    base = variant_base(v)
    row = {"n": n, "variant": v, "label": variant_label(v), **m}
    row["overhead_pct"] = 100.0 * (1.0 - m["steps_per_s"] / none["steps_per_s"]) if none else None
    row["cpu_ms_per_step"] = 1e3 * m["cpu_s"] / m["env_steps"] if m["cpu_s"] else None
    row["cpu_busy_pct"] = (
        100.0 * m["cpu_s"] / (m["run_s"] * cores) if m["cpu_s"] and m["run_s"] else None
    )
    row["recorded_fraction"] = m["frames"] / m["env_steps"] if m["env_steps"] else None
    row["ceiling_pct"] = (
        100.0 * m["frames_per_s"] / ceiling if ceiling and base in EVERY_FRAME else None
    )
    # Goal figures: an every-frame run's CPU per step against rendering
    # alone, and a sparse run's extra CPU against its lower bound (the
    # render and encode CPU of the frames it recorded).
    row["cpu_vs_render"] = (
        m["cpu_s"] / render["cpu_s"]
        if base in EVERY_FRAME and render and m["cpu_s"] and render["cpu_s"]
        else None
    )
    # The same ratio per repeat (the variants of one repeat ran next to
    # each other), then the median: steadier when the machine's speed drifts.
    row["cpu_vs_render_paired"] = (
        _paired_cpu_ratio(trials, n, v, "render") if row["cpu_vs_render"] is not None else None
    )
    row["extra_cpu_ms_per_step"] = row["lower_bound_ms_per_step"] = None
    row["extra_over_bound"] = row["extra_over_bound_paired"] = None
    if base == "every" and none and m["cpu_s"] and render_ms is not None and encode_ms:
        extra = 1e3 * (m["cpu_s"] - none["cpu_s"]) / m["env_steps"]
        bound = row["recorded_fraction"] * (render_ms + encode_ms)
        row["extra_cpu_ms_per_step"] = extra
        row["lower_bound_ms_per_step"] = bound
        row["extra_over_bound"] = extra / bound if bound > 0 else None
        row["extra_over_bound_paired"] = _paired_extra_ratio(trials, n, v, render_ms + encode_ms)
    row["encoders"] = variant_encoders(v) if base in ("all", "every") else None
    started = [t.get("encoders") for t in trials if t["n"] == n and t["variant"] == v]
    row["encoders_started"] = median([k for k in started if isinstance(k, int)])
    row["encode_ms"] = (
        1e3 * m["encoder_cpu_s"] / m["frames"]
        if base in ("all", "every") and m["encoder_cpu_s"] is not None and m["frames"]
        else None
    )
    return row


def _by_repeat(
    trials: list[dict[str, Any]], n: int, a: str, b: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Variant a's trials at N with variant b's of the same repeat (both with a CPU figure)."""
    by = {(t["variant"], t.get("repeat", 0)): t for t in trials if t["n"] == n}
    return [
        (t, other)
        for (variant, rep), t in by.items()
        if variant == a
        and (other := by.get((b, rep))) is not None
        and t["cpu_s"]
        and other["cpu_s"]
    ]


def _paired_cpu_ratio(trials: list[dict[str, Any]], n: int, a: str, b: str) -> float | None:
    """Median over repeats of variant a's CPU over variant b's in the same repeat."""
    values = [t["cpu_s"] / other["cpu_s"] for t, other in _by_repeat(trials, n, a, b)]
    return median(values) if values else None


def _paired_extra_ratio(
    trials: list[dict[str, Any]], n: int, sparse: str, frame_ms: float
) -> float | None:
    """Median over repeats of a sparse run's extra CPU over "none" of the same repeat, per bound.

    The extra is a small difference of two large CPU totals (1 frame in 20
    recorded); taking it inside each repeat, where the two ran next to each
    other, keeps the machine's drift between repeats out of it.
    """
    values = [
        (t["cpu_s"] - other["cpu_s"]) / (t["frames"] * frame_ms / 1e3)
        for t, other in _by_repeat(trials, n, sparse, "none")
        if t["frames"] * frame_ms > 0
    ]
    return median(values) if values else None


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
    lines.append(
        f"per-frame CPU, ms, and the ceiling = min({m['cores']} cores / (step + render + encode),"
        " N / (an env's own step + render)):"
    )
    lines.append(
        f"{'N':>3}  {'step':>6} {'render':>7} {'copy':>6} {'encode':>7} {'ceiling frames/s':>17}"
    )
    for c in result["costs"].values():
        lines.append(
            f"{c['n']:>3}  {_fmt(c['step_ms'], '.3f'):>6} {_fmt(c['render_ms'], '.3f'):>7} "
            f"{_fmt(c['copy_ms'], '.3f'):>6} {_fmt(c['encode_ms'], '.3f'):>7} "
            f"{_fmt(c['ceiling_frames_per_s'], '.0f'):>17}"
        )
    for row in result["results"]:
        if row.get("cpu_vs_render") is not None:
            lines.append(
                f"{row['n']:>3}  {row['label']}: CPU per step {row['cpu_vs_render']:.2f}x "
                f"rendering alone's (median of the per-repeat ratios: "
                f"{_fmt(row.get('cpu_vs_render_paired'), '.2f')}x)"
            )
        if row.get("extra_over_bound") is not None:
            lines.append(
                f"{row['n']:>3}  {row['label']}: extra CPU {row['extra_cpu_ms_per_step']:.3f} "
                f"ms/step = {row['extra_over_bound']:.2f}x the lower bound "
                f"{row['lower_bound_ms_per_step']:.3f} (recorded x (render + encode); "
                f"median of the per-repeat ratios: {_fmt(row.get('extra_over_bound_paired'), '.2f')}x)"
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
