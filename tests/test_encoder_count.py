"""The encoder count chosen when none is given (``encoders="auto"``, the default)."""

from __future__ import annotations

from pathlib import Path

import pytest

import rlcapture
from rlcapture import Recorder
from rlcapture._backend import encoder_count
from rlcapture._backend.encoder_count import ENCODE_MS, RENDER_MS, auto_encoders, usable_cores
from rlcapture.config import RecordConfig

ENVS = (1, 2, 3, 4, 5, 8, 12, 16, 32, 64)


@pytest.mark.parametrize(
    "cores, expected",
    [
        (1, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
        (2, [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]),
        (4, [1, 1, 1, 1, 2, 2, 3, 4, 4, 4]),
        (16, [1, 1, 1, 1, 2, 2, 3, 4, 8, 16]),
        (64, [1, 1, 1, 1, 2, 2, 3, 4, 8, 16]),
    ],
)
def test_the_rule_with_cartpole_costs(cores: int, expected: list[int]) -> None:
    assert [auto_encoders(n, cores) for n in ENVS] == expected
    assert [auto_encoders(n, cores, RENDER_MS, ENCODE_MS) for n in ENVS] == expected


def test_the_rule_follows_the_costs() -> None:
    # encoding as dear as rendering: an encoder per two envs
    assert auto_encoders(8, 8, render_ms=2.0, encode_ms=2.0) == 4
    # ... at most one per core
    assert auto_encoders(32, 8, render_ms=2.0, encode_ms=2.0) == 8
    # cheap encoding (a small frame): one per 31 envs
    assert auto_encoders(64, 16, render_ms=3.0, encode_ms=0.1) == 3
    assert auto_encoders(16, 16, render_ms=3.0, encode_ms=0.1) == 1
    # never more than envs or cores, never fewer than one
    assert auto_encoders(3, 64, render_ms=0.0, encode_ms=5.0) == 3
    assert auto_encoders(64, 2, render_ms=0.0, encode_ms=5.0) == 2
    assert auto_encoders(4, 4, render_ms=0.0, encode_ms=0.0) == 1


def test_outputs_that_need_one_encoder_get_one() -> None:
    assert auto_encoders(64, 64, single=True) == 1
    assert RecordConfig(mosaic=4).single_encoder()
    assert RecordConfig(keep="worst:3").single_encoder()
    assert not RecordConfig(keep="failures").single_encoder()


def test_unknown_envs_count_as_cores() -> None:
    cores = usable_cores()
    assert auto_encoders(None) == auto_encoders(cores, cores)


def test_auto_is_the_default_and_the_recorder_applies_it(tmp_path: Path) -> None:
    assert RecordConfig().encoders == "auto"
    cores = usable_cores()
    with Recorder(tmp_path / "a", envs=64) as rec:
        assert rec.encoders == auto_encoders(64, cores)
        assert len(rec.encoder_pids) == rec.encoders
    with Recorder(tmp_path / "b", envs=64, mosaic=4) as rec:
        assert rec.encoders == 1
    with Recorder(tmp_path / "c", encoders=1, envs=64) as rec:
        assert rec.encoders == 1
    with pytest.raises(rlcapture.ConfigError, match="envs must be a positive integer"):
        Recorder(tmp_path / "d", envs=0)


def test_the_vector_env_tells_its_recorder_how_many_envs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Encoding as the only cost: the rule asks for an encoder per busy core,
    # so the count shows the vector env passed its 3 envs (1 core: 1).
    monkeypatch.setattr(encoder_count, "RENDER_MS", 0.0)
    envs = rlcapture.make_vec("CartPole-v1", 3, tmp_path / "v")
    try:
        assert envs.recorder is not None
        assert envs.recorder.encoders == min(3, usable_cores()) == auto_encoders(3)
    finally:
        envs.close()
