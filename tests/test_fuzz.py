"""Property tests: random frames, schedules and episode lengths thrown at the engine.

Each example starts its own lossless :class:`~rlcapture.Recorder`, submits
frames through :class:`~rlcapture.BatchCapture` or a bare
:class:`~rlcapture._backend.producer.FrameProducer` (valid ones of random
sizes and formats, and invalid ones), closes, and then checks the output
against what was submitted: one manifest line per episode, a video exactly
for the episodes the schedule picked, each decoding to the frames sent (pixel
for pixel), nothing dropped. An invalid frame raises ``FrameError`` and
changes nothing the videos show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import LOSSLESS, decode, read_manifest
from hypothesis import given, settings
from hypothesis import strategies as st

import rlcapture
from rlcapture._backend.manifest import FIELDS
from rlcapture._backend.producer import FrameProducer

pytestmark = pytest.mark.timeout(120)

EXAMPLES = settings(max_examples=15, deadline=None, derandomize=True)


# -- frames ----------------------------------------------------------------------------
def pixels(h: int, w: int, channels: int | None, env: int, episode: int, step: int) -> np.ndarray:
    """A frame that differs per (env, episode, step) and per pixel; ``None`` channels is 2-D gray."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = (3 * yy + 5 * xx + 40 * env + 17 * episode + 11 * step) % 256
    c = 1 if channels is None else channels
    frame = np.stack([(base + 60 * k) % 256 for k in range(c)], axis=-1).astype(np.uint8)
    return frame[:, :, 0] if channels is None else frame


def as_rgb(frame: np.ndarray) -> np.ndarray:
    """What a video shows for a submitted frame: RGB (alpha dropped, gray repeated)."""
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    return frame[:, :, :3]


INVALID = [
    "float32",
    "bool",
    "int16",
    "two-channels",
    "five-channels",
    "zero-height",
    "zero-width",
    "one-dim",
    "four-dim",
    "bigger",  # valid on its own, but the size changed mid-episode
]


def invalid_frame(kind: str, h: int, w: int) -> Any:
    good = np.zeros((h, w, 3), np.uint8)
    return {
        "float32": good.astype(np.float32) + 2,  # floats outside [0, 1] (in it they are scaled)
        "bool": good.astype(bool),
        "int16": good.astype(np.int16),
        "two-channels": np.zeros((h, w, 2), np.uint8),
        "five-channels": np.zeros((h, w, 5), np.uint8),
        "zero-height": np.zeros((0, w, 3), np.uint8),
        "zero-width": np.zeros((h, 0, 3), np.uint8),
        "one-dim": np.zeros(w, np.uint8),
        "four-dim": np.zeros((1, h, w, 3), np.uint8),
        "bigger": np.zeros((h + 2, w, 3), np.uint8),
    }[kind]


# -- what the output must say ------------------------------------------------------------
@dataclass
class Expected:
    """Per (env, episode): the frames sent, how it ended, whether it was recorded."""

    frames: dict[tuple[int, int], list[np.ndarray]] = field(default_factory=dict)
    ends: dict[tuple[int, int], str] = field(default_factory=dict)
    lengths: dict[tuple[int, int], int] = field(default_factory=dict)
    recorded: dict[tuple[int, int], bool] = field(default_factory=dict)


def check(out: Path, want: Expected, *, check_lengths: set[tuple[int, int]]) -> None:
    records = read_manifest(out)  # complete JSON lines
    got = {(r["env"], r["episode"]): r for r in records}
    assert len(got) == len(records), "an episode has two lines"
    assert set(got) == set(want.ends), (sorted(got), sorted(want.ends))
    for key, r in got.items():
        assert all(f in r for f in FIELDS), r
        assert r["end"] == want.ends[key], (key, r)
        assert r["dropped"] == 0, r  # lossless: nothing is ever dropped
        sent = want.frames.get(key, [])
        if not want.recorded[key]:
            assert r["video"] is None and r["frames"] == 0, r
            continue
        assert r["video"] == f"videos/env{key[0]}-episode{key[1]}.mp4", r
        assert r["frames"] == len(sent), (key, r, len(sent))
        if key in check_lengths and r["end"] in ("terminated", "truncated"):
            assert r["length"] == want.lengths[key] and r["frames"] == r["length"] + 1, r
        d = decode(out / r["video"], keep=True)
        assert d.count == len(sent)
        for k, (shown, frame) in enumerate(zip(d.frames, sent)):
            h, w = frame.shape[:2]
            assert shown.shape[:2] == (h + (h & 1), w + (w & 1))  # padded to even sides
            assert np.array_equal(shown[:h, :w], as_rgb(frame)), (key, k)
    listed = {r["video"] for r in records if r["video"]}
    assert {f"videos/{p.name}" for p in (out / "videos").iterdir()} == listed


