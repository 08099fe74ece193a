"""``rlcapture report RUN_DIR...``: a static HTML page of one or more recordings.

The page (``report.html`` and a ``report_files/`` folder beside it) opens from
the file system or any static server with no network: a small script and
style sheet shipped with the package, the learning curves as SVG drawn by
matplotlib, and the run's own MP4s and keyframes by relative path, so the page
works where it is written. It shows each run's summary (mean, the labelled
bootstrap CI, IQM, success rate; per seed), the learning curve, every episode
in a table to sort and filter, a player for every recorded video with its
keyframes, and, for several runs, a comparison on the reset seeds they share:
each seed's returns side by side and the runs' videos of it playing together.
A run is a recording's folder, a ``--seeds`` recording's ``seed-S/`` folders,
or the ``step-T/`` rounds a ``RecordCallback`` wrote during training (then
per round, and the curve against the training timestep).

Everything that comes from a recording (env ids, error messages, the "why" of
a keep rule) is data, never markup: it is embedded as JSON in a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` escaped
(so no ``</script>`` can end it early), and the script builds the page with
``textContent``, never ``innerHTML``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from .._backend.episode import FINISHED
from .._backend.manifest import MANIFEST, read_manifest
from .._backend.run_folder import REPORT, REPORT_ASSETS, RunFolder
from ..errors import ConfigError
from .stats import describe
from .summary import finished, load_summary, stats_dict

__all__ = ["REPORT", "embed_json", "write_report"]

ASSETS = REPORT_ASSETS
_STATIC = ("report.js", "report.css")


@dataclass
class _Part:
    """One manifest of a run: the run itself, one ``seed-S/`` folder, or one ``step-T/`` round."""

    seed: int | None
    folder: Path
    records: list[dict[str, Any]]
    timestep: int | None = None  # a training round's


@dataclass
class _Run:
    name: str
    folder: Path
    parts: list[_Part]
    env_id: str | None = None
    threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def embed_json(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` in it at all."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _url(path: Path, base: Path) -> str:
    """``path`` relative to the page's folder, as a URL path (every odd character quoted)."""
    rel = os.path.relpath(path, base)
    return "/".join(quote(part) for part in Path(rel).parts)


def _load_run(folder: Path, threshold: float | None) -> _Run:
    parts = [
        _Part(p.seed, p.folder, read_manifest(p.manifest), timestep=p.timestep)
        for p in RunFolder(folder).parts()
    ]
    if not parts:
        raise ConfigError(
            f"no manifest in {str(folder)!r}: give a recording's folder (holding {MANIFEST}, "
            "seed-S/ or a RecordCallback's step-T/)"
        )
    saved = load_summary(folder) or load_summary(parts[0].folder) or {}
    if threshold is None and isinstance(saved.get("success_threshold"), (int, float)):
        threshold = float(saved["success_threshold"])
    env_id = saved.get("env_id") if isinstance(saved.get("env_id"), str) else None
    return _Run(folder.resolve().name or str(folder), folder, parts, env_id, threshold)


