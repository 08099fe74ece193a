"""RecordConfig: one frozen, validated configuration taken by every front and the CLI."""

from __future__ import annotations

import ast
import dataclasses
import pickle
from pathlib import Path

import pytest
from conftest import REPO

import rlcapture
from rlcapture import ConfigError, KeepRule, RecordConfig
from rlcapture._backend.channel import Endpoint
from rlcapture._backend.producer import FrameProducer
from rlcapture.cli import build_parser
from rlcapture.cli.record_args import record_config
from rlcapture.config import (
    DEFAULT_SLOTS,
    DEFAULT_TIMEOUT,
    ImagesConfig,
    TransportConfig,
    VideoConfig,
)
from rlcapture.envs import make_env_fn

pytestmark = pytest.mark.timeout(120)


# -- building ------------------------------------------------------------------------------
def test_defaults() -> None:
    c = RecordConfig()
    assert c.video == VideoConfig()
    assert (c.video.codec, c.video.crf, c.video.pix_fmt, c.video.fps) == (
        "libx264",
        23,
        "yuv420p",
        None,
    )
    assert c.images == ImagesConfig(videos=True, frames=None, keyframes=False)
    assert c.transport == TransportConfig(drop=False, slots=DEFAULT_SLOTS, timeout=DEFAULT_TIMEOUT)
    assert c.keep == (KeepRule("all"),)
    assert (c.keep_seed, c.encoders, c.mosaic, c.name_prefix, c.loggers) == (0, "auto", None, "", ())


def test_flat_keywords_fill_the_groups() -> None:
    flat = RecordConfig(
        codec="libx264rgb",
        pix_fmt="rgb24",
        crf=0,
        fps=15,
        frames=2,
        keyframes=5,
        drop=True,
        slots=3,
    )
    grouped = RecordConfig(
        video=VideoConfig(codec="libx264rgb", pix_fmt="rgb24", crf=0, fps=15),
        images=ImagesConfig(frames=2, keyframes=5),
        transport=TransportConfig(drop=True, slots=3),
    )
    assert flat == grouped
    assert RecordConfig.from_options(drop=True, slots=3).transport == TransportConfig(
        drop=True, slots=3
    )
    # Flat keywords given with a group apply over it.
    mixed = RecordConfig(video=VideoConfig(crf=10), codec="libx265")
    assert (mixed.video.crf, mixed.video.codec) == (10, "libx265")
    assert flat.images.keyframe_every == 5 and ImagesConfig(keyframes=True).keyframe_every is None


def test_frozen_hashable_picklable() -> None:
    c = RecordConfig(
        keep="worst:2,failures", drop=True, loggers=["wandb:project"], name_prefix="run1-"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.encoders = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.transport.drop = False  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(c)) == c
    assert hash(c) == hash(
        RecordConfig(
            keep="worst:2,failures", drop=True, loggers=("wandb:project",), name_prefix="run1-"
        )
    )
    assert c.keep == (KeepRule("worst", count=2), KeepRule("failures"))
    assert c.loggers == ("wandb:project",)  # a list is kept as a tuple
    endpoint = Endpoint("addr", "tok", c.transport)
    assert pickle.loads(pickle.dumps(endpoint)) == endpoint


