"""Faults: envs that raise or hang, killed workers, a killed encoder, a killed main process.

Whatever fails, the caller gets an rlcapture error naming who failed (never a
hang), videos already written stay decodable, and nothing is left running or
mapped afterwards (checked by the ``no_leaks`` fixture for every test here).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import PYTHON, _shm_entries, decode, pid_gone, read_manifest, wait_until
from envs_for_tests import Faulty

import rlcapture
from rlcapture._backend.procs import RemoteTraceback

pytestmark = pytest.mark.timeout(90)


def faulty_vec(out: Path, what: str | None, at: int = 5, n: int = 2, bad: int = 1, **kw):
    """``n`` CartPoles; env ``bad`` misbehaves with ``what`` from its step ``at``."""
    fns = [
        (lambda what=what, at=at: Faulty(what, at)) if i == bad else (lambda: Faulty(None))
        for i in range(n)
    ]
    return rlcapture.CaptureVectorEnv(fns, out, **kw)


def step_until_error(env, max_steps: int = 200) -> BaseException:
    """Step with zeros until something raises; return the error."""
    for _ in range(max_steps):
        try:
            env.step(np.zeros(env.num_envs, int))
        except rlcapture.RLCaptureError as exc:
            return exc
    raise AssertionError(f"no error within {max_steps} steps")


def check_manifest_videos(out: Path) -> list[dict]:
    """Every video in the manifest decodes to the frames the manifest says."""
    records = read_manifest(out)
    for r in records:
        if r["video"]:
            assert decode(out / r["video"]).count == r["frames"], r
    listed = {r["video"] for r in records if r["video"]}
    on_disk = {f"videos/{p.name}" for p in (out / "videos").iterdir()}
    assert on_disk == listed  # every video was closed and accounted for
    return records


@pytest.mark.parametrize("at", [5, 60])
def test_env_raising_in_step(tmp_path: Path, at: int) -> None:
    out = tmp_path / "out"
    env = faulty_vec(out, "raise", at=at)
    t0 = time.monotonic()
    try:
        env.reset(seed=0)
        err = step_until_error(env)
        assert type(err) is rlcapture.WorkerError
        assert err.env_index == 1 and err.process == "env 1"
        assert str(err).startswith("env 1 raised RuntimeError: boom at step")
        cause = err.__cause__
        assert isinstance(cause, RemoteTraceback)
        assert "Traceback" in cause.tb and "RuntimeError: boom" in cause.tb
        assert "envs_for_tests.py" in cause.tb  # the remote frames are there
        with pytest.raises(rlcapture.ClosedError, match="failed earlier"):
            env.step(np.zeros(2, int))
    finally:
        env.close()
    assert time.monotonic() - t0 < 30
    records = check_manifest_videos(out)
    mine = [r for r in records if r["env"] == 1]
    assert mine[-1]["end"] == "error"
    assert sum(r["length"] for r in mine) == at - 1  # the failing step is not counted
    if at == 60:
        finished = [r for r in records if r["end"] in ("terminated", "truncated")]
        assert len(finished) >= 2
        for r in finished:
            assert decode(out / r["video"]).count == r["length"] + 1


def test_env_raising_at_startup(tmp_path: Path) -> None:
    def broken():
        raise RuntimeError("cannot build env")

    with pytest.raises(
        rlcapture.WorkerError, match="env 1 raised RuntimeError: cannot build env"
    ) as info:
        rlcapture.CaptureVectorEnv([lambda: Faulty(None), broken], tmp_path / "out")
    assert isinstance(info.value.__cause__, RemoteTraceback)


class ActionError(ValueError):
    """An env's own error class, a ValueError."""


class RaisesOwnError(Faulty):
    def step(self, action):
        if self.steps >= 2:
            raise ActionError(f"action {action} refused")
        return super().step(action)

    def refuse(self):
        raise ActionError("refused by call")


