"""Statistics of returns (rlcapture.results.stats) and ``rlcapture record --seeds``."""

from __future__ import annotations

import argparse
import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from conftest import read_manifest

from rlcapture.cli import main
from rlcapture.cli.record_args import parse_seeds
from rlcapture.results.stats import bootstrap_ci, describe, iqm, success_rate


def test_iqm_matches_the_trimmed_mean() -> None:
    assert iqm([1, 2, 3, 4]) == 2.5
    assert iqm([0, 1, 2, 3, 4, 5, 6, 100]) == pytest.approx(np.mean([2, 3, 4, 5]))
    assert iqm([5.0]) == 5.0 and iqm([1, 3]) == 2.0
    assert math.isnan(iqm([]))
    rng = np.random.default_rng(1)
    x = rng.normal(size=101)
    s = np.sort(x)
    assert iqm(x) == pytest.approx(s[25:76].mean())


def test_success_rate() -> None:
    assert success_rate([1, 2, 3, 4], 3) == 0.5
    assert success_rate([1, 2], 0) == 1.0
    assert math.isnan(success_rate([1, 2], None)) and math.isnan(success_rate([], 1))


def test_bootstrap_ci_is_seeded_and_covers_the_mean() -> None:
    rng = np.random.default_rng(0)
    groups = [rng.normal(10, 2, size=30), rng.normal(12, 2, size=30)]
    a = bootstrap_ci(groups, seed=3)
    assert a == bootstrap_ci(groups, seed=3)
    assert a != bootstrap_ci(groups, seed=4)
    mean = np.concatenate(groups).mean()
    assert a[0] < mean < a[1]
    # Roughly the normal interval: 1.96 standard errors (stratified, so a bit narrower).
    se = np.concatenate(groups).std(ddof=1) / math.sqrt(60)
    assert 2.5 * se < a[1] - a[0] < 4.5 * se
    assert bootstrap_ci([[7.0]]) == (7.0, 7.0)
    assert bootstrap_ci([[3.0, 3.0, 3.0]]) == (3.0, 3.0)
    assert all(math.isnan(v) for v in bootstrap_ci([[]]))


def test_bootstrap_ci_coverage() -> None:
    rng = np.random.default_rng(5)
    hits = 0
    for k in range(200):
        x = rng.exponential(1.0, size=40)
        low, high = bootstrap_ci([x], resamples=500, seed=k)
        hits += low <= 1.0 <= high
    assert 0.85 <= hits / 200 <= 0.99


def test_describe() -> None:
    d = describe([[1, 2, 3], [4, 5, 6, 7]], threshold=4)
    assert d.n == 7 and d.mean == 4.0 and d.std == pytest.approx(np.std(np.arange(1, 8), ddof=1))
    assert d.success == pytest.approx(4 / 7) and d.iqm == pytest.approx(4.0)
    assert d.low <= 4.0 <= d.high
    assert "IQM" in str(d) and "success 57%" in str(d)
    assert "success" not in str(describe([[1, 2]]))
    assert str(describe([[]])) == "no episodes"


