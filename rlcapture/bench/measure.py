"""Measuring a run: memory and CPU of a process tree, the machine's other load, trials apart.

Shared by ``rlcapture bench`` and the scripts in ``benchmarks/``, so that every
figure they publish is taken the same way:

* :class:`TreePSS`: peak PSS summed over this process and its descendants,
  sampled by a low-priority thread whose own CPU is measured (so that it can
  be taken out of the CPU figures);
* :func:`tree_cpu`, :func:`self_cpu`, :func:`reaped_cpu`: CPU of this process
  and of every descendant, alive or reaped;
* :func:`machine_busy_s` and :func:`wait_quiet`: what the rest of the machine
  does meanwhile (a shared machine gives noisy figures);
* :func:`trial_main`, :func:`run_trial_process` and :func:`retry_quiet`: one
  trial in a fresh Python process (memory and allocator state do not leak
  between variants), its result as one marked JSON line, run again when other
  programs disturbed it;
* :func:`median`, :func:`time_per_call`, :func:`video_frames`,
  :func:`machine_info`.

Linux figures come from ``/proc``; psutil is the fallback where
``/proc/PID/task/TID/children`` is missing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from .._backend.encoder_count import usable_cores
from ..errors import first_line

__all__ = [
    "MB",
    "TreePSS",
    "TrialFailed",
    "cpu_model",
    "headless",
    "machine_busy_s",
    "machine_info",
    "median",
    "proc_cpu",
    "pss_bytes",
    "reaped_cpu",
    "retry_quiet",
    "run_trial_process",
    "self_cpu",
    "time_per_call",
    "trial_main",
    "tree_cpu",
    "tree_pids",
    "tree_pss",
    "video_frames",
    "wait_quiet",
]

MB = 1024 * 1024

#: The line a trial process ends with: this mark, then its result as JSON.
RESULT = "@@RLCAPTURE-TRIAL-RESULT@@ "
#: Or this mark, then ``{"type", "message", "user"}`` as JSON.
ERROR = "@@RLCAPTURE-TRIAL-ERROR@@ "


def headless(environ: MutableMapping[str, str] = os.environ) -> MutableMapping[str, str]:
    """Tell SDL (pygame, the classic-control renderer) that no display is needed.

    Without it, ``rgb_array`` rendering prints "XDG_RUNTIME_DIR is invalid" on
    exit. Set in ``os.environ``, it is inherited by workers and trials.
    """
    environ.setdefault("SDL_VIDEODRIVER", "dummy")
    environ.setdefault("SDL_AUDIODRIVER", "dummy")
    return environ


# ======================================================================================
# memory
# ======================================================================================
def tree_pids(root: int) -> list[int]:
    """``root`` and its descendants, from ``/proc/PID/task/TID/children``."""
    pids, i = [root], 0
    while i < len(pids):
        pid = pids[i]
        i += 1
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    pids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return pids


def pss_bytes(pid: int) -> int:
    """The PSS of one process, from ``/proc/PID/smaps_rollup`` (what psutil reports too)."""
    with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        data = f.read()
    start = data.index(b"\nPss:") + 5
    return int(data[start : data.index(b"kB", start)]) * 1024


def _has_children_files() -> bool:
    return os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def tree_pss(root: int | None = None) -> tuple[int, int]:
    """(PSS summed over ``root`` and its descendants, how many processes); default root: us.

    Reads ``/proc`` directly where the kernel lists children
    (``CONFIG_PROC_CHILDREN``), else asks psutil. Processes that end while
    being read are left out.
    """
    root = os.getpid() if root is None else root
    total = 0
    if _has_children_files():
        pids = tree_pids(root)
        for pid in pids:
            with contextlib.suppress(OSError, ValueError):
                total += pss_bytes(pid)
        return total, len(pids)
    import psutil

    try:
        top = psutil.Process(root)
        procs = [top, *top.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_full_info().pss
    return total, len(procs)


class TreePSS:
    """Peak PSS summed over this process and its descendants.

    A thread at nice 19 samples it. Reading ``smaps_rollup`` costs the kernel
    about a millisecond per process (it walks the page tables), which is a lot
    on a small machine: with ``backoff`` the wait between samples grows to
    that many times the cost of the last one (20: the sampler takes at most
    ~5 % of one core), and is at least ``interval``. Its CPU time
    (``cpu_s``) is measured, to be taken out of the CPU figures.

    Args:
        interval: Seconds between samples at the least; None: no thread,
            samples only on entry, on exit and when :meth:`sample` is called.
        backoff: See above; 0 keeps the interval fixed.
    """

    def __init__(self, interval: float | None = 0.05, backoff: float = 20.0) -> None:
        self.interval = interval
        self.backoff = backoff
        self.root = os.getpid()
        self.peak = 0
        self.baseline = 0
        self.samples = 0
        self.max_procs = 0
        self.busy_s = 0.0  # wall time spent sampling
        self.cpu_s = 0.0  # CPU time of the sampler thread
        self._last_cost = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pss-sampler", daemon=True)

    def sample(self) -> int:
        """Take one sample now; returns the PSS summed over the tree, in bytes."""
        t0 = time.perf_counter()
        total, procs = tree_pss(self.root)
        cost = time.perf_counter() - t0
        with self._lock:
            self.peak = max(self.peak, total)
            self.samples += 1
            self.max_procs = max(self.max_procs, procs)
            self.busy_s += cost
            self._last_cost = cost
        return total

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        t0 = time.thread_time()
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(max(self.interval or 0.0, self.backoff * self._last_cost))
        self.cpu_s = time.thread_time() - t0

    def __enter__(self) -> TreePSS:
        self.baseline = self.sample()
        if self.interval is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the sampling thread (its ``cpu_s`` is final then)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.sample()


# ======================================================================================
# CPU
# ======================================================================================
def self_cpu() -> float:
    """User + system CPU seconds of this process."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def reaped_cpu() -> float:
    """User + system CPU seconds of this process's children that it reaped."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_cpu(p: Any) -> float:
    """A psutil process's CPU so far, with what it reaped of its own children."""
    t = p.cpu_times()
    return t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)


