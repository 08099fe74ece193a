"""Crash matrix: every fault under every start method, plus a full disk and a removed folder.

``test_faults.py`` covers the faults under the default start method (fork on
Linux); here the same kinds of fault run under "forkserver" and "spawn" too
(and, under "fork", the faults that file does not have: reset errors, a render
error at the very first frame, a segfault). For each: the right rlcapture
error, raised within a few seconds and naming the env or the encoder; a
manifest of complete JSON lines with every field; every video decodable (up to
its last whole fragment where a process was killed); and nothing left running
or in ``/dev/shm`` (the autouse ``no_leaks`` fixture).

Then the output going bad under a run: a file size limit (``RLIMIT_FSIZE``,
the stand-in for a full disk) and the output folder removed mid-run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from as_user import Unprivileged
from conftest import PYTHON, decode, read_manifest, wait_until
from envs_for_tests import Faulty, NoisyEnv

import rlcapture
from rlcapture._backend.manifest import FIELDS

pytestmark = pytest.mark.timeout(60)

CONTEXTS = ["fork", "forkserver", "spawn"]
ENDS = {"terminated", "truncated", "closed", "reset", "error", "lost"}


# -- helpers ---------------------------------------------------------------------------
def make(out: Path, context: str, what: str | None, at: int, **kw) -> rlcapture.CaptureVectorEnv:
    """Two CartPoles in two workers; env 1 misbehaves with ``what`` from ``at``.

    ``functools.partial`` of a module-level class pickles under every start method.
    """
    fns = [functools.partial(Faulty, None), functools.partial(Faulty, what, at)]
    return rlcapture.CaptureVectorEnv(fns, out, context=context, **kw)


def step_until_error(env: rlcapture.CaptureVectorEnv, max_steps: int = 100) -> BaseException:
    for _ in range(max_steps):
        try:
            env.step(np.zeros(env.num_envs, int))
        except rlcapture.RLCaptureError as exc:
            return exc
    raise AssertionError(f"no error within {max_steps} steps")


def check_output(out: Path, *, strict: bool = True) -> list[dict]:
    """Manifest lines are complete JSON with every field; every video decodes.

    With ``strict``, each video named in the manifest (and not marked torn by
    an ``error``) decodes to exactly the frames the manifest says, and every
    file on disk is named in the manifest. Without it (a process was killed
    mid-write), every file decodes up to its last whole fragment.
    """
    records = read_manifest(out)  # asserts complete lines
    for r in records:
        missing = [f for f in FIELDS if f not in r]
        assert not missing, (missing, r)
        assert r["end"] in ENDS, r
        assert isinstance(r["env"], int) and isinstance(r["episode"], int), r
    for path in (out / "videos").iterdir():
        decode(path, tolerant=True)
    if strict:
        for r in records:
            if r["video"] and "error" not in r:
                assert decode(out / r["video"]).count == r["frames"], r
        listed = {r["video"] for r in records if r["video"]}
        assert {f"videos/{p.name}" for p in (out / "videos").iterdir()} == listed
    return records


def close_quickly(
    env: rlcapture.CaptureVectorEnv, limit: float = 15.0, timeout: float = 2.0
) -> None:
    t0 = time.monotonic()
    with contextlib.suppress(rlcapture.RLCaptureError):  # the fault was reported already
        env.close(timeout=timeout)
    assert time.monotonic() - t0 < limit, "close took too long"


# -- the matrix --------------------------------------------------------------------------
def plain_worker_error(err: BaseException) -> bool:
    """A :class:`WorkerError` (not a timeout), also of the env's builtin error class if any."""
    return (
        isinstance(err, rlcapture.WorkerError)
        and not isinstance(err, rlcapture.StepTimeoutError)
        and type(err).__name__ == "WorkerError"
    )


def fault_reset_first(out: Path, context: str) -> None:
    env = make(out, context, "raise-reset", 0)
    try:
        t0 = time.monotonic()
        with pytest.raises(rlcapture.WorkerError) as info:
            env.reset(seed=0)
        assert time.monotonic() - t0 < 10
        err = info.value
        assert err.env_index == 1, repr(err)
        assert "env 1 raised RuntimeError: reset broke at reset 0" in str(err)
    finally:
        close_quickly(env)
    records = check_output(out)
    assert all(r["env"] == 0 or r["end"] == "error" for r in records), records


def fault_reset_mid(out: Path, context: str) -> None:
    env = make(out, context, "raise-reset", 2)
    try:
        env.reset(seed=0)
        t0 = time.monotonic()
        err = step_until_error(env)
        assert time.monotonic() - t0 < 10
        assert plain_worker_error(err), repr(err)
        assert err.env_index == 1 and "reset broke at reset 2" in str(err)
    finally:
        close_quickly(env)
    records = check_output(out)
    done = [r for r in records if r["env"] == 1 and r["end"] == "terminated"]
    assert len(done) == 2  # the two episodes before the failing reset are complete
    for r in done:
        assert r["frames"] == r["length"] + 1


