"""``rlcapture plot``: a learning curve drawn with Pillow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlcapture.cli import main
from rlcapture.plot import moving_average, nice_ticks, plot_manifest


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


@pytest.mark.parametrize("x", ["episode", "time"])
def test_plot_writes_a_png(tmp_path: Path, capsys, x: str) -> None:
    fake_manifest(tmp_path)
    assert main(["plot", str(tmp_path), "--x", x]) == 0
    png = tmp_path / "learning_curve.png"
    assert f"wrote {png}" in capsys.readouterr().out
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (960, 540)
        arr = np.asarray(img.convert("RGB"))
    assert (arr < 100).all(axis=2).sum() > 2000  # axes, ticks and text are drawn
    red = (arr[..., 0] > 180) & (arr[..., 1] < 100)  # the moving average
    blue = (arr[..., 2] > 200) & (arr[..., 0] < 150)  # the episodes
    assert red.sum() > 500 and blue.sum() > 100
    # Drawn across the plot, not in a corner.
    cols = np.flatnonzero(red.any(axis=0))
    assert cols.max() - cols.min() > 600


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