def test_replace_validates_and_leaves_the_original() -> None:
    c = RecordConfig(crf=30, drop=True)
    d = c.replace(crf=18, keep="best:1")
    assert (d.video.crf, d.transport.drop, d.keep) == (18, True, (KeepRule("best", count=1),))
    assert (c.video.crf, c.keep) == (30, (KeepRule("all"),))
    assert c.replace() is c
    assert c.replace(transport=TransportConfig(slots=2)).transport == TransportConfig(slots=2)
    with pytest.raises(ConfigError, match="crf must be an integer from 0 to 63"):
        c.replace(crf=99)
    with pytest.raises(ConfigError, match="ranks episodes across the run"):
        d.replace(encoders=2)
    with pytest.raises(ConfigError, match="unknown option 'observation_mode'"):
        c.replace(observation_mode="rgb")


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fps": 0}, "fps must be a number in"),
        ({"fps": float("nan")}, "fps must be a number in"),
        ({"fps": True}, "fps must be a number in"),
        ({"crf": 64}, "crf must be an integer from 0 to 63"),
        ({"crf": 1.5}, "crf must be an integer from 0 to 63"),
        ({"gop": 0}, "gop must be a positive integer"),
        ({"codec": "no-such-codec"}, "FFmpeg has no encoder 'no-such-codec'"),
        ({"codec": "libx264rgb"}, "does not take pixel format 'yuv420p'"),
        ({"preset": 3}, "preset must be a string"),
        ({"videos": False}, "videos=False leaves nothing to write"),
        ({"videos": "no"}, "videos must be True or False"),
        ({"frames": 0}, "frames must be a positive integer"),
        ({"keyframes": -2}, "keyframes must be True"),
        ({"drop": "yes"}, "drop must be True or False"),
        ({"slots": 0}, "slots must be an integer from 1 to 4096"),
        ({"slots": 5000}, "slots must be an integer from 1 to 4096"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"timeout": "5"}, "timeout must be positive"),
        ({"timeout": float("inf")}, "timeout must be positive"),
        ({"keep": "worst"}, "worst:K"),
        ({"keep_seed": 1.5}, "keep_seed must be an integer"),
        ({"encoders": 0}, "encoders must be .auto. or an integer from 1 to 64"),
        ({"encoders": True}, "encoders must be .auto. or an integer from 1 to 64"),
        ({"mosaic": 0}, "mosaic must be the number of env tiles"),
        ({"mosaic": 1025}, "mosaic must be the number of env tiles"),
        ({"encoders": 2, "mosaic": 4}, "mosaic needs every env's frames in one encoder"),
        ({"encoders": 2, "mosaic": True}, "mosaic needs every env's frames in one encoder"),
        ({"encoders": 2, "keep": "worst:3"}, "'worst 3 by return' ranks episodes across the run"),
        ({"name_prefix": "a/b"}, "name prefix"),
        ({"name_prefix": "p" * 101}, "name prefix must be at most 100 characters"),
        ({"loggers": "wandb"}, "loggers must be a list of tracker specs"),
        ({"loggers": ("wandb", "")}, "loggers must be a list of tracker specs"),
        ({"video": "libx264"}, "video must be a VideoConfig"),
    ],
)
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        RecordConfig(**options)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)  # one line


def test_good_edges() -> None:
    assert RecordConfig(mosaic=False).mosaic is None
    assert RecordConfig(mosaic=True).mosaic is True  # a vector env makes it a number
    assert RecordConfig(mosaic=1024).mosaic_tiles() == 1024
    assert RecordConfig(encoders=64, keep="failures,sample:0.5").encoders == 64
    assert RecordConfig(videos=False, keyframes=True).images.videos is False
    assert RecordConfig(timeout=5).transport.timeout == 5.0
    assert isinstance(RecordConfig(timeout=5).transport.timeout, float)
    with pytest.raises(
        ConfigError, match="mosaic must be the number of env tiles, from 1 to 1024, got True"
    ):
        RecordConfig(mosaic=True).mosaic_tiles()


# -- unknown keywords --------------------------------------------------------------------------
def test_unknown_keyword_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        RecordConfig(observation_mode="rgb")
    text = str(info.value)
    assert text.startswith("unknown option 'observation_mode'; valid options: ")
    for name in (
        "codec",
        "crf",
        "drop",
        "slots",
        "timeout",
        "keep",
        "keep_seed",
        "mosaic",
        "loggers",
    ):
        assert name in text
    with pytest.raises(ConfigError, match=r"unknown option 'codek' \(did you mean 'codec'\?\)"):
        RecordConfig.from_options(codek="libx265")
    with pytest.raises(ConfigError, match="unknown options 'a', 'b'"):
        RecordConfig(a=1, b=2)


def test_recorder_unknown_keyword(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="unknown option 'observation_mode'") as info:
        rlcapture.Recorder(out, observation_mode="rgb")
    assert "overwrite" in str(info.value) and "codec" in str(info.value)
    with pytest.raises(ConfigError, match="config must be a RecordConfig"):
        rlcapture.Recorder(out, {"codec": "libx264"})  # type: ignore[arg-type]
    assert not out.exists()


