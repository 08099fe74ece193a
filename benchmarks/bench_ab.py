"""Two checkouts of rlcapture, side by side: ``rlcapture bench`` from each, alternating.

A refactor must not slow recording down, and on a shared machine a figure is
only worth something next to a reference taken at the same moment. This runs
``rlcapture bench`` once from checkout A, once from checkout B, and again, for
``--rounds`` rounds (A B A B ...), each run with ``--repeats 1`` and its own
PYTHONPATH, then reports per (N, variant) the median frames/s (steps/s for the
variants that record nothing), the median CPU seconds of the whole process tree
per env-step, and B's ratio to A.

    python benchmarks/bench_ab.py --a /path/to/old --b . -- CartPole-v1 -n 4 16 --variants none,all
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median
from typing import Any


def _run(checkout: Path, bench_args: list[str], out: Path) -> list[dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=str(checkout.resolve()))
    cmd = [sys.executable, "-m", "rlcapture.cli", "bench", *bench_args, "--repeats", "1"]
    cmd += ["--json", str(out), "--png", str(out.with_suffix(".png")), "--quiet"]
    subprocess.run(cmd, env=env, check=True, cwd=out.parent, stdout=subprocess.DEVNULL, timeout=3600)
    return json.loads(out.read_text())["results"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, type=Path, help="reference checkout (its root)")
    parser.add_argument("--b", required=True, type=Path, help="checkout under test (its root)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the medians here")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="after --: rlcapture bench's arguments")
    args = parser.parse_args(argv)
    bench_args = [a for a in args.bench_args if a != "--"]
    rows: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="rlcapture-ab-") as tmp:
        for r in range(args.rounds):
            for name, checkout in (("A", args.a), ("B", args.b)):
                out = Path(tmp) / f"{name}{r}.json"
                for row in _run(checkout, bench_args, out):
                    rows.setdefault((name, row["n"], row["variant"]), []).append(row)
                print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr, flush=True)
    table = []
    for name, n, variant in sorted(rows):
        if name != "A" or ("B", n, variant) not in rows:
            continue

        def med(which: str, key: str, _n: int = n, _v: str = variant) -> float:
            values = [run[key] for run in rows[(which, _n, _v)]]
            return float(median(values))

        def cpu(which: str, _n: int = n, _v: str = variant) -> float:
            values = [run["cpu_s"] / max(1, run["env_steps"]) * 1e3 for run in rows[(which, _n, _v)]]
            return float(median(values))

        rate = "frames_per_s" if med("A", "frames_per_s") > 0 else "steps_per_s"
        a, b = med("A", rate), med("B", rate)
        table.append(
            {
                "n": n, "variant": variant, "rate": rate, "a": a, "b": b, "ratio": b / a if a else None,
                "cpu_ms_per_step_a": cpu("A"), "cpu_ms_per_step_b": cpu("B"),
                "peak_pss_mb_a": med("A", "peak_pss_mb"), "peak_pss_mb_b": med("B", "peak_pss_mb"),
                "runs": len(rows[("A", n, variant)]),
            }
        )  # fmt: skip
    print(f"{'N':>3} {'variant':<8} {'rate':<13} {'A':>9} {'B':>9} {'B/A':>6} {'CPU ms/step A':>14} {'B':>7} {'peak PSS MB A':>14} {'B':>6}")
    for t in table:
        print(
            f"{t['n']:>3} {t['variant']:<8} {t['rate']:<13} {t['a']:>9.0f} {t['b']:>9.0f} "
            f"{t['ratio']:>6.3f} {t['cpu_ms_per_step_a']:>14.3f} {t['cpu_ms_per_step_b']:>7.3f} "
            f"{t['peak_pss_mb_a']:>14.0f} {t['peak_pss_mb_b']:>6.0f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"a": str(args.a), "b": str(args.b), "rows": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