def tree_cpu() -> float:
    """CPU used so far by this process and every descendant, alive or gone.

    This process and what it reaped (``getrusage``), plus, for each live (or
    not yet reaped) descendant, its own CPU and what it reaped. Counts each
    process once, also where children are not ours to reap (a forkserver's).
    """
    import psutil

    total = self_cpu() + reaped_cpu()
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += proc_cpu(p)
    return total


# ======================================================================================
# the rest of the machine
# ======================================================================================
def machine_busy_s() -> float:
    """CPU seconds the whole machine was busy since boot (``/proc/stat``; NaN elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(
    threshold: float, max_wait: float = 300.0, log: Callable[[str], None] | None = None
) -> float:
    """Wait until other programs use less than ``threshold`` cores; returns the seconds waited."""
    waited = 0.0
    while waited < max_wait:
        b0 = machine_busy_s()
        time.sleep(0.5)
        load = (machine_busy_s() - b0) / 0.5
        if load < threshold:
            break
        if waited == 0 and log is not None:
            log(f"  (other programs use {load:.1f} cores; waiting for a quieter machine)")
        time.sleep(2.0)
        waited += 2.5
    return waited


# ======================================================================================
# trials, each in a fresh process
# ======================================================================================
class TrialFailed(Exception):
    """A trial process failed: ``user`` says whether the user's input was the cause.

    ``detail`` holds the end of its stderr (the traceback).
    """

    def __init__(self, message: str, user: bool, detail: str) -> None:
        super().__init__(message)
        self.user = user
        self.detail = detail


def trial_main(
    run: Callable[[dict[str, Any]], dict[str, Any]],
    raw: str,
    user_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Entry point of a trial process: one JSON spec in, one marked JSON line out.

    Returns the exit status: 0, or 1 after printing the traceback to stderr and
    an error line (``user`` true for ``user_errors``) to stdout.
    """
    headless()
    spec = json.loads(raw)
    try:
        result = run(spec)
    except BaseException as exc:  # noqa: BLE001 - reported to the driver
        import traceback

        traceback.print_exc()
        err = {
            "type": type(exc).__name__,
            "message": first_line(exc, type(exc).__name__),
            "user": isinstance(exc, user_errors),
        }
        print(ERROR + json.dumps(err), flush=True)
        return 1
    print(RESULT + json.dumps(result), flush=True)
    return 0


