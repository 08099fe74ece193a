"""Where the memory of a recording goes: PSS per process and per kind of mapping.

Runs ``CaptureVectorEnv`` over N CartPole-v1 envs recording every frame (a
random policy) for ``--steps`` vector steps; near the end, with every ring in
use, it reads ``/proc/PID/smaps`` of the main process, each worker and each
encoder and sums PSS by mapping: the rings (``memfd:`` mappings), the
shared observation arrays, Python's and the libraries' heap (``[heap]`` and
anonymous), and the code and data of shared libraries (by library:
``libavcodec``, ``cv2``, ``numpy``, ``pygame``/SDL, ...). Prints a table per
process kind (medians over workers) and the total.

    python benchmarks/bench_memory.py [--num-envs 16] [--steps 300] [--slots 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from rlcapture.bench.measure import headless, machine_info  # noqa: E402

_LIBS = [
    ("memfd rings", re.compile(r"memfd:")),
    ("shared arrays", re.compile(r"/(pym-|mp-|multiprocess)|\(deleted\)")),
    ("FFmpeg (av)", re.compile(r"lib(av|sw|x264|x265|vpx|aom|dav1d|SvtAv1|postproc|openh264)", re.I)),
    ("OpenCV", re.compile(r"cv2|opencv|libQt|libgfortran|libopenblas.*cv2", re.I)),
    ("numpy/BLAS", re.compile(r"numpy|openblas|scipy_openblas", re.I)),
    ("pygame/SDL", re.compile(r"pygame|SDL|freetype|png16|jpeg|tiff|webp", re.I)),
    ("torch", re.compile(r"torch", re.I)),
    ("python + stdlib", re.compile(r"python3|\.cpython-|lib-dynload|libpython", re.I)),
    ("heap + anonymous", re.compile(r"^$|\[heap\]|\[anon")),
    ("stack/vdso", re.compile(r"\[(stack|vdso|vvar|vsyscall)")),
]


def smaps(pid: int) -> dict[str, int]:
    """PSS in kB by kind of mapping."""
    out: dict[str, int] = collections.Counter()
    name = ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = " ".join(parts[5:]) if len(parts) > 5 else ""
            elif parts[0] == "Pss:":
                kb = int(parts[1])
                for kind, rx in _LIBS:
                    if rx.search(name):
                        out[kind] += kb
                        break
                else:
                    out["other libraries/files"] += kb
    return dict(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--slots", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    headless()
    import numpy as np
    import psutil

    import rlcapture

    opts = {} if args.slots is None else {"slots": args.slots}
    folder = tempfile.mkdtemp(prefix="bench-memory-")
    envs = rlcapture.make_vec("CartPole-v1", args.num_envs, Path(folder) / "out", **opts)
    rng = np.random.default_rng(0)
    samples: list[dict[str, dict[str, int]]] = []
    try:
        envs.reset(seed=0)
        me = psutil.Process()
        encoders = set(envs.recorder.encoder_pids)
        for step in range(args.steps):
            envs.step(rng.integers(0, 2, args.num_envs))
            if step >= args.steps - 40 and step % 10 == 0:
                snap: dict[str, dict[str, int]] = {"main": smaps(me.pid)}
                for child in me.children(recursive=True):
                    kind = "encoder" if child.pid in encoders else "worker"
                    try:
                        snap[f"{kind}:{child.pid}"] = smaps(child.pid)
                    except OSError:
                        pass
                samples.append(snap)
    finally:
        envs.close()
    # the sample with the largest total
    best = max(samples, key=lambda s: sum(sum(v.values()) for v in s.values()))
    kinds = sorted({k for proc in best.values() for k in proc})
    groups: dict[str, list[dict[str, int]]] = collections.defaultdict(list)
    for proc, table in best.items():
        groups[proc.split(":")[0]].append(table)
    total = sum(sum(v.values()) for v in best.values()) / 1024
    print(f"N={args.num_envs}: PSS {total:.0f} MB in all; per process kind (MB; workers: median of {len(groups['worker'])})")
    head = f"{'mapping':24s}" + "".join(f"{g:>10s}" for g in ("main", "worker", "encoder")) + f"{'all':>10s}"
    print(head)
    rows = {}
    for k in kinds:
        vals = {}
        for g in ("main", "worker", "encoder"):
            xs = [t.get(k, 0) / 1024 for t in groups[g]]
            vals[g] = statistics.median(xs) if xs else 0.0
        allv = sum(t.get(k, 0) for ts in groups.values() for t in ts) / 1024
        rows[k] = {**vals, "all": allv}
        print(f"{k:24s}" + "".join(f"{vals[g]:10.1f}" for g in ("main", "worker", "encoder")) + f"{allv:10.1f}")
    sums = {g: sum(sum(t.values()) for t in groups[g]) / 1024 for g in groups}
    print(f"{'total':24s}" + "".join(f"{sums.get(g, 0) / max(1, len(groups[g])):10.1f}" for g in ("main", "worker", "encoder")) + f"{total:10.1f}")
    print(f"processes: main 1, workers {len(groups['worker'])}, encoders {len(groups['encoder'])}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_info(), "args": {"num_envs": args.num_envs, "steps": args.steps, "slots": args.slots}, "rows": rows, "total_mb": total, "per_kind_mb": sums}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
