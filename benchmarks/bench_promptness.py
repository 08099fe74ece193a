"""How fast the engine answers where the tests used to time it (issue 23: no clocks in tests).

Wall-clock limits in tests fail under load on a shared 2-core CI machine, so
the tests assert what happens (the error, its class, what was kept) and
pytest-timeout guards against hangs; the times are measured here, each
against the limit the test used to assert:

- ``malformed-action``: ``step()`` with a malformed action is refused
  (ConfigError) before any worker is asked (was ``< 1 s``, test_vector.py);
- ``close-with-producer``: ``Recorder.close(timeout=0.5)`` while a producer
  never says goodbye (was ``< 10 s``, test_recorder.py);
- ``full-disk``: a CartPole run whose encoder hits a 20 kB file size limit,
  from the first step to the error and ``close()`` (was ``< 20 s``,
  test_crash_matrix.py).

    python benchmarks/bench_promptness.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import rlcapture  # noqa: E402
from rlcapture._backend.producer import FrameProducer  # noqa: E402

#: What the tests used to assert, in seconds.
LIMITS = {"malformed-action": 1.0, "close-with-producer": 10.0, "full-disk": 20.0}

FULL_DISK = """
import sys, time
import numpy as np
import psutil
import rlcapture

env = rlcapture.make_vec("CartPole-v1", 2, sys.argv[1])
psutil.Process(env.recorder.encoder_pid).rlimit(psutil.RLIMIT_FSIZE, (20_000, 20_000))
obs, _ = env.reset(seed=0)
t0 = time.perf_counter()
try:
    for i in range(100000):
        action = np.zeros(2, int) if i < 40 else (obs[:, 2] + obs[:, 3] > 0).astype(int)
        obs, *_ = env.step(action)
except rlcapture.RLCaptureError:
    pass
finally:
    env.close()
print(time.perf_counter() - t0)
"""


def malformed_action(tmp: Path) -> float:
    env = rlcapture.make_vec("CartPole-v1", 2, tmp / "out", record="none", step_timeout=10)
    try:
        env.reset(seed=0)
        worst = 0.0
        for bad in (0, np.int64(1), np.array(1), None, [0], np.zeros(3, int)):
            t0 = time.perf_counter()
            try:
                env.step(bad)
            except rlcapture.ConfigError:
                pass
            worst = max(worst, time.perf_counter() - t0)
        return worst
    finally:
        env.close()


def close_with_producer(tmp: Path) -> float:
    rec = rlcapture.Recorder(tmp / "out")
    producer = FrameProducer(rec.endpoint, [0])
    try:
        for step in range(3):
            producer.frame(0, 0, step, np.zeros((16, 16, 3), np.uint8))
        t0 = time.perf_counter()
        rec.close(timeout=0.5)
        return time.perf_counter() - t0
    finally:
        producer.close()


def full_disk(tmp: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return float(done.stdout.strip().splitlines()[-1])


CASES = {
    "malformed-action": malformed_action,
    "close-with-producer": close_with_producer,
    "full-disk": full_disk,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    figures = {}
    print(f"{'case':22s} {'median s':>9s} {'max s':>8s} {'was limit':>10s}")
    for name, case in CASES.items():
        times = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                times.append(case(Path(tmp)))
        figures[name] = {"median_s": statistics.median(times), "max_s": max(times), "times": times}
        print(f"{name:22s} {statistics.median(times):9.3f} {max(times):8.3f} {LIMITS[name]:10.1f}")
    if args.output:
        args.output.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
