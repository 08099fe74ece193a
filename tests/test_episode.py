"""The one episode lifecycle (EpisodeBook) and the end reasons the manifest holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import read_manifest
from envs_for_tests import NoisyEnv

import rlcapture
from rlcapture._backend.episode import FINISHED, EndReason, EpisodeBook
from rlcapture.triggers import as_schedule


def _book(record: str = "all", limit: int | None = None) -> EpisodeBook:
    return EpisodeBook(3, as_schedule(record), limit)


# -- end reasons ------------------------------------------------------------------
def test_end_reasons_are_the_manifest_strings() -> None:
    assert [r.value for r in EndReason] == ["terminated", "truncated", "reset", "closed", "error", "lost"]
    for reason in EndReason:
        assert reason == reason.value and EndReason(reason.value) is reason
        assert str(reason) == f"{reason}" == f"{reason:>0}" == reason.value
        assert json.dumps({"end": reason}) == json.dumps({"end": reason.value})
        assert hash(reason) == hash(reason.value)


def test_finished_is_terminated_or_truncated() -> None:
    assert set(FINISHED) == {EndReason.TERMINATED, EndReason.TRUNCATED}
    assert "terminated" in FINISHED and "truncated" in FINISHED
    for other in ("reset", "closed", "error", "lost", None, ["terminated"], {"a": 1}):
        assert other not in FINISHED  # never a TypeError, whatever a manifest holds


# -- the lifecycle ----------------------------------------------------------------
def test_reset_cuts_a_recorded_episode() -> None:
    t = _book()
    assert t.cut(EndReason.RESET) is None  # nothing running yet
    assert t.begin(11) == 11 and t.active and t.recording and t.episode == 0
    t.add(1.5)
    t.sent(True)
    t.sent(False)
    record = t.cut(EndReason.RESET)
    assert record is not None and not t.active
    assert record["end"] == "reset" and record["end"] is EndReason.RESET
    assert (record["env"], record["episode"], record["seed"]) == (3, 0, 11)
    assert (record["return"], record["length"], record["dropped"], record["recorded"]) == (1.5, 1, 1, True)
    assert t.cut(EndReason.CLOSED) is None  # an episode ends once


def test_cut_skips_an_episode_never_recorded() -> None:
    """A reset or close of an episode the schedule turned down writes no line..."""
    t = _book("none")
    t.begin(0)
    assert not t.recording
    assert t.cut(EndReason.RESET) is None and not t.active


def test_done_writes_every_episode_within_the_quota() -> None:
    """...but a finished one does, recorded or not, while within the quota."""
    t = _book("none", limit=2)
    lines = []
    for k in range(3):
        t.begin(None)
        t.add(1.0)
        lines.append(t.done(terminated=k != 1))
        assert not t.active
    assert [r and (r["episode"], r["end"], r["recorded"]) for r in lines] == [
        (0, "terminated", False),
        (1, "truncated", False),
        None,  # beyond the quota
    ]
    assert t.done(True) is None  # an episode ends once


def test_end_with_an_error_carries_it() -> None:
    t = _book()
    assert t.end(EndReason.ERROR, error="boom") is None  # nothing running
    t.begin(5)
    record = t.end(EndReason.ERROR, error="RuntimeError: boom")
    assert record is not None and record["end"] == "error" and record["error"] == "RuntimeError: boom"


def test_stats_and_seeds_as_given() -> None:
    """Issue 10: no derived seeds; an unseeded reset keeps its env's generator state instead."""
    t = _book()
    t.begin(100)
    for r in (1.0, 2.0, np.float32(0.5)):
        t.add(r)
    stats = t.stats()
    assert (stats["r"], stats["l"]) == (3.5, 3) and stats["t"] >= 0
    record = t.done(True)
    assert record is not None and record["seed"] == 100 and record["rng"] is None
    assert t.begin(None) is None and t.seed is None and t.rng is None  # no env: no state
    env = NoisyEnv()
    env.reset(seed=5)
    state = env.np_random.bit_generator.state
    assert t.begin(None, env) is None and t.rng == state
    assert t.begin(7, env) == 7 and t.rng is None
    # Beyond a seed plan: neither recorded nor counted.
    assert t.begin(None, env, planned=False) is None and not t.counted and not t.recording
    t.begin(9, env, seed_index=4)
    assert t.counted and t.finish(EndReason.TRUNCATED)["seed_index"] == 4


# -- every front keeps episodes the same way --------------------------------------
def _ends(out: Path) -> list[tuple[int, int, str]]:
    return sorted((r["env"], r["episode"], r["end"]) for r in read_manifest(out))


@pytest.mark.timeout(60)
def test_wrapper_and_batch_end_episodes_alike(tmp_path: Path) -> None:
    """The same story (finish, reset mid-episode, close mid-episode) gives the same lines."""
    story = [(0, 0, "terminated"), (0, 1, "reset"), (0, 2, "closed")]
    out = tmp_path / "wrapper"
    with rlcapture.Recorder(out) as rec:
        env = rlcapture.CaptureWrapper(NoisyEnv(length=2, side=16), rec, 0)
        env.reset(seed=1)
        env.step(0)
        env.step(0)  # terminated
        env.reset()
        env.step(0)
        env.reset()  # cuts episode 1
        env.step(0)
        env.close()  # cuts episode 2
    assert _ends(out) == story

    out = tmp_path / "batch"
    frame = np.zeros((1, 16, 16, 3), np.uint8)
    with rlcapture.Recorder(out) as rec, rlcapture.BatchCapture(rec, 1) as batch:
        batch.reset(frame, seeds=[1])
        batch.step(frame, [1.0], [False], [False])
        batch.step(frame, [1.0], [True], [False])  # terminated
        batch.reset(frame)
        batch.step(frame, [1.0], [False], [False])
        batch.reset(frame)  # cuts episode 1
        batch.step(frame, [1.0], [False], [False])
    assert _ends(out) == story  # closing the batch cut episode 2