def test_an_env_error_is_a_worker_error_and_its_builtin_class(tmp_path: Path) -> None:
    """An env's own ValueError subclass reaches the caller as a WorkerError that is a ValueError."""
    env = rlcapture.CaptureVectorEnv([Faulty, RaisesOwnError], tmp_path / "out", record="none")
    try:
        env.reset(seed=0)
        err = step_until_error(env, 10)
        assert isinstance(err, rlcapture.WorkerError) and isinstance(err, ValueError), repr(err)
        assert err.env_index == 1 and str(err).startswith("env 1 raised ActionError: action 0 refused")
        assert isinstance(err.__cause__, RemoteTraceback) and "ActionError" in err.__cause__.tb
    finally:
        env.close()


def test_a_failed_call_raises_the_envs_class_and_the_worker_serves_on(tmp_path: Path) -> None:
    env = rlcapture.CaptureVectorEnv([Faulty, RaisesOwnError], tmp_path / "out", record="none")
    try:
        env.reset(seed=0)
        with pytest.raises(AttributeError, match=r"env 0: .*no_such_attribute") as info:
            env.call_at([0], "no_such_attribute")
        assert isinstance(info.value.__cause__, RemoteTraceback)
        with pytest.raises(ActionError, match=r"^env 1: refused by call$"):
            env.call_at([1], "refuse")
        assert env.call("steps") == (0, 0)  # both workers still serve
    finally:
        env.close()


def test_a_failing_env_is_named_by_its_index_in_the_recording(tmp_path: Path) -> None:
    """With first_env_index=2 the second env is env 3, in the error and its index."""
    env = faulty_vec(tmp_path / "out", "raise", at=3, first_env_index=2)
    try:
        env.reset(seed=0)
        err = step_until_error(env)
        assert type(err) is rlcapture.WorkerError
        assert err.env_index == 3 and str(err).startswith("env 3 raised RuntimeError: boom at step 3")
    finally:
        env.close()


def test_render_error_is_reported_on_the_next_step(tmp_path: Path) -> None:
    env = faulty_vec(tmp_path / "out", "raise-render", at=4)
    try:
        env.reset(seed=0)
        for _ in range(3):
            env.step(np.zeros(2, int))
        env.step(np.zeros(2, int))  # answered first, rendered after: the error waits
        with pytest.raises(rlcapture.WorkerError, match="env 1 raised ValueError: render broke"):
            env.step(np.zeros(2, int))
    finally:
        env.close()
    check_manifest_videos(tmp_path / "out")


@pytest.mark.parametrize(
    ("what", "match"),
    [("float-render", r"env 1 .*float frames must hold values in \[0, 1\], this one holds \[0, 255\]"), ("resize", "env 1 .*changed mid-episode")],
)
def test_bad_frames_from_an_env(tmp_path: Path, what: str, match: str) -> None:
    env = faulty_vec(tmp_path / "out", what, at=2)
    try:
        env.reset(seed=0)
        err = step_until_error(env, 10)
        assert isinstance(err, rlcapture.FrameError), repr(err)
        assert re.search(match, str(err)), str(err)
        assert str(err).count("env 1") == 1  # named once, not "env 1: env 1 ..."
    finally:
        env.close()
    check_manifest_videos(tmp_path / "out")


def test_worker_killed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = faulty_vec(out, None, n=4, envs_per_worker=2)
    try:
        env.reset(seed=0)
        for _ in range(5):
            env.step(np.zeros(4, int))
        os.kill(env.worker_pids[1], signal.SIGKILL)  # worker 1 hosts envs 2 and 3
        t0 = time.monotonic()
        err = step_until_error(env, 5)
        assert time.monotonic() - t0 < 10
        assert type(err) is rlcapture.WorkerError
        assert err.env_index == 2 and err.exitcode == -signal.SIGKILL
        assert "env 2" in str(err) and "SIGKILL" in str(err)
    finally:
        env.close()
    records = check_manifest_videos(out)
    lost = sorted(r["env"] for r in records if r["end"] == "lost")
    assert lost == [2, 3]  # the encoder closed the dead worker's videos itself
    closed = sorted(r["env"] for r in records if r["end"] == "closed")
    assert closed == [0, 1]


def test_worker_exiting(tmp_path: Path) -> None:
    env = faulty_vec(tmp_path / "out", "exit", at=3, n=3, bad=2)
    try:
        env.reset(seed=0)
        err = step_until_error(env, 10)
        assert type(err) is rlcapture.WorkerError and err.env_index == 2
        assert "exit status 3" in str(err)
    finally:
        env.close()
    check_manifest_videos(tmp_path / "out")