def fault_step_raise(out: Path, context: str) -> None:
    env = make(out, context, "raise", 15)
    try:
        env.reset(seed=0)
        err = step_until_error(env)
        assert plain_worker_error(err), repr(err)
        assert err.env_index == 1 and "env 1 raised RuntimeError: boom at step 15" in str(err)
    finally:
        close_quickly(env)
    records = check_output(out)
    assert [r for r in records if r["env"] == 1][-1]["end"] == "error"


def fault_render_first(out: Path, context: str) -> None:
    env = make(out, context, "raise-render", 0)
    try:
        env.reset(seed=0)  # answered first, rendered after: the error comes with the next call
        err = step_until_error(env, 3)
        assert plain_worker_error(err), repr(err)
        assert isinstance(err, ValueError)  # the env's error class, as AsyncVectorEnv raises it
        assert err.env_index == 1 and "env 1 raised ValueError: render broke" in str(err)
    finally:
        close_quickly(env)
    records = check_output(out)
    assert not any(r["env"] == 1 and r["frames"] for r in records)  # env 1 never gave a frame


def fault_render_mid(out: Path, context: str) -> None:
    env = make(out, context, "raise-render", 15)
    try:
        env.reset(seed=0)
        err = step_until_error(env)
        assert plain_worker_error(err), repr(err)
        assert err.env_index == 1 and "render broke" in str(err)
    finally:
        close_quickly(env)
    check_output(out)


def fault_worker_sigkill(out: Path, context: str) -> None:
    env = make(out, context, None, 0)
    try:
        env.reset(seed=0)
        for _ in range(5):
            env.step(np.zeros(2, int))
        os.kill(env.worker_pids[1], signal.SIGKILL)
        t0 = time.monotonic()
        err = step_until_error(env, 5)
        assert time.monotonic() - t0 < 10
        assert plain_worker_error(err), repr(err)
        assert err.env_index == 1 and err.exitcode == -signal.SIGKILL
        assert "env 1" in str(err) and "SIGKILL" in str(err)
    finally:
        close_quickly(env)
    records = check_output(out)
    assert [r["end"] for r in records if r["env"] == 1][-1] == "lost"


def fault_worker_segv(out: Path, context: str) -> None:
    env = make(out, context, "segv", 6)
    try:
        env.reset(seed=0)
        t0 = time.monotonic()
        err = step_until_error(env, 10)
        assert time.monotonic() - t0 < 10
        assert plain_worker_error(err), repr(err)
        assert err.env_index == 1 and err.exitcode == -signal.SIGSEGV
        assert "env 1" in str(err) and "SIGSEGV" in str(err)
    finally:
        close_quickly(env)
    records = check_output(out)
    assert [r["end"] for r in records if r["env"] == 1][-1] == "lost"


def fault_encoder_sigkill(out: Path, context: str) -> None:
    env = make(out, context, None, 0)
    try:
        env.reset(seed=0)
        for _ in range(15):
            env.step(np.zeros(2, int))
        os.kill(env.recorder.encoder_pid, signal.SIGKILL)
        t0 = time.monotonic()
        err = step_until_error(env, 50)
        assert time.monotonic() - t0 < 10
        assert type(err) is rlcapture.EncoderError, repr(err)
        assert err.exitcode == -signal.SIGKILL and "SIGKILL" in str(err)
    finally:
        close_quickly(env)
    check_output(out, strict=False)  # killed mid-write: tolerant decoding


def fault_step_hang(out: Path, context: str) -> None:
    env = make(out, context, "sleep", 4, step_timeout=0.5)
    try:
        env.reset(seed=0)
        t0 = time.monotonic()
        err = step_until_error(env, 10)
        assert time.monotonic() - t0 < 5
        assert isinstance(err, rlcapture.StepTimeoutError), repr(err)
        assert err.env_index == 1 and "did not answer within 0.5 s" in str(err)
    finally:
        close_quickly(env, timeout=0.5)  # the stuck worker is terminated (then killed)
    check_output(out)


FAULTS = {
    "reset-first": fault_reset_first,
    "reset-mid": fault_reset_mid,
    "step-raise": fault_step_raise,
    "render-first": fault_render_first,
    "render-mid": fault_render_mid,
    "worker-sigkill": fault_worker_sigkill,
    "worker-segv": fault_worker_segv,
    "encoder-sigkill": fault_encoder_sigkill,
    "step-hang": fault_step_hang,
}
#: Covered under the default start method (fork) by test_faults.py already.
IN_TEST_FAULTS = {"step-raise", "render-mid", "worker-sigkill", "encoder-sigkill", "step-hang"}

