"""``rlcapture plot``: a learning curve drawn with matplotlib (PNG and SVG, per seed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlcapture.cli import main
from rlcapture.results.plot import moving_average, nice_ticks, plot_manifest


def fake_manifest(out: Path, n: int = 40) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(out / "episodes.jsonl", "w") as f:
        for k in range(n):
            r = float(10 + k + rng.normal(0, 5))
            end = "closed" if k == n - 1 else "terminated"
            f.write(json.dumps({"env": k % 2, "episode": k // 2, "return": r, "length": 10, "time": 0.5 + k % 3, "end": end}) + "\n")


def test_moving_average_and_ticks() -> None:
    assert moving_average([1, 2, 3, 4], 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([], 3).tolist() == []
    assert nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    t = nice_ticks(-3.2, 41.7)
    assert t[0] <= -3.2 and t[-1] >= 41.7 and len(t) <= 8
    assert nice_ticks(5, 5)[0] <= 5 <= nice_ticks(5, 5)[-1]


def _curve_pixels(arr: np.ndarray) -> np.ndarray:
    """Where the first series' moving average (matplotlib's C0, #1f77b4) is drawn."""
    return (np.abs(arr.astype(int) - (31, 119, 180)).sum(axis=2) < 40)


@pytest.mark.parametrize("x", ["steps", "episode", "time"])
def test_plot_writes_a_png(tmp_path: Path, capsys, x: str) -> None:
    fake_manifest(tmp_path)
    assert main(["plot", str(tmp_path), "--x", x]) == 0
    png = tmp_path / "learning_curve.png"
    assert f"wrote {png}" in capsys.readouterr().out
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (960, 540)
        assert "matplotlib" in img.info.get("Software", "").lower()  # drawn by matplotlib
        arr = np.asarray(img.convert("RGB"))
    assert (arr < 100).all(axis=2).sum() > 2000  # axes, ticks and text are drawn
    line = _curve_pixels(arr)
    assert line.sum() > 500
    # Drawn across the plot, not in a corner.
    cols = np.flatnonzero(line.any(axis=0))
    assert cols.max() - cols.min() > 500


def test_plot_svg_both_and_seeds(tmp_path: Path, capsys) -> None:
    for seed in (0, 1):
        fake_manifest(tmp_path / "run" / f"seed-{seed}", n=30)
    svg = tmp_path / "curve.svg"
    assert main(["plot", str(tmp_path / "run"), "--output", str(svg)]) == 0
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "Matplotlib" in text
    for label in ("seed 0: episodes", "seed 1: mean of last 5", "env steps", "episode return"):
        assert label in text  # legend per seed, labelled axes
    assert main(["plot", str(tmp_path / "run"), "--format", "both"]) == 0
    assert "learning_curve.png and" in capsys.readouterr().out
    assert (tmp_path / "run" / "learning_curve.png").is_file() and (tmp_path / "run" / "learning_curve.svg").is_file()


def test_plot_without_matplotlib_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    fake_manifest(tmp_path)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert 'pip install "rlcapture[plot]"' in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "learning_curve.png").exists()


def test_plot_options_and_errors(tmp_path: Path, capsys) -> None:
    fake_manifest(tmp_path / "run", n=1 + 1)
    png = plot_manifest(tmp_path / "run", path=tmp_path / "x.png", size=(400, 300), window=5)
    with Image.open(png) as img:
        assert img.size == (400, 300)
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "no manifest" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "episodes.jsonl").write_text("")
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "no finished episode" in capsys.readouterr().err