def test_encoder_killed(tmp_path: Path) -> None:
    env = faulty_vec(tmp_path / "out", None)
    try:
        env.reset(seed=0)
        for _ in range(5):
            env.step(np.zeros(2, int))
        os.kill(env.recorder.encoder_pid, signal.SIGKILL)
        t0 = time.monotonic()
        err = step_until_error(env, 50)
        assert time.monotonic() - t0 < 10
        assert type(err) is rlcapture.EncoderError, repr(err)
        assert err.process == "encoder" and err.exitcode == -signal.SIGKILL
        assert "SIGKILL" in str(err)
    finally:
        t0 = time.monotonic()
        env.close()
        assert time.monotonic() - t0 < 30
    # The videos died with the encoder mid-fragment; what reached the disk decodes.
    for path in (tmp_path / "out" / "videos").iterdir():
        decode(path, tolerant=True)


def test_step_timeout(tmp_path: Path) -> None:
    env = faulty_vec(tmp_path / "out", "sleep", at=3, step_timeout=0.5)
    try:
        env.reset(seed=0)
        t0 = time.monotonic()
        err = step_until_error(env, 10)
        assert 0.4 < time.monotonic() - t0 < 5
        assert isinstance(err, rlcapture.StepTimeoutError)
        assert isinstance(err, TimeoutError) and isinstance(err, rlcapture.WorkerError)
        assert err.env_index == 1 and "did not answer within 0.5 s" in str(err)
    finally:
        t0 = time.monotonic()
        env.close(timeout=1.0)  # the stuck worker is terminated
        assert time.monotonic() - t0 < 10
    check_manifest_videos(tmp_path / "out")


def test_close_with_a_step_in_flight(tmp_path: Path) -> None:
    env = faulty_vec(tmp_path / "out", None)
    env.reset(seed=0)
    env.step_async(np.zeros(2, int))
    env.close()
    records = check_manifest_videos(tmp_path / "out")
    assert sorted(r["end"] for r in records) == ["closed", "closed"]
    assert all(r["length"] == 1 and r["frames"] == 2 for r in records)


# -- the main process killed -------------------------------------------------------------
SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import rlcapture

    out = sys.argv[1]
    env = rlcapture.make_vec("CartPole-v1", 3, out, envs_per_worker=1, max_episode_steps=40)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for i in range(100000):
        env.step(rng.integers(0, 2, 3))
        if i == 150:
            pids = env.worker_pids + [env.recorder.encoder_pid]
            print(json.dumps(pids), flush=True)
    """
)


@pytest.mark.timeout(120)
def test_main_process_killed(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    script = tmp_path / "record_forever.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    shm_before = _shm_entries()
    proc = subprocess.Popen(
        [PYTHON, str(script), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line, f"the script failed: {proc.stderr.read()}"
        children = json.loads(line)
        time.sleep(0.3)  # mid-run
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        # The workers notice their parent is gone, finish their episodes and
        # exit; then the encoder closes every video and exits.
        assert wait_until(lambda: all(pid_gone(p) for p in children), 20.0), [
            p for p in children if not pid_gone(p)
        ]
        orphans = _processes_running(script)
        assert orphans == [], orphans
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _processes_running(script):
            os.kill(pid, signal.SIGKILL)
        proc.stdout.close()
        proc.stderr.close()
    assert _shm_entries() - shm_before == set()
    records = read_manifest(out)
    finished = [r for r in records if r["end"] in ("terminated", "truncated")]
    assert len(finished) >= 10
    for r in finished:  # completed episodes decode fully
        assert decode(out / r["video"]).count == r["frames"] == r["length"] + 1
    for r in records:
        if r["video"]:
            assert decode(out / r["video"]).count == r["frames"]
    # Anything not in the manifest decodes up to its last whole fragment.
    listed = {r["video"] for r in records}
    for path in (out / "videos").iterdir():
        if f"videos/{path.name}" not in listed:
            decode(path, tolerant=True)


def _processes_running(script: Path) -> list[int]:
    """Live processes whose command line names ``script`` (forked children share it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            status = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state = status.rsplit(")", 1)[1].split()[0]
        if str(script).encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found
