"""Shared fixtures and helpers of the rlcapture test suite.

Every test runs under :func:`no_leaks`, which fails the test if it left a new
entry in ``/dev/shm``, a live child process, or an open memfd descriptor in the
test process. Videos are checked by decoding them with PyAV (:func:`decode`).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

# pygame (CartPole's renderer) complains without a display or a runtime dir.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is in the test environment
    psutil = None

from hypothesis import HealthCheck, settings

# The leak fixture is function-scoped on purpose (once per test, not per example).
settings.register_profile(
    "rlcapture",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)
settings.load_profile("rlcapture")

REPO = Path(__file__).resolve().parent.parent
SHM = Path("/dev/shm")

#: Lossless video options: decoded frames equal the rendered ones exactly.
LOSSLESS = {"codec": "libx264rgb", "crf": 0, "pix_fmt": "rgb24"}


# -- videos --------------------------------------------------------------------
@dataclass
class Decoded:
    """What :func:`decode` found in a video."""

    count: int
    width: int
    height: int
    first: np.ndarray | None
    frames: list[np.ndarray] = field(default_factory=list)
    pts: list[int] = field(default_factory=list)


def decode(path: str | os.PathLike[str], *, keep: bool = False, tolerant: bool = False) -> Decoded:
    """Decode every frame of ``path`` (RGB24).

    Args:
        keep: Keep every frame in ``frames`` (else only the first).
        tolerant: Stop quietly at data that cannot be decoded (a torn last
            fragment of a killed run) instead of raising.
    """
    count = 0
    first = None
    frames: list[np.ndarray] = []
    pts: list[int] = []
    width = height = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            try:
                for frame in container.decode(stream):
                    arr = frame.to_ndarray(format="rgb24")
                    if first is None:
                        first = arr
                    if keep:
                        frames.append(arr)
                    pts.append(frame.pts)
                    width, height = frame.width, frame.height
                    count += 1
            except av.error.FFmpegError:
                if not tolerant:
                    raise
    except av.error.FFmpegError:
        if not tolerant:
            raise
    return Decoded(count, width, height, first, frames, pts)


def read_manifest(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every line of ``out/episodes.jsonl``; each must be complete JSON."""
    text = (Path(out) / "episodes.jsonl").read_text()
    assert text == "" or text.endswith("\n"), "torn last manifest line"
    return [json.loads(line) for line in text.splitlines()]


def by_env(records: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Manifest records grouped per env, in manifest order."""
    out: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r["env"], []).append(r)
    return out


def reset_as_recorded(env: Any, record: dict[str, Any]) -> Any:
    """Reset ``env`` as the manifest says the episode started: with its seed, or
    (unseeded) from its env generator's state; returns what reset returned."""
    from rlcapture._backend.rngstate import restore_generator

    if record["seed"] is not None:
        return env.reset(seed=record["seed"])
    assert record["rng"] is not None, record
    restore_generator(env, record["rng"])
    return env.reset()


def cartpole_first_frame(seed: int | dict[str, Any]) -> np.ndarray:
    """What CartPole-v1 renders right after ``reset(seed=seed)``, or after the
    reset a manifest record describes."""
    import gymnasium as gym

    env = gym.make("CartPole-v1", render_mode="rgb_array")
    try:
        if isinstance(seed, dict):
            reset_as_recorded(env, seed)
        else:
            env.reset(seed=seed)
        return env.render()
    finally:
        env.close()


# -- processes and shared memory ------------------------------------------------
def _live_children() -> list[Any]:
    if psutil is None:  # pragma: no cover
        return []
    kids = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            continue
        # The forkserver and resource tracker of (multi)processing live for the
        # whole test session by design: they are not ours to clean up.
        if "forkserver import main" in cmd or "resource_tracker import main" in cmd:
            continue
        # A Ray cluster started by a module-scoped fixture (tests/test_ray.py) keeps a
        # pool of idle workers that it may refill at any time (after an actor or a
        # node died); they hold nothing of ours and go with the cluster, whose
        # fixture checks that no Ray process is left. Actors stay checked.
        if cmd.startswith("ray::IDLE"):
            continue
        kids.append(p)
    return kids


def _memfds() -> set[str]:
    """Descriptors of this process that point at memfd memory."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/memfd:"):
            found.add(f"{fd} -> {target}")
    return found


def _shm_entries() -> set[str]:
    return set(os.listdir(SHM)) if SHM.is_dir() else set()


def pid_gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for its reaper counts as gone)."""
    if psutil is None:  # pragma: no cover
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail a test that leaves /dev/shm entries, live children or memfds behind."""
    shm_before = _shm_entries()
    kids_before = {p.pid for p in _live_children()}
    memfd_before = _memfds()
    yield
    gc.collect()
    leftover: list[Any] = []

    def settled() -> bool:
        nonlocal leftover
        leftover = [p for p in _live_children() if p.pid not in kids_before]
        return not leftover

    if not wait_until(settled, 10.0):
        desc = []
        for p in leftover:
            try:
                desc.append(f"{p.pid} {p.name()} {' '.join(p.cmdline())[:80]}")
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        pytest.fail(f"child processes left running after the test: {desc}")
    new_shm = _shm_entries() - shm_before
    assert not new_shm, f"new /dev/shm entries left behind: {sorted(new_shm)}"
    gc.collect()
    new_memfds = _memfds() - memfd_before
    assert not new_memfds, f"memfd descriptors left open: {sorted(new_memfds)}"


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for a Python subprocess that imports this checkout of rlcapture."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


PYTHON = sys.executable


#: What a terminal on a headless server lacks, and what would pick the platform for us.
UNSET = (
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "MUJOCO_GL",
    "PYOPENGL_PLATFORM",
    "SDL_VIDEODRIVER",
    "XDG_RUNTIME_DIR",
)


def headless(cwd: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment of a subprocess run as on a headless server, importing this checkout (and ``cwd``)."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), *([str(cwd)] if cwd else []), env.get("PYTHONPATH", "")])
    )
    env.update(extra)
    return env