def run_trial_process(
    argv: Sequence[str],
    timeout: float,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run ``python *argv`` (a trial ending in :func:`trial_main`); return its result.

    The result gains ``other_load_cores``: cores' worth of CPU that programs
    other than the trial used while it ran. The trial runs in its own session,
    so a timeout or an interrupt takes its workers down too.

    Raises:
        TrialFailed: If it reported an error, timed out or died.
    """
    cmd = [sys.executable, *argv]
    c0 = reaped_cpu()
    busy0 = machine_busy_s()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=headless(dict(env if env is not None else os.environ)), cwd=cwd,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TrialFailed(f"timed out after {timeout:g} s", False, "") from None
    finally:
        if proc.poll() is None:  # interrupted: take its workers down too
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.perf_counter() - t0
    ours = reaped_cpu() - c0
    busy = machine_busy_s() - busy0
    for line in out.splitlines():
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT) :])
            # Descendants the trial could not reap (a forkserver's) are in its
            # own count, not in ours.
            ours = max(ours, float(result.get("tree_cpu_total_s") or 0.0))
            result["other_load_cores"] = max(0.0, busy - ours) / wall if wall > 0 else 0.0
            return result
        if line.startswith(ERROR):
            e = json.loads(line[len(ERROR) :])
            raise TrialFailed(f"{e['type']}: {e['message']}", bool(e["user"]), err[-3000:])
    tail = [x for x in err.strip().splitlines() if x.strip()]
    raise TrialFailed(
        f"the trial process exited with status {proc.returncode}"
        + (f": {tail[-1]}" if tail else ""),
        False,
        err[-3000:],
    )


def retry_quiet(
    run: Callable[[int], dict[str, Any]],
    max_load: float | None,
    log: Callable[[str], None] | None = None,
    *,
    retries: int = 2,
    max_wait: float = 300.0,
) -> dict[str, Any]:
    """``run(attempt)`` on a machine that others leave alone, where possible.

    With ``max_load`` (cores): before each attempt wait (up to ``max_wait`` s)
    until other programs use fewer cores, and run again (up to ``retries``
    times) when they took more during it (its ``other_load_cores``). The
    result gains ``attempt``, ``waited_s`` and ``disturbed``.
    """
    waited = 0.0
    result: dict[str, Any] = {}
    for attempt in range(1 + retries if max_load is not None else 1):
        if max_load is not None:
            waited += wait_quiet(max_load, max_wait, log)
        result = run(attempt)
        result["attempt"], result["waited_s"] = attempt, waited
        if max_load is None or result["other_load_cores"] < max_load:
            break
        if log is not None:
            load = result["other_load_cores"]
            log(f"  (other programs took {load:.2f} cores during that run: again)")
    result["disturbed"] = max_load is not None and result["other_load_cores"] >= max_load
    return result


# ======================================================================================
# small things
# ======================================================================================
def median(values: Sequence[float | None]) -> float | None:
    """The median of the values that are not None (None if there are none)."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def time_per_call(fn: Callable[[], object], loops: int, repeats: int) -> float:
    """Seconds per call of ``fn``: the median over ``repeats`` batches of ``loops`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter() - t0) / loops)
    return statistics.median(times)


def video_frames(folder: Path) -> tuple[int, int, int]:
    """(videos, frames, bytes) of the MP4 files under ``folder``; unreadable ones count 0 frames."""
    import av

    videos = frames = size = 0
    for path in sorted(folder.rglob("*.mp4")):
        videos += 1
        size += path.stat().st_size
        try:
            with av.open(str(path)) as c:
                s = c.streams.video[0]
                n = s.frames
                if not n:  # fragmented MP4 has no count in its header: demux
                    n = sum(1 for pkt in c.demux(s) if pkt.size)
                frames += n
        except av.error.FFmpegError:
            pass
    return videos, frames, size


def cpu_model() -> str:
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """What a result was measured on: cores, CPU, memory, versions, date."""
    import av
    import gymnasium
    import numpy

    return {
        "cores": usable_cores(),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "mem_total_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gymnasium": gymnasium.__version__,
        "av": av.__version__,
        "numpy": numpy.__version__,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
