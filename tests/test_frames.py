"""Frames as ``render()`` gives them: uint8 untouched, floats in [0, 1] scaled, the rest refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import LOSSLESS, decode, read_manifest

import rlcapture
from rlcapture._backend.frames import as_frame


def test_uint8_frames_are_passed_as_they_are() -> None:
    frame = np.zeros((4, 6, 3), np.uint8)
    assert as_frame(frame, "env 0") is frame  # no copy, no conversion
    rgba = np.zeros((4, 6, 4), np.uint8)
    assert np.shares_memory(as_frame(rgba, "env 0"), rgba)  # alpha dropped by a view


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_float_frames_in_0_1_are_scaled_to_uint8(dtype: Any) -> None:
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgb = np.stack([levels, levels[::-1], levels.T], axis=-1)
    got = as_frame((rgb / 255.0).astype(dtype), "env 0")
    assert got.dtype == np.uint8 and got.shape == (16, 16, 3)
    tolerance = 1 if dtype == np.float16 else 0  # float16 holds 255 levels only roughly
    assert np.abs(got.astype(int) - rgb).max() <= tolerance
    gray = as_frame(np.full((3, 5), 0.5, dtype), "env 0")
    assert gray.shape == (3, 5, 1) and gray.dtype == np.uint8 and int(gray[0, 0, 0]) in (127, 128)
    rgba = np.ones((2, 2, 4), dtype)
    rgba[..., 3] = 7.0  # alpha outside [0, 1] is dropped before the range is checked
    assert (as_frame(rgba, "env 0") == 255).all()


@pytest.mark.parametrize(
    ("values", "found"),
    [((0.0, 255.0), r"\[0, 255\]"), ((-0.5, 1.0), r"\[-0.5, 1\]"), ((0.0, np.nan), "NaN")],
)
def test_float_frames_outside_0_1_are_refused_in_one_line(
    values: tuple[float, float], found: str
) -> None:
    frame = np.zeros((4, 4, 3), np.float32)
    frame[0, 0, 0], frame[1, 1, 1] = values
    with pytest.raises(
        rlcapture.FrameError,
        match=rf"env 2 step 5: float frames must hold values in \[0, 1\], this one holds {found}",
    ) as info:
        as_frame(frame, "env 2 step 5")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int64, bool])
def test_other_dtypes_are_refused(dtype: Any) -> None:
    with pytest.raises(rlcapture.FrameError, match="frames must be uint8"):
        as_frame(np.zeros((4, 4, 3), dtype), "env 0")


class FloatCartPole(gym.Wrapper):
    """CartPole rendering floats in [0, 1], as SB3's test envs and some custom renderers do."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=6))

    def render(self) -> Any:
        return self.env.render().astype(np.float32) / 255.0


def test_a_float_rendering_env_records_the_frames_it_renders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    envs = rlcapture.CaptureVectorEnv([FloatCartPole] * 2, out, **LOSSLESS)
    try:
        envs.reset(seed=3)
        for _ in range(6):
            envs.step(np.zeros(2, int))
    finally:
        envs.close()
    records = [r for r in read_manifest(out) if r["episode"] == 0]
    assert len(records) == 2
    for r in records:
        check = gym.make("CartPole-v1", render_mode="rgb_array", max_episode_steps=6)
        check.reset(seed=3 + r["env"])
        want = [check.render()]
        for _ in range(r["length"]):
            check.step(0)
            want.append(check.render())
        check.close()
        d = decode(out / r["video"], keep=True)
        assert d.count == len(want) == r["frames"]
        for shown, rendered in zip(
            d.frames, want
        ):  # lossless: the scaled floats are the uint8 frames
            assert np.array_equal(shown, rendered)
