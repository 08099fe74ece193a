"""on_error="continue": a failing env is taken out, the others go on, the manifest says why."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import decode, read_manifest
from envs_for_tests import Faulty

import rlcapture


def ok() -> Faulty:
    return Faulty(None)


def raises_in_step() -> Faulty:
    return Faulty("raise", at=30)


def raises_in_render() -> Faulty:
    return Faulty("raise-render", at=40)


@pytest.mark.timeout(120)
def test_failed_envs_are_taken_out_and_recorded(tmp_path: Path) -> None:
    envs = rlcapture.CaptureVectorEnv(
        [ok, raises_in_step, raises_in_render, ok], tmp_path, on_error="continue"
    )
    envs.reset(seed=0)
    errors: dict[int, str] = {}
    truncated_at_failure = set()
    for t in range(150):
        _, reward, _, truncated, info = envs.step(envs.action_space.sample())
        for k in np.flatnonzero(info.get("_error", np.zeros(4, bool))):
            errors[int(k)] = info["error"][k]
            if truncated[k]:
                truncated_at_failure.add(int(k))
        if t == 60:
            os.kill(envs.worker_pids[3], signal.SIGKILL)
        assert (reward[envs.failed & ~info.get("_error", np.zeros(4, bool))] == 0).all()
    assert list(envs.failed) == [False, True, True, True]
    assert "boom" in errors[1] and "render broke" in errors[2] and "SIGKILL" in errors[3]
    assert truncated_at_failure == {1, 2, 3}
    envs.close()
    lines = read_manifest(tmp_path)
    failed = {r["env"]: r for r in lines if r["end"] in ("error", "lost")}
    assert "boom" in failed[1]["error"] and failed[1]["video"]
    assert "render broke" in failed[2]["error"]
    if 3 in failed:  # killed mid-episode of a video: the encoder closes it as lost
        assert failed[3]["end"] == "lost"
    for r in lines:
        if r["video"]:
            assert decode(tmp_path / r["video"]).count == r["frames"]
    # env 0 kept going after the others failed.
    assert max(r["episode"] for r in lines if r["env"] == 0) >= 3


def test_raise_is_the_default(tmp_path: Path) -> None:
    envs = rlcapture.CaptureVectorEnv([ok, raises_in_step], tmp_path)
    envs.reset(seed=0)
    with pytest.raises(rlcapture.WorkerError, match="env 1"):
        for _ in range(100):
            envs.step(envs.action_space.sample())
    envs.close()


def test_bad_on_error_value(tmp_path: Path) -> None:
    with pytest.raises(rlcapture.ConfigError, match="on_error"):
        rlcapture.CaptureVectorEnv([ok], tmp_path, on_error="ignore")