# -- BatchCapture: random batches, schedules and episode lengths ----------------------------
SCHEDULES = {
    "all": "all",
    "none": "none",
    "every:2": "every:2",
    "odd": lambda env, episode: (env + episode) % 2 == 1,
}


@st.composite
def batch_runs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 3))
    return {
        "n": n,
        "h": draw(st.integers(1, 20)),
        "w": draw(st.integers(1, 20)),
        "channels": draw(st.sampled_from([3, 4, 1, None])),
        "schedule": draw(st.sampled_from(sorted(SCHEDULES))),
        # Per env: episode lengths in steps and how each ends; the env's last
        # episode is still running when the capture closes.
        "plans": [
            draw(
                st.lists(
                    st.tuples(st.integers(1, 5), st.sampled_from(["terminated", "truncated"])),
                    min_size=0,
                    max_size=4,
                )
            )
            for _ in range(n)
        ],
        "extra": draw(st.integers(0, 3)),  # steps after the longest plan
        # Steps at which an invalid batch is offered first.
        "invalid": draw(st.dictionaries(st.integers(0, 24), st.sampled_from(INVALID), max_size=3)),
    }


@EXAMPLES
@given(run=batch_runs())
def test_batch_capture_matches_what_was_submitted(tmp_path_factory, run: dict[str, Any]) -> None:
    out = tmp_path_factory.mktemp("batch")
    n, h, w, channels = run["n"], run["h"], run["w"], run["channels"]
    schedule = SCHEDULES[run["schedule"]]
    decide = rlcapture.triggers.as_schedule(schedule, envs=n)
    # Each env's step-by-step plan: the end flag of every step.
    timeline: list[list[str | None]] = []
    for plan in run["plans"]:
        steps: list[str | None] = []
        for length, end in plan:
            steps += [None] * (length - 1) + [end]
        timeline.append(steps)
    total = max(len(t) for t in timeline) + run["extra"] + 1
    for t in timeline:
        t += [None] * (total - len(t))

    want = Expected()
    episode = [0] * n
    step = [0] * n
    touched: set[tuple[int, int]] = set()  # episodes a failed step went through

    def begin(i: int) -> np.ndarray:
        key = (i, episode[i])
        want.recorded[key] = bool(decide(i, episode[i]))
        frame = pixels(h, w, channels, i, episode[i], 0)
        if want.recorded[key]:
            want.frames[key] = [frame]
        return frame

    with rlcapture.Recorder(out, **LOSSLESS) as rec:
        cap = rlcapture.BatchCapture(rec, n, record=schedule)
        cap.reset(np.stack([begin(i) for i in range(n)]))
        for t in range(total):
            if t in run["invalid"]:
                bad = invalid_frame(run["invalid"][t], h, w)
                batch = np.stack([bad] * n)
                if cap.recording.any():
                    with pytest.raises(rlcapture.FrameError):
                        cap.step(batch, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool))
                    touched.update((i, episode[i]) for i in range(n))
                # else: frames of unrecorded envs are never looked at; skip the step
            for i in range(n):
                step[i] += 1
            frames = np.stack([pixels(h, w, channels, i, episode[i], step[i]) for i in range(n)])
            ends = [timeline[i][t] for i in range(n)]
            cap.step(
                frames,
                np.ones(n),
                np.array([e == "terminated" for e in ends]),
                np.array([e == "truncated" for e in ends]),
            )
            for i in range(n):
                key = (i, episode[i])
                if want.recorded[key]:
                    want.frames[key].append(frames[i])
            done = [i for i in range(n) if ends[i]]
            for i in done:
                key = (i, episode[i])
                want.ends[key] = ends[i]
                want.lengths[key] = step[i]
                episode[i] += 1
                step[i] = 0
            if done:
                cap.reset(np.stack([begin(i) for i in done]), env_ids=done)
        cap.close()
        for i in range(n):  # running episodes end as "closed", if recorded
            key = (i, episode[i])
            if want.recorded[key]:
                want.ends[key] = "closed"
    assert rec.summary["frames"] == sum(len(f) for f in want.frames.values())
    check(out, want, check_lengths=set(want.ends) - touched)