MATRIX = [
    pytest.param(context, name, id=f"{context}-{name}")
    for context in CONTEXTS
    for name in FAULTS
    if not (context == "fork" and name in IN_TEST_FAULTS)
]


@pytest.mark.parametrize(("context", "fault"), MATRIX)
def test_fault(tmp_path: Path, context: str, fault: str) -> None:
    FAULTS[fault](tmp_path / "out", context)


# -- a file size limit (a full disk) -------------------------------------------------------
FULL_DISK = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import rlcapture
    from envs_for_tests import Growing

    if __name__ == "__main__":
        out, how = sys.argv[1], sys.argv[2]
        if how == "tree":  # the limit came with the process: every child has it
            env = rlcapture.CaptureVectorEnv([Growing, Growing], out)
        else:  # only the encoder's files are limited: a full output disk
            import psutil
            env = rlcapture.make_vec("CartPole-v1", 2, out)
            limit = int(sys.argv[3])
            psutil.Process(env.recorder.encoder_pid).rlimit(psutil.RLIMIT_FSIZE, (limit, limit))
        obs, _ = env.reset(seed=0)
        t0 = time.monotonic()
        try:
            for i in range(100000):
                # Short episodes first (a CartPole video of ~10 steps is ~7 kB),
                # then balanced ones, whose videos outgrow the limit.
                if how == "tree" or i < 40:
                    action = np.zeros(2, int)
                else:
                    action = (obs[:, 2] + obs[:, 3] > 0).astype(int)
                obs, *_ = env.step(action)
        except rlcapture.RLCaptureError as exc:
            print(type(exc).__name__, exc, flush=True)
        finally:
            env.close()
        print("seconds", time.monotonic() - t0)
    """
)


def run_limited(tmp_path: Path, subprocess_env: dict, how: str, limit: int) -> tuple[str, Path]:
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK)
    out = tmp_path / "out"
    env = dict(subprocess_env)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env["PYTHONPATH"]])

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [PYTHON, str(script), str(out), how, str(limit)],
        preexec_fn=limit_files if how == "tree" else None,
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Its workers and encoder are not our children: look for them by name.
    assert wait_until(lambda: not processes_running(script), 10.0), processes_running(script)
    return proc.stdout, out


def processes_running(script: Path) -> list[int]:
    """Live processes whose command line names ``script`` (forked children share it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(script).encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


def check_after_full_disk(out: Path, stdout: str, limit: int) -> None:
    first = stdout.splitlines()[0]
    assert first.startswith("EncoderError "), stdout
    assert "failed after" in first and "kept): [Errno 27] File too large" in first, first
    failing = first.split("writing ", 1)[1].split(" failed", 1)[0]
    assert failing.startswith("videos/env") and failing.endswith(".mp4"), first
    assert (out / failing).stat().st_size <= limit
    records = read_manifest(out)  # complete JSON lines only
    assert records
    torn = {r["video"] for r in records if "error" in r}
    assert failing in torn
    for r in records:
        assert all(f in r for f in FIELDS), r
        if r["video"] in torn:
            decode(out / r["video"], tolerant=True)  # up to its last whole fragment
        elif r["video"]:
            assert decode(out / r["video"]).count == r["frames"], r  # before the failure: whole
    listed = {r["video"] for r in records if r["video"]}
    assert {f"videos/{p.name}" for p in (out / "videos").iterdir()} == listed


def test_file_size_limit_on_the_whole_run(tmp_path: Path, subprocess_env: dict) -> None:
    """``ulimit -f`` on the run: rings (64x64 frames) fit, the third episode's video does not."""
    limit = 150_000
    stdout, out = run_limited(tmp_path, subprocess_env, "tree", limit)
    check_after_full_disk(out, stdout, limit)
    done = [r for r in read_manifest(out) if r["end"] == "terminated" and "error" not in r]
    assert len(done) >= 4  # episodes 0 and 1 of both envs were written in full


def test_full_output_disk_with_cartpole(tmp_path: Path, subprocess_env: dict) -> None:
    """Only the encoder's files are limited, as when the output disk fills up.

    (A limit on the whole run would also stop the workers' rings, 5.8 MB each
    for CartPole's 600x400 frames: memfd sizes count against it too.)
    """
    limit = 20_000
    stdout, out = run_limited(tmp_path, subprocess_env, "encoder", limit)
    check_after_full_disk(out, stdout, limit)
    assert len([r for r in read_manifest(out) if "error" not in r]) >= 6
    assert float(stdout.split("seconds", 1)[1]) > 0  # how long: benchmarks/bench_promptness.py


def test_a_manifest_line_is_never_torn(tmp_path: Path, subprocess_env: dict) -> None:
    """A line that hits the size limit part-way is taken back: the file ends in a whole line."""
    code = textwrap.dedent(
        """
        import sys
        from rlcapture._backend.manifest import ManifestWriter
        m = ManifestWriter(sys.argv[1])
        try:
            for i in range(1000):
                m.write({"env": 0, "episode": i, "note": "x" * 37})
        except OSError as exc:
            print(exc.errno, m.lines)
        """
    )
    path = tmp_path / "episodes.jsonl"
    proc = subprocess.run(
        [PYTHON, "-c", code, str(path)],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (5000, 5000)),
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    errno_, lines = map(int, proc.stdout.split())
    assert errno_ == 27
    text = path.read_text()
    assert text.endswith("\n") and len(text) <= 5000
    assert [json.loads(line)["episode"] for line in text.splitlines()] == list(range(lines))


# -- the output folder removed or made read-only -------------------------------------------
@pytest.mark.parametrize("episodes", ["short", "endless"])
def test_output_folder_removed_mid_run(tmp_path: Path, episodes: str) -> None:
    """Short episodes fail at the next video; an endless one at the encoder's folder check."""
    out = tmp_path / "out"
    if episodes == "short":
        env = rlcapture.make_vec("CartPole-v1", 2, out)
    else:  # no new file is ever opened: open files stay writable in a removed folder
        env = rlcapture.CaptureVectorEnv([functools.partial(NoisyEnv, 10**9, 64)] * 2, out)
    try:
        env.reset(seed=0)
        for _ in range(20):
            env.step(np.zeros(2, int))
        while out.exists():  # the encoder may be creating a file as we go
            shutil.rmtree(out, ignore_errors=True)
        t0 = time.monotonic()
        with pytest.raises(rlcapture.EncoderError) as info:
            for _ in range(100_000):
                env.step(np.zeros(2, int))
        assert time.monotonic() - t0 < 10
        msg = str(info.value)
        assert str(out.resolve()) in msg, msg
        if episodes == "short":
            assert "cannot create videos/env" in msg or "was removed or moved" in msg, msg
        else:
            assert "was removed or moved (episodes.jsonl is gone)" in msg, msg
    finally:
        t0 = time.monotonic()
        env.close()
        assert time.monotonic() - t0 < 15
    assert not out.exists()  # nothing was written again in its place


READ_ONLY_MID_RUN = """
import sys
from pathlib import Path
import numpy as np
import rlcapture

out = Path(sys.argv[1])
env = rlcapture.make_vec("CartPole-v1", 2, out, max_episode_steps=400)
try:
    env.reset(seed=0)
    for _ in range(5):
        env.step(np.zeros(2, int))
    (out / "videos").chmod(0o500)
    try:
        for _ in range(10_000):
            env.step(np.zeros(2, int))
    except rlcapture.EncoderError as exc:
        print(exc)
finally:
    (out / "videos").chmod(0o700)
    env.close()
"""


def test_output_folder_made_read_only() -> None:
    """As a user (root writes into read-only folders): ``as_user.py``."""
    with Unprivileged() as user:
        if user.reason:
            pytest.skip(user.reason)
        out = user.folder("mine") / "out"
        done = subprocess.run(
            user.command([PYTHON, "-c", READ_ONLY_MID_RUN, str(out)]),
            env=user.env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        msg = done.stdout
        assert "cannot create videos/env" in msg and "Permission denied" in msg, msg
        check_output(out)


def test_a_file_size_limit_below_a_ring_says_what_to_do(tmp_path: Path, subprocess_env: dict) -> None:
    """memfds obey ``ulimit -f`` too: a ring that cannot be sized is a clear error."""
    script = tmp_path / "small_limit.py"
    script.write_text(textwrap.dedent(
        """
        import sys
        import numpy as np
        import rlcapture

        env = rlcapture.make_vec("CartPole-v1", 1, sys.argv[1])
        try:
            env.reset(seed=0)
            env.step(np.zeros(1, int))
        except rlcapture.RLCaptureError as exc:
            print(type(exc).__name__, exc)
        finally:
            env.close()
        """
    ))  # fmt: skip
    proc = subprocess.run(
        [PYTHON, str(script), str(tmp_path / "out")],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000)),
        env=subprocess_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WorkerError env 0" in proc.stdout
    assert "the file size limit (ulimit -f) is 200000 bytes; raise it" in proc.stdout
    assert wait_until(lambda: not processes_running(script), 10.0)