def test_vector_env_unknown_keyword(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fn = make_env_fn("CartPole-v1")
    # (observation_mode was this test's unknown keyword until the vector env took it, as
    # AsyncVectorEnv does; render_fps is one neither the vector env nor the config takes.)
    with pytest.raises(ConfigError, match="unknown option 'render_fps'") as info:
        rlcapture.CaptureVectorEnv([fn, fn], out, render_fps=30)
    text = str(info.value)
    # Both lists: the vector env's own options and the config's.
    assert "envs_per_worker" in text and "(CaptureVectorEnv)" in text
    assert "codec" in text and "(RecordConfig)" in text
    with pytest.raises(ConfigError, match=r"did you mean 'envs_per_worker'"):
        rlcapture.make_vec("CartPole-v1", 2, out, envs_per_workers=2)
    with pytest.raises(ConfigError, match="unknown option 'render_fps'"):
        rlcapture.make_vec("CartPole-v1", 2, out, render_fps=30)
    assert not out.exists()  # refused before anything was made


def test_options_with_a_running_recorder_are_refused(tmp_path: Path) -> None:
    fn = make_env_fn("CartPole-v1")
    with rlcapture.Recorder(tmp_path / "out") as rec:
        with pytest.raises(ConfigError, match="codec apply when out is a folder"):
            rlcapture.CaptureVectorEnv([fn], rec, codec="libx265")
        with pytest.raises(ConfigError, match="config apply when out is a folder"):
            rlcapture.CaptureVectorEnv([fn], rec, config=RecordConfig())


# -- the fronts take it ---------------------------------------------------------------------------
def test_recorder_merges_options_over_config(tmp_path: Path) -> None:
    base = RecordConfig(crf=30, drop=True, slots=3, timeout=20, keep="failures", name_prefix="r-")
    with rlcapture.Recorder(tmp_path / "out", base, crf=18) as rec:
        assert rec.config == base.replace(crf=18)
        assert (rec.video.crf, rec.video.codec) == (18, "libx264")
        assert rec.keep == (KeepRule("failures"),) and rec.name_prefix == "r-"
        assert rec.timeout == 20.0
        # The producers' part rides in the endpoint and is read by attribute.
        assert rec.endpoint.transport == TransportConfig(drop=True, slots=3, timeout=20)
        assert pickle.loads(pickle.dumps(rec.endpoint)) == rec.endpoint
        producer = FrameProducer(rec.endpoint, [0])
        try:
            assert (producer.drop, producer.slots, producer.timeout) == (True, 3, 20.0)
        finally:
            producer.close()
        producer = FrameProducer(rec.endpoint, [1], drop=False, slots=5)  # a producer may override
        try:
            assert (producer.drop, producer.slots) == (False, 5)
        finally:
            producer.close()


def test_recorder_refuses_an_unresolved_mosaic(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="mosaic must be the number of env tiles, from 1 to 1024, got True"
    ):
        rlcapture.Recorder(tmp_path / "out", mosaic=True)
    assert not (tmp_path / "out").exists()


def test_vector_env_takes_a_config_and_resolves_mosaic(tmp_path: Path) -> None:
    fn = make_env_fn("CartPole-v1")
    config = RecordConfig(mosaic=True, crf=28)
    envs = rlcapture.CaptureVectorEnv(
        [fn] * 3, tmp_path / "out", config=config, record="none", first_env_index=2
    )
    try:
        assert envs.recorder is not None
        assert envs.recorder.config == config.replace(mosaic=5)  # a tile per env: 2 + 3
        assert envs.recorder.mosaic == 5
    finally:
        envs.close()
    envs = rlcapture.make_vec(
        "CartPole-v1", 2, tmp_path / "vec", record="none", config=config, mosaic=False, drop=True
    )
    try:
        assert envs.recorder is not None
        assert envs.recorder.config == config.replace(mosaic=None, drop=True)
    finally:
        envs.close()


# -- the CLI builds the same config --------------------------------------------------------------
def test_cli_builds_the_same_config() -> None:
    args = build_parser().parse_args(
        [
            "record",
            "CartPole-v1",
            "--fps", "15",
            "--codec", "libx264",
            "--crf", "30",
            "--no-video",
            "--frames", "4",
            "--keyframes", "7",
            "--keep", "worst:2,best:1",
            "--mosaic",
            "--drop",
            "--encoders", "1",
        ]
    )  # fmt: skip
    expected = RecordConfig(
        fps=15.0,
        codec="libx264",
        crf=30,
        videos=False,
        frames=4,
        keyframes=7,
        keep="worst:2,best:1",
        keep_seed=9,
        mosaic=True,
        drop=True,
        encoders=1,
    )
    assert record_config(args, keep_seed=9) == expected
    plain = build_parser().parse_args(["record", "CartPole-v1"])
    assert record_config(plain) == RecordConfig()
    keyframes = build_parser().parse_args(["record", "--keyframes", "--encoders", "3"])
    assert record_config(keyframes) == RecordConfig(keyframes=True, encoders=3)


# -- layering ------------------------------------------------------------------------------------
def test_config_sits_under_the_engine() -> None:
    """config.py imports the errors, the keep and tracker-spec grammars, nothing of the fronts or tools."""
    tree = ast.parse((REPO / "rlcapture" / "config.py").read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level and node.module
    }
    assert imported <= {"errors", "_backend.keep", "_backend.uploads", "_backend.video"}, imported