def _unique_names(runs: list[_Run]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        base = run.name
        if base in seen:
            seen[base] += 1
            run.name = f"{base} ({seen[base]})"
        else:
            seen[base] = 1


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _episode(run_index: int, part: _Part, r: dict[str, Any], base: Path) -> dict[str, Any]:
    video = r.get("video")
    keyframes = []
    for k in r.get("keyframes") or ():
        if isinstance(k, str):
            step = k.rsplit("-step", 1)[-1].split(".")[0]
            keyframes.append(
                {"src": _url(part.folder / k, base), "step": int(step) if step.isdigit() else None}
            )
    kept = r.get("kept")
    return {
        "run": run_index,
        "seed": part.seed,
        "timestep": part.timestep,
        "env": r.get("env"),
        "episode": r.get("episode"),
        "reset_seed": r.get("seed"),
        "return": _number(r.get("return")),
        "length": _number(r.get("length")),
        "frames": _number(r.get("frames")),
        "end": str(r.get("end") or ""),
        "kept": kept if isinstance(kept, bool) else None,
        "why": str(r.get("why") or ""),
        "error": str(r.get("error") or ""),
        "video": _url(part.folder / video, base) if isinstance(video, str) and video else None,
        "keyframes": keyframes,
    }


def _curve(run: _Run, index: int, assets: Path, warn: TextIO | None) -> str | None:
    from .plot import draw_curves, rounds_series, series_of

    x = "steps"
    if any(p.timestep is not None for p in run.parts):  # training rounds: against the timestep
        x = "timestep"
        found = [rounds_series({p.timestep: p.records for p in run.parts if p.timestep is not None})]
    else:
        found = [
            series_of(p.records, "" if p.seed is None else f"seed {p.seed}", "steps")
            for p in run.parts
        ]
    series = [s for s in found if s is not None]
    if not series:
        return None
    try:
        (path,) = draw_curves(
            series,
            [assets / f"curve-{index}.svg"],
            x=x,
            title=run.env_id or run.name,
            size=(800, 400),
        )
    except ConfigError as exc:  # matplotlib missing: the page goes without a curve
        if warn is not None:
            print(f"rlcapture: {exc}; the report has no learning curve", file=warn)
        return None
    return f"{ASSETS}/{path.name}"


def _compare(episodes: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Each reset seed that every run played: the index of its first episode in each run."""
    first: list[dict[Any, int]] = [{} for _ in range(count)]
    for i, e in enumerate(episodes):
        seed = e["reset_seed"]
        if (
            isinstance(seed, int)
            and e["return"] is not None
            and e["end"] in FINISHED
        ):
            first[e["run"]].setdefault(seed, i)
    shared = set(first[0]).intersection(*first[1:])
    return [{"reset_seed": s, "episodes": [f[s] for f in first]} for s in sorted(shared)]


def write_report(
    runs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    *,
    threshold: float | None = None,
    warn: TextIO | None = None,
) -> Path:
    """Write ``out/report.html`` (and ``out/report_files/``) for the recordings ``runs``.

    Args:
        runs: Recording folders (a manifest), ``--seeds`` folders
            (``seed-S/``) or a ``RecordCallback``'s folder of rounds (``step-T/``).
        out: The page's folder; for one run it defaults to that run's folder.
        threshold: Success is return >= threshold; default: the one in ``summary.json``.
        warn: Where to say what the page goes without (no matplotlib).
    Returns:
        The page's path.
    Raises:
        ConfigError: No run, a folder without a manifest, or several runs and no ``out``.
    """
    if not runs:
        raise ConfigError("give at least one recording folder")
    if out is None and len(runs) > 1:
        raise ConfigError("several runs: say where the report goes with --out DIR")
    loaded = [_load_run(Path(r), threshold) for r in runs]
    _unique_names(loaded)
    base = Path(out) if out is not None else Path(runs[0])
    assets = RunFolder(base).report_assets
    try:
        assets.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the report into {str(base)!r}: {exc.strerror}") from None
    package = resources.files(__package__) / "report_assets"
    for name in _STATIC:
        with resources.as_file(package / name) as source:
            shutil.copyfile(source, assets / name)

    episodes: list[dict[str, Any]] = []
    run_data = []
    for index, run in enumerate(loaded):
        per_seed = []
        per_round = []
        groups = []
        for part in run.parts:
            returns = [float(r["return"]) for r in finished(part.records)]
            groups.append(returns)
            episodes.extend(_episode(index, part, r, base) for r in part.records)
            if part.seed is not None or part.timestep is not None:
                stats = stats_dict(describe([returns], threshold=run.threshold))
                if part.seed is not None:
                    per_seed.append({"seed": part.seed, **stats})
                else:
                    per_round.append({"timestep": part.timestep, **stats})
        run_data.append(
            {
                "name": run.name,
                "path": str(run.folder),
                "env_id": run.env_id,
                "summary": stats_dict(describe(groups, threshold=run.threshold)),
                "per_seed": per_seed,
                "per_round": per_round,
                "curve": _curve(run, index, assets, warn),
                "videos": sum(1 for p in run.parts for r in p.records if r.get("video")),
            }
        )
    data = {
        "runs": run_data,
        "episodes": episodes,
        "compare": _compare(episodes, len(loaded)) if len(loaded) > 1 else None,
    }
    page = RunFolder(base).report
    html = _PAGE.replace("@DATA@", embed_json(data))
    tmp = page.with_name(page.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, page)
    return page


_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>rlcapture report</title>
<link rel="stylesheet" href="{ASSETS}/report.css">
</head>
<body>
<main id="app"><noscript>This report is drawn by a script: allow scripts for this file.</noscript></main>
<script type="application/json" id="rlcapture-data">@DATA@</script>
<script src="{ASSETS}/report.js"></script>
</body>
</html>
"""
