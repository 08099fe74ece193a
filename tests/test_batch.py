"""BatchCapture: a simulator that renders a batch of frames in one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import LOSSLESS, by_env, decode, read_manifest

import rlcapture
from rlcapture import BatchCapture, Recorder


def test_batch_round_trip_with_same_step_resets(tmp_path: Path) -> None:
    n, h, w = 4, 24, 30
    rng = np.random.default_rng(0)
    lengths = {i: 3 + 2 * i for i in range(n)}  # env i ends every 3 + 2i steps
    sent: dict[tuple[int, int], list[np.ndarray]] = {}
    with Recorder(tmp_path, fps=20, **LOSSLESS) as rec:
        cap = BatchCapture(rec, n, record=lambda env, ep: ep % 2 == 0)
        episode = np.zeros(n, int)
        step = np.zeros(n, int)
        frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        cap.reset(frames, seeds=list(range(n)))
        for i in range(n):
            sent[(i, 0)] = [frames[i].copy()]
        for _ in range(20):
            frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
            step += 1
            done = np.array([step[i] == lengths[i] for i in range(n)])
            stats = cap.step(frames, np.ones(n), done, np.zeros(n, bool))
            for i in range(n):
                sent[(i, episode[i])].append(frames[i].copy())
            assert (stats["_episode"] == done).all()
            assert (stats["l"][done] == step[done]).all()
            if done.any():
                ids = np.flatnonzero(done)
                first = rng.integers(0, 256, (len(ids), h, w, 3), dtype=np.uint8)
                episode[ids] += 1
                step[ids] = 0
                cap.reset(first, env_ids=ids)
                for k, i in enumerate(ids):
                    sent[(i, episode[i])] = [first[k].copy()]
                assert list(cap.recording[ids]) == [e % 2 == 0 for e in episode[ids]]
        cap.close()
    for env, records in by_env(read_manifest(tmp_path)).items():
        for r in records:
            assert bool(r["video"]) == (r["episode"] % 2 == 0)
            if not r["video"]:
                continue
            d = decode(tmp_path / r["video"], keep=True)
            expected = sent[(env, r["episode"])]
            assert d.count == len(expected) == r["frames"]
            for got, want in zip(d.frames, expected):
                assert np.array_equal(got, want)
            if r["end"] == "terminated":
                assert r["length"] == lengths[env] and r["frames"] == r["length"] + 1
            if r["episode"] == 0:
                assert r["seed"] == env
            else:
                assert r["seed"] is None  # the simulator's own seeding is not known


def test_batch_misuse_is_explained(tmp_path: Path) -> None:
    with Recorder(tmp_path) as rec:
        cap = BatchCapture(rec, 2)
        frames = np.zeros((2, 8, 8, 3), np.uint8)
        cap.reset(frames)
        with pytest.raises(rlcapture.ConfigError, match="frames"):
            cap.step(np.zeros((3, 8, 8, 3), np.uint8), np.ones(2), [False, False], [False, False])
        cap.step(frames, np.ones(2), [True, False], [False, False])
        with pytest.raises(rlcapture.ConfigError, match="reset"):
            cap.step(frames, np.ones(2), [False, False], [False, False])
        with pytest.raises(rlcapture.ConfigError, match="env_ids"):
            cap.reset(frames[:1], env_ids=[5])
        with pytest.raises(rlcapture.FrameError):
            cap.reset(np.full((1, 8, 8, 3), 2.0, np.float32), env_ids=[0])  # floats outside [0, 1]
        cap.close()
        with pytest.raises(rlcapture.ClosedError):
            cap.reset(frames)
