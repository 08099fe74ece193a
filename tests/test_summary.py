"""The end of ``rlcapture record``: one labelled CI, summary.json, and the progress bar."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rlcapture.cli import main
from rlcapture.results.progress import RunProgress
from rlcapture.results.stats import describe
from rlcapture.results.summary import ci_text, stats_dict


def test_one_labelled_interval_or_a_note() -> None:
    d = describe([[20.0, 22.0, 30.0, 25.0]])
    text = ci_text(d)
    assert text.startswith("return 24.25 ± ") and "(95% bootstrap CI " in text and "n=4)" in text
    assert f"{d.low:.2f} to {d.high:.2f}" in text
    one = ci_text(describe([[-30.06]]))
    assert "too few episodes for a confidence interval" in one and "to -30.06" not in one
    assert "too few" in ci_text(describe([[1.0, 2.0]]))
    j = stats_dict(describe([[1.0, 2.0]], threshold=1.5))
    assert j["ci_low"] is None and j["ci_high"] is None and j["success_rate"] == 0.5
    assert ci_text(describe([[]])) == "return no episodes"


def test_record_prints_one_ci_and_writes_summary_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "one"
    assert main(["record", "-n", "1", "-k", "1", "--record", "none", "--out", str(out), "-q"]) == 0
    stdout = capsys.readouterr().out
    assert "too few episodes for a confidence interval" in stdout and "CI" not in stdout
    data = json.loads((out / "summary.json").read_text())
    assert data["episodes"] == 1 and data["ci_low"] is None and data["videos"] == 0
    assert data["env_id"] == "CartPole-v1" and data["elapsed_s"] > 0 and "0" in data["per_seed"]

    seeds = tmp_path / "seeds"
    argv = ["record", "-n", "2", "-k", "3", "--seeds", "0,1", "--success-threshold", "15",
            "--out", str(seeds), "-q"]  # fmt: skip
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    data = json.loads((seeds / "summary.json").read_text())
    assert data["episodes"] == 6 and set(data["per_seed"]) == {"0", "1"}
    assert data["success_threshold"] == 15 and 0 <= data["success_rate"] <= 1
    assert data["ci_low"] <= data["mean"] <= data["ci_high"] and data["text"].split("return ")[1] in stdout
    for s in (0, 1):
        each = json.loads((seeds / f"seed-{s}" / "summary.json").read_text())
        assert each["seed"] == s and each["episodes"] == 3 and each["videos"] == 3
        assert each["frames"] == sum(json.loads(line)["frames"] for line in (seeds / f"seed-{s}" / "episodes.jsonl").open())


def test_progress_counts_steps_before_any_episode_ends() -> None:
    stream = io.StringIO()
    bar = RunProgress(4, 2, 2, stream)
    bar.update(100, 0)  # no episode has ended yet: the steps still move
    bar._bar.refresh()
    assert "100 steps, 0/4 episodes" in stream.getvalue() and "ETA ?" in stream.getvalue()
    bar.episode_ended(50)
    bar.update(150, 1)
    bar.close(400, 4)
    last = stream.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert "400 steps, 4/4 episodes" in last and "frames/s" in last and "100%" in last and "ETA" in last
    quiet = io.StringIO()
    with RunProgress(4, 2, 2, quiet, enabled=False) as off:
        off.update(10, 1)
    assert quiet.getvalue() == ""