def test_parse_seeds() -> None:
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("7,") == [7]
    assert parse_seeds(" 5 , 9") == [5, 9]
    for bad in ("0", "x", "1,1", "-1,2", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_seeds(bad)


def test_record_seeds(tmp_path: Path, capsys) -> None:
    out = tmp_path / "multi"
    code = main(["record", "-n", "2", "-k", "3", "--seeds", "4,9", "--record", "every:2",
                 "--success-threshold", "15", "--out", str(out), "-q"])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["seed-4", "seed-9"]
    assert (out / "summary.json").is_file()  # across seeds
    per_seed = {}
    for s in (4, 9):
        lines = read_manifest(out / f"seed-{s}")
        assert len(lines) == 3
        assert {r["seed"] for r in lines if r["episode"] == 0} == {s, s + 1}
        per_seed[s] = [r["return"] for r in lines]
        assert f"seed {s}: recorded 3 episodes" in stdout
    assert "across 2 seeds (4, 9)" in stdout and "all       6 episodes" in stdout
    expected = describe(list(per_seed.values()), threshold=15)
    assert str(expected) in stdout
    # A seed's run is the plain run with --seed S.
    code = main(["record", "-n", "2", "-k", "3", "--seed", "9", "--record", "none", "--out", str(tmp_path / "one"), "-q"])
    assert code == 0
    assert sorted(r["return"] for r in read_manifest(tmp_path / "one")) == sorted(per_seed[9])


def test_record_seed_count_and_refusal(tmp_path: Path, capsys) -> None:
    out = tmp_path / "count"
    assert main(["record", "-n", "1", "-k", "1", "--seeds", "2", "--record", "none", "--out", str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["seed-0", "seed-1"]  # K = 1: runs 1 apart
    capsys.readouterr()
    # Without --overwrite an existing recording is refused.
    assert main(["record", "-n", "1", "-k", "1", "--seeds", "2", "--record", "none", "--out", str(out), "-q"]) == 2
    assert main(["record", "-n", "1", "-k", "1", "--seeds", "2", "--record", "none", "--out", str(out), "-q", "--overwrite"]) == 0


# -- issue 10: seeds --------------------------------------------------------------
def test_record_seed_plan_is_independent_of_the_number_of_envs(tmp_path: Path, capsys) -> None:
    """--seed S --episodes K: episode j has seed S + j, on 1, 4 or 16 envs alike."""
    runs = {}
    for n in (1, 4, 16):
        out = tmp_path / f"n{n}"
        code = main(["record", "-n", str(n), "-k", "24", "--seed", "50", "--record", "none",
                     "--envs-per-worker", "1" if n < 16 else "4", "--out", str(out), "-q"])  # fmt: skip
        assert code == 0
        lines = read_manifest(out)
        runs[n] = sorted((r["seed"], r["return"], r["length"]) for r in lines)
        assert [s for s, _, _ in runs[n]] == list(range(50, 74))
        assert sorted(r["seed_index"] for r in lines) == list(range(24))
    capsys.readouterr()
    assert runs[1] == runs[4] == runs[16]


def test_counted_seed_runs_share_no_episode(tmp_path: Path, capsys) -> None:
    out = tmp_path / "count"
    assert main(["record", "-n", "2", "-k", "3", "--seeds", "2", "--record", "none", "--out", str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["seed-0", "seed-3"]
    seeds = [r["seed"] for d in ("seed-0", "seed-3") for r in read_manifest(out / d)]
    assert sorted(seeds) == list(range(6))
    assert "note" not in capsys.readouterr().err
    # A list whose runs overlap is run as given, with a note.
    assert main(["record", "-n", "1", "-k", "3", "--seeds", "0,1", "--record", "none",
                 "--out", str(tmp_path / "list"), "-q"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "runs of seeds 0 and 1 share episodes" in err and len(err.strip().splitlines()) == 1


def test_unseeded_resets_stay_unseeded(tmp_path: Path) -> None:
    """Inside another runner too: the wrapper changes no trajectory (no reseeding)."""
    import gymnasium as gym

    import rlcapture

    make = partial(gym.make, "CartPole-v1", render_mode="rgb_array")
    with rlcapture.Recorder(tmp_path) as rec:
        ours = gym.vector.SyncVectorEnv([rlcapture.CaptureWrapper.factory(make, rec, i, record="none") for i in range(2)])
        ref = gym.vector.SyncVectorEnv([make] * 2)
        try:
            a, _ = ours.reset(seed=8)
            b, _ = ref.reset(seed=8)
            np.testing.assert_array_equal(a, b)
            actions = np.random.default_rng(1)
            ends = 0
            for _ in range(300):
                act = actions.integers(0, 2, 2)
                x, y = ours.step(act), ref.step(act)
                for p, q in zip(x[:4], y[:4]):
                    np.testing.assert_array_equal(p, q)
                ends += int((x[2] | x[3]).sum())
            assert ends >= 6
        finally:
            ours.close()
            ref.close()
    lines = read_manifest(tmp_path)
    assert {r["seed"] for r in lines if r["episode"] == 0} == {8, 9}
    later = [r for r in lines if r["episode"] > 0]
    assert later and all(r["seed"] is None and r["rng"]["bit_generator"] == "PCG64" for r in later)
