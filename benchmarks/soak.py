#!/usr/bin/env python
"""Soak test: long runs that must not leak memory, descriptors or shared memory.

Three parts, one after the other, each writing into a temporary folder that is
deleted afterwards (``--keep`` keeps them):

1. ``vector``: CartPole-v1 (600x400 frames), ``make_vec`` with N=4, random
   actions, every episode recorded (~22 steps each, so thousands of videos),
   until 100,000 frames were recorded. Every 10,000 frames a row: throughput
   over the window, the peak PSS of the whole process tree (main + workers +
   encoder, sampled every 0.5 s), open file descriptors of each process,
   entries in ``/dev/shm``, and the CPU that other work on the machine took.
   At the end: the manifest accounts for every frame (sum of ``frames`` =
   frames offered, ``dropped`` all 0) and a sample of videos decode to their
   manifest counts.
2. ``mixed``: ``BatchCapture`` with synthetic 128x128 frames, 4 envs: two end
   an episode at every step (1-step episodes: a video of 2 frames each, so
   thousands of files opened and closed), two run 10,000-step episodes. Same
   rows and checks (every finished episode has ``frames == length + 1``).
3. ``drop``: ``BatchCapture`` in drop mode with 2 ring slots submitting
   1024x1024 noise frames as fast as it can (each "rendered" by a copy into
   the batch array), so the encoder (~30 frames/s at that size) is far slower
   than the producer. Checks that per episode
   ``frames + dropped`` = frames offered, i.e. ``dropped`` = offered - encoded,
   and that videos decode to ``frames``.

4. ``keep`` (only when asked: ``--parts keep``): CartPole-v1 N=4 with
   ``keep="worst:3,best:3"``, keyframes, a PNG every 5th step and the mosaic,
   for half the vector part's frames. Rows add the bytes and files on disk
   (without the growing mosaic): flat, since discarded episodes' files are
   deleted as they are judged. Checks that the videos left are exactly the
   kept episodes', the 3 worst and 3 best returns.

Output: a table per part on stdout and everything in
``benchmarks/results/soak.json``.

    python benchmarks/soak.py            # full run (~8-10 min on 2 cores)
    python benchmarks/soak.py --quick    # ~1 min: 10,000 frames, shorter parts
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import rlcapture  # noqa: E402
from rlcapture._backend.manifest import read_manifest  # noqa: E402
from rlcapture.bench import measure  # noqa: E402

measure.headless()  # pygame (CartPole's renderer) needs no display; inherited by workers

SHM = Path("/dev/shm")


# -- measuring the process tree ------------------------------------------------------------
def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def shm_entries() -> list[str]:
    return sorted(os.listdir(SHM)) if SHM.is_dir() else []


class Windows:
    """Rows of measurements, one per window of ``every`` frames."""

    def __init__(self, name: str, every: int, roles: dict[str, int]) -> None:
        self.name = name
        self.every = every
        self.roles = roles  # role -> pid, for descriptor counts
        self.rows: list[dict[str, Any]] = []
        self.t0 = self.t_win = time.perf_counter()
        self.frames_win = 0
        self.next_row = every
        self.next_sample = 0.0
        self.peak = 0
        self.busy_win = measure.machine_busy_s()
        self.cpu_win = measure.tree_cpu()
        self.shm_start = shm_entries()
        print(f"\n== {name} ==", flush=True)
        print(
            f"{'frames':>8} {'s':>6} {'f/s':>6} {'peak PSS MB':>11} {'fds ' + '/'.join(roles):>30} "
            f"{'/dev/shm':>8} {'other cores':>11}",
            flush=True,
        )

    def tick(self, frames: int, extra: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        if now >= self.next_sample:
            self.peak = max(self.peak, measure.tree_pss()[0])
            self.next_sample = time.perf_counter() + 0.5
        if frames >= self.next_row:
            self.row(frames, extra)
            self.next_row = (frames // self.every + 1) * self.every

    def row(self, frames: int, extra: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        self.peak = max(self.peak, measure.tree_pss()[0])
        busy, cpu = measure.machine_busy_s(), measure.tree_cpu()
        span = now - self.t_win
        row = {
            "frames": frames,
            "elapsed_s": round(now - self.t0, 2),
            "window_fps": round((frames - self.frames_win) / span, 1) if span > 0 else None,
            "peak_pss_mb": round(self.peak / measure.MB, 1),
            "fds": {role: fd_count(pid) for role, pid in self.roles.items()},
            "shm_entries": len(shm_entries()),
            # Cores' worth of CPU that processes outside this tree took meanwhile.
            "other_cores": round(max(0.0, (busy - self.busy_win) - (cpu - self.cpu_win)) / span, 2)
            if span > 0
            else None,
        }
        if extra:
            row.update(extra)
        self.rows.append(row)
        fds = "/".join(str(v) for v in row["fds"].values())
        print(
            f"{frames:>8} {row['elapsed_s']:>6.0f} {row['window_fps']:>6.0f} "
            f"{row['peak_pss_mb']:>11.1f} {fds:>30} {row['shm_entries']:>8} "
            f"{row['other_cores']:>11.2f}",
            flush=True,
        )
        self.t_win, self.frames_win, self.peak = now, frames, 0
        self.busy_win, self.cpu_win = busy, cpu

    def summary(self) -> dict[str, Any]:
        rows = self.rows
        first, last = rows[0], rows[-1]
        return {
            "rows": rows,
            "frames": last["frames"],
            "seconds": last["elapsed_s"],
            "fps": round(last["frames"] / last["elapsed_s"], 1),
            "pss_first_mb": first["peak_pss_mb"],
            "pss_last_mb": last["peak_pss_mb"],
            "pss_max_mb": max(r["peak_pss_mb"] for r in rows),
            "fds_first": first["fds"],
            "fds_last": last["fds"],
            "shm_start": len(self.shm_start),
            "shm_new_at_end": sorted(set(shm_entries()) - set(self.shm_start)),
        }


def decode_count(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


# -- part 1: CartPole vector env ------------------------------------------------------------
def part_vector(folder: Path, total: int, every: int, n: int = 4) -> dict[str, Any]:
    env = rlcapture.make_vec("CartPole-v1", n, folder / "vector", overwrite=True)
    roles = {"main": os.getpid(), "encoder": env.recorder.encoder_pid}
    roles.update({f"w{i}": pid for i, pid in enumerate(env.worker_pids)})
    win = Windows(
        f"vector: CartPole-v1 600x400, make_vec N={n}, every episode recorded", every, roles
    )
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    offered = n  # the reset frames; then every vector step renders one frame per env
    episodes = 0
    while offered < total:
        _, _, term, trunc, _ = env.step(rng.integers(0, 2, n))
        offered += n
        episodes += int(np.count_nonzero(term | trunc))
        win.tick(offered, {"episodes": episodes})
    if not win.rows or win.rows[-1]["frames"] != offered:
        win.row(offered, {"episodes": episodes})
    t = time.perf_counter()
    env.close()
    close_s = time.perf_counter() - t
    result = win.summary()
    result.update(check_manifest(folder / "vector", offered, lossless=True))
    result["close_s"] = round(close_s, 2)
    return result


def check_manifest(out: Path, offered: int, *, lossless: bool, sample: int = 20) -> dict[str, Any]:
    records = read_manifest(out / "episodes.jsonl")
    frames = sum(r["frames"] for r in records)
    dropped = sum(r["dropped"] or 0 for r in records)
    videos = [r for r in records if r["video"]]
    files = sum(1 for _ in (out / "videos").iterdir())
    rnd = random.Random(0)
    checked = rnd.sample(videos, min(sample, len(videos)))
    bad = [r["video"] for r in checked if decode_count(out / r["video"]) != r["frames"]]
    ok = frames + dropped == offered and not bad and files == len(videos)
    if lossless:
        ok = ok and dropped == 0
    return {
        "manifest_lines": len(records),
        "video_files": files,
        "frames_offered": offered,
        "frames_in_manifest": frames,
        "dropped_in_manifest": dropped,
        "videos_decoded": len(checked),
        "videos_decoding_wrong": bad,
        "consistent": ok,
    }


# -- part 2: 1-step and 10,000-step episodes side by side ------------------------------------
def part_mixed(folder: Path, steps: int, every: int, long: int = 10_000) -> dict[str, Any]:
    n, side = 4, 128
    short = np.array([True, True, False, False])
    rng = np.random.default_rng(1)
    pool = rng.integers(0, 256, (8, n, side, side, 3), dtype=np.uint8)
    rec = rlcapture.Recorder(folder / "mixed", overwrite=True)
    cap = rlcapture.BatchCapture(rec, n)
    roles = {"main": os.getpid(), "encoder": rec.encoder_pid}
    win = Windows(
        f"mixed: BatchCapture {side}x{side}, envs 0-1 one-step episodes, envs 2-3 {long}-step",
        every,
        roles,
    )
    cap.reset(pool[0])
    offered = n
    length = np.zeros(n, int)
    episodes = 0
    for t in range(1, steps + 1):
        length += 1
        done = short | (length >= long)
        cap.step(pool[t % 8], np.ones(n), done, np.zeros(n, bool))
        offered += n
        ids = np.flatnonzero(done)
        episodes += len(ids)
        length[ids] = 0
        cap.reset(pool[(t + 3) % 8][ids], env_ids=ids)
        offered += len(ids)
        win.tick(offered, {"episodes": episodes})
    cap.close()
    if not win.rows or win.rows[-1]["frames"] != offered:
        win.row(offered, {"episodes": episodes})
    t = time.perf_counter()
    rec.close()
    close_s = time.perf_counter() - t
    result = win.summary()
    result.update(check_manifest(folder / "mixed", offered, lossless=True))
    records = read_manifest(folder / "mixed" / "episodes.jsonl")
    ended = [r for r in records if r["end"] == "terminated"]
    result["finished_episodes"] = len(ended)
    result["long_episodes"] = sum(1 for r in ended if r["length"] == long)
    result["every_finished_has_length_plus_1_frames"] = all(
        r["frames"] == r["length"] + 1 for r in ended
    )
    result["consistent"] = (
        result["consistent"] and result["every_finished_has_length_plus_1_frames"]
    )
    result["close_s"] = round(close_s, 2)
    return result


# -- part 3: drop mode, an encoder slower than the producer ----------------------------------
def part_drop(folder: Path, seconds: float, length: int = 30) -> dict[str, Any]:
    n, side = 2, 1024
    rng = np.random.default_rng(2)
    pool = rng.integers(0, 256, (3, n, side, side, 3), dtype=np.uint8)
    rec = rlcapture.Recorder(folder / "drop", drop=True, slots=2, overwrite=True)
    cap = rlcapture.BatchCapture(rec, n)
    roles = {"main": os.getpid(), "encoder": rec.encoder_pid}
    win = Windows(
        f"drop: BatchCapture {side}x{side} noise, drop=True, slots=2, {length}-step episodes",
        10**12,
        roles,
    )
    frames = pool[0].copy()  # the simulator's render target
    cap.reset(frames)
    offered = n
    t0 = time.perf_counter()
    t = 0
    while time.perf_counter() - t0 < seconds:
        t += 1
        np.copyto(frames, pool[t % 3])  # "rendering": ~1 ms for 2 x 3 MB
        done = np.full(n, t % length == 0)
        cap.step(frames, np.ones(n), done, np.zeros(n, bool))
        offered += n
        if done.any():
            np.copyto(frames, pool[(t + 1) % 3])
            cap.reset(frames)
            offered += n
        win.tick(offered)
    cap.close()
    win.row(offered)
    t1 = time.perf_counter()
    rec.close()
    close_s = time.perf_counter() - t1
    summary = rec.summary
    result = win.summary()
    result.update(check_manifest(folder / "drop", offered, lossless=False, sample=10))
    records = read_manifest(folder / "drop" / "episodes.jsonl")
    finished = [r for r in records if r["end"] == "terminated"]
    result["episodes"] = len(records)
    result["offered_per_second"] = round(offered / (t1 - t0), 1)
    result["encoded_per_second"] = round(summary["frames"] / (t1 - t0 + close_s), 1)
    result["encoder_frames"] = summary["frames"]
    result["dropped_fraction"] = round(result["dropped_in_manifest"] / offered, 3)
    # Per episode: what reached the video plus what was dropped = what was offered.
    result["per_episode_frames_plus_dropped_eq_offered"] = all(
        r["frames"] + r["dropped"] == length + 1 for r in finished
    )
    result["encoder_frames_eq_manifest_frames"] = summary["frames"] == result["frames_in_manifest"]
    result["consistent"] = (
        result["consistent"]
        and result["per_episode_frames_plus_dropped_eq_offered"]
        and result["encoder_frames_eq_manifest_frames"]
    )
    result["close_s"] = round(close_s, 2)
    print(
        f"offered {offered} ({result['offered_per_second']:.0f}/s), encoded {summary['frames']} "
        f"({result['encoded_per_second']:.0f}/s), dropped {result['dropped_in_manifest']} "
        f"({100 * result['dropped_fraction']:.1f} %)",
        flush=True,
    )
    return result


# -- main ----------------------------------------------------------------------------------
# -- part 4: keep rules, images and the mosaic over a long run ---------------------------------
def disk_usage(folder: Path) -> tuple[int, int]:
    """(bytes, files) under ``folder``."""
    size = files = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
                files += 1
            except FileNotFoundError:
                pass  # deleted by a keep decision meanwhile
    return size, files


def part_keep(folder: Path, total: int, every: int, n: int = 4) -> dict[str, Any]:
    out = folder / "keep"
    env = rlcapture.make_vec(
        "CartPole-v1", n, out, overwrite=True, keep="worst:3,best:3", keyframes=True, frames=5,
        mosaic=True,
    )  # fmt: skip
    roles = {"main": os.getpid(), "encoder": env.recorder.encoder_pid}
    win = Windows(
        f"keep: CartPole-v1 N={n}, keep worst:3,best:3, keyframes, PNG every 5th step, mosaic",
        every,
        roles,
    )
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    offered, episodes = n, 0
    while offered < total:
        _, _, term, trunc, _ = env.step(rng.integers(0, 2, n))
        offered += n
        episodes += int(np.count_nonzero(term | trunc))
        if offered >= win.next_row:
            size, files = disk_usage(out)
            mosaic = os.path.getsize(out / "mosaic.mp4")
            extra = {"episodes": episodes, "disk_kb_without_mosaic": (size - mosaic) // 1024, "files": files}
            win.tick(offered, extra)
            print(f"{'':>8} episodes {episodes}, on disk {extra['disk_kb_without_mosaic']} kB in {files} files "
                  f"(+ mosaic {mosaic // 1024} kB)", flush=True)  # fmt: skip
        else:
            win.tick(offered)
    env.close()
    result = win.summary()
    records = read_manifest(out / "episodes.jsonl")
    kept = [r for r in records if r.get("kept")]
    finished = [r for r in records if r["end"] in ("terminated", "truncated")]
    returns = sorted(r["return"] for r in finished)
    want = sorted(returns[:3] + returns[-3:])
    on_disk = sorted(p.name for p in (out / "videos").glob("*.mp4"))
    result.update(
        episodes=len(records),
        kept=len(kept),
        kept_returns=sorted(r["return"] for r in kept if r["end"] in ("terminated", "truncated")),
        want_returns=want,
        videos_on_disk=len(on_disk),
        mosaic_frames=decode_count(out / "mosaic.mp4"),
    )
    ties = len(set(returns[:4])) < 4 or len(set(returns[-4:])) < 4  # equal returns may swap
    result["consistent"] = (
        on_disk == sorted(Path(r["video"]).name for r in kept)
        and (ties or result["kept_returns"] == want)
        and all(len(r["keyframes"]) >= 2 and all((out / k).exists() for k in r["keyframes"]) for r in kept)
        and not result["shm_new_at_end"]
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~1 minute version")
    parser.add_argument("--frames", type=int, help="frames of the vector part (default 100000)")
    parser.add_argument("--parts", default="vector,mixed,drop")
    parser.add_argument("--keep", type=Path, help="keep the recordings in this folder")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args(argv)
    quick = args.quick
    total = args.frames or (10_000 if quick else 100_000)
    every = max(1000, total // 10) if quick else 10_000
    folder = args.keep or Path(tempfile.mkdtemp(prefix="rlcapture-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    report: dict[str, Any] = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "quick": quick,
        "machine": measure.machine_info(),
        "shm_at_start": shm_entries(),
    }
    t0 = time.perf_counter()
    try:
        if "vector" in parts:
            report["vector"] = part_vector(folder, total, every)
        if "mixed" in parts:
            steps = 3_000 if quick else 12_000
            report["mixed"] = part_mixed(folder, steps, 2_000 if quick else 10_000, long=10_000)
        if "drop" in parts:
            report["drop"] = part_drop(folder, 8.0 if quick else 30.0)
        if "keep" in parts:
            report["keep"] = part_keep(folder, total // 2, every)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["shm_at_end"] = shm_entries()
    report["consistent"] = all(report[p]["consistent"] for p in parts if p in report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")

    print("\n== summary ==")
    print(
        f"{'part':<8} {'frames':>8} {'f/s':>6} {'PSS first->last (max) MB':>26} {'fds first->last':>34} {'ok':>4}"
    )
    for p in parts:
        r = report.get(p)
        if r is None:
            continue
        fds = (
            "/".join(map(str, r["fds_first"].values()))
            + " -> "
            + "/".join(map(str, r["fds_last"].values()))
        )
        pss = f"{r['pss_first_mb']:.0f} -> {r['pss_last_mb']:.0f} ({r['pss_max_mb']:.0f})"
        print(
            f"{p:<8} {r['frames']:>8} {r['fps']:>6.0f} {pss:>26} {fds:>34} {r['consistent']!s:>4}"
        )
    print(
        f"/dev/shm: {len(report['shm_at_start'])} entries at start, {len(report['shm_at_end'])} at end"
    )
    print(f"total {report['seconds']:.0f} s; results in {args.json}")
    return 0 if report["consistent"] else 1


if __name__ == "__main__":
    sys.exit(main())