def test_failed_batch_step_counts_no_step(tmp_path: Path) -> None:
    with rlcapture.Recorder(tmp_path / "out", **LOSSLESS) as rec:
        cap = rlcapture.BatchCapture(rec, 2)
        frames = np.zeros((2, 8, 8, 3), np.uint8)
        cap.reset(frames)
        cap.step(frames, np.ones(2), np.zeros(2, bool), np.zeros(2, bool))
        with pytest.raises(rlcapture.FrameError):
            cap.step(frames.astype(np.float32) + 2, np.ones(2), np.zeros(2, bool), np.zeros(2, bool))
        cap.step(frames, np.ones(2), np.ones(2, bool), np.zeros(2, bool))
        cap.close()
    for r in read_manifest(tmp_path / "out"):
        assert r["length"] == 2 and r["frames"] == 3 and r["return"] == 2.0, r


# -- FrameProducer: frame sizes changing between episodes, invalid frames in between -----------
frame_sizes = st.tuples(st.integers(1, 48), st.integers(1, 48), st.sampled_from([3, 4, 1, None]))


@st.composite
def producer_runs(
    draw: st.DrawFn,
) -> list[list[tuple[tuple[int, int, int | None], int, list[str]]]]:
    """Per env, its episodes: (frame size, frames, invalid frames offered before the last)."""
    return [
        draw(
            st.lists(
                st.tuples(
                    frame_sizes,
                    st.integers(1, 6),
                    st.lists(st.sampled_from([*INVALID, "none", "list"]), max_size=2),
                ),
                min_size=1,
                max_size=3,
            )
        )
        for _ in range(draw(st.integers(1, 2)))
    ]


@EXAMPLES
@given(plan=producer_runs(), slots=st.integers(1, 4))
def test_producer_with_changing_sizes_and_bad_frames(tmp_path_factory, plan, slots: int) -> None:
    out = tmp_path_factory.mktemp("producer")
    want = Expected()
    with rlcapture.Recorder(out, slots=slots, **LOSSLESS) as rec:
        producer = FrameProducer(rec.endpoint, range(len(plan)), name="fuzz")
        try:
            # Envs take turns, one episode each, so rings grow and shrink between them.
            for k in range(max(len(p) for p in plan)):
                for env, episodes in enumerate(plan):
                    if k >= len(episodes):
                        continue
                    (h, w, channels), count, bad = episodes[k]
                    key = (env, k)
                    want.recorded[key] = True
                    want.frames[key] = []
                    for s in range(count):
                        if s == count - 1:
                            for kind in bad:
                                frame = {"none": None, "list": [[0]]}.get(kind)
                                if frame is None and kind not in ("none", "list"):
                                    frame = invalid_frame(kind, h, w)
                                if kind == "bigger" and s == 0:
                                    continue  # a new size is fine at an episode's first frame
                                with pytest.raises(rlcapture.FrameError):
                                    producer.frame(env, k, s, frame)
                        frame = pixels(h, w, channels, env, k, s)
                        assert producer.frame(env, k, s, frame)
                        want.frames[key].append(frame)
                    producer.end(
                        {
                            "env": env,
                            "episode": k,
                            "length": count - 1,
                            "dropped": 0,
                            "end": "terminated",
                        }
                    )
                    want.ends[key] = "terminated"
                    want.lengths[key] = count - 1
        finally:
            producer.close()
    check(out, want, check_lengths=set(want.ends))
