"""The uploads package without a tracker: its pipe's messages, its registry, its process's reply.

The trackers themselves, for real, are in ``test_trackers.py``.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

from rlcapture import ConfigError, RecordConfig
from rlcapture._backend.uploads import KINDS, Tracker, Uploader, adapter_class, parse_tracker
from rlcapture._backend.uploads.messages import (
    Finish,
    Follow,
    Report,
    Sent,
    TrackerReport,
    UploaderFailed,
    decode,
    encode,
)
from rlcapture._backend.uploads.registry import closest_kind

pytestmark = pytest.mark.timeout(120)


# -- the pipe's messages ---------------------------------------------------------------
EXAMPLES = [
    Follow("/runs/a/episodes.jsonl", {}),
    Follow("/runs/step-64/episodes.jsonl", {"timestep": 64}),
    Finish(),
    Report({}),
    Report(
        {
            "wandb:proj": TrackerReport([Sent("/m.jsonl", 0, 1, "stats")], None),
            "tensorboard": TrackerReport(
                [Sent("/m.jsonl", 0, 1, "stats"), Sent("/m.jsonl", 0, 1, "video")],
                "ConnectionError: refused",
            ),
        }
    ),
    UploaderFailed("RuntimeError: boom", "Traceback ..."),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_messages_round_trip_by_type_and_field(message) -> None:
    raw = encode(message)
    assert isinstance(raw, bytes)
    back = decode(raw)
    assert type(back) is type(message) and back == message
    for name in type(message)._fields:
        assert getattr(back, name) == getattr(message, name)


def test_a_report_reads_by_name() -> None:
    (message,) = [m for m in EXAMPLES if isinstance(m, Report) and m.trackers]
    back = decode(encode(message))
    assert isinstance(back, Report)
    tb = back.trackers["tensorboard"]
    assert type(tb) is TrackerReport and tb.error == "ConnectionError: refused"
    assert [(s.env, s.episode, s.part) for s in tb.sent] == [(0, 1, "stats"), (0, 1, "video")]
    assert all(type(s) is Sent for s in tb.sent)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not pickle",
        pickle.dumps(("follow", "/m.jsonl", {})),  # the old positional tuple
        pickle.dumps((0, "/m.jsonl")),  # Follow, one field short
        pickle.dumps((1, "extra")),  # Finish with a field
        pickle.dumps((99,)),
        pickle.dumps((-1,)),
        pickle.dumps(42),
    ],
)
def test_what_is_not_a_message_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not an uploader message"):
        decode(raw)


# -- the registry ----------------------------------------------------------------------
def test_every_kind_names_an_adapter_and_its_package() -> None:
    assert list(KINDS) == ["wandb", "tensorboard", "mlflow"]
    for name, kind in KINDS.items():
        assert kind.name == name and kind.form.startswith(name)
        module, sep, cls = kind.adapter.partition(":")
        assert sep and module == f"rlcapture.trackers.{name}" and cls.endswith("Tracker")
        assert parse_tracker(name).extra == f'pip install "rlcapture[{kind.extra}]"'


def test_a_registered_kind_resolves_to_its_adapter_class() -> None:
    pytest.importorskip("tensorboard")
    from rlcapture.trackers.tensorboard import TensorBoardTracker

    cls = adapter_class("tensorboard")
    assert cls is TensorBoardTracker and issubclass(cls, Tracker)


def test_resolving_imports_nothing_until_asked(subprocess_env) -> None:
    """Importing the package (as the recorder does) loads no adapter and no tracker package."""
    import subprocess

    code = (
        "import sys, rlcapture._backend.uploads\n"
        "print(sorted(m for m in sys.modules if m.startswith('rlcapture.trackers')"
        " or m in ('wandb', 'mlflow', 'tensorboard')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_unregistered_kind_is_refused_with_a_suggestion() -> None:
    assert closest_kind("wandbb") == "wandb"
    assert closest_kind("TensorBoard") == "tensorboard"
    assert closest_kind("neptune") is None
    with pytest.raises(ConfigError) as info:
        RecordConfig(loggers=["wandbb"])
    assert str(info.value) == (
        "unknown tracker 'wandbb' in 'wandbb' (did you mean 'wandb'?); "
        "use wandb[:PROJECT], tensorboard[:DIR] or mlflow[:TRACKING_URI]"
    )
    with pytest.raises(ConfigError) as info:
        RecordConfig(loggers=["neptune:x"])
    assert str(info.value) == (
        "unknown tracker 'neptune' in 'neptune:x'; "
        "use wandb[:PROJECT], tensorboard[:DIR] or mlflow[:TRACKING_URI]"
    )
    with pytest.raises(KeyError):
        adapter_class("neptune")


# -- the process's own failure -----------------------------------------------------------
def test_a_failing_uploader_names_its_error(tmp_path: Path) -> None:
    """The process's own failure comes back as a typed message, named in the summary."""
    manifest = tmp_path / "episodes.jsonl"
    manifest.write_text(
        '{"env": 0, "episode": 0, "end": "terminated", "length": 3, "return": 1.0}\n'
    )
    # A spec the process cannot parse makes run_uploader raise before serving.
    uploader = Uploader(("nosuchtracker",), str(tmp_path), "run", 1, 5.0)
    uploader.follow(manifest)
    summary = uploader.finish()
    (line,) = summary["not_uploaded"]
    assert line.startswith("nosuchtracker: 1 episode's statistics not sent (")
    assert "failed: ValueError: unknown tracker 'nosuchtracker'" in line
    assert uploader.proc.exitcode == 1
    assert uploader.finish() is summary  # idempotent
