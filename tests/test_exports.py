"""The public names of the package."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import gymnasium.error

import rlcapture


def _public_attributes() -> set[str]:
    return {
        name
        for name, value in vars(rlcapture).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__
    }


def test_all_matches_the_public_names() -> None:
    names = rlcapture.__all__
    assert len(names) == len(set(names)), "duplicates in __all__"
    assert set(names) - {"__version__"} == _public_attributes()
    assert "__version__" in names and isinstance(rlcapture.__version__, str)


def test_each_name_imports() -> None:
    for name in rlcapture.__all__:
        module = importlib.import_module("rlcapture")
        assert getattr(module, name) is not None
        exec(f"from rlcapture import {name}", {})


def test_star_import_gives_exactly_all() -> None:
    namespace: dict = {}
    exec("from rlcapture import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(rlcapture.__all__)


def test_core_names_are_there() -> None:
    for name in [
        "Recorder",
        "CaptureVectorEnv",
        "make_vec",
        "RecordAll",
        "RecordNone",
        "RecordEvery",
        "RLCaptureError",
        "ConfigError",
        "EnvError",
        "FrameError",
        "OutputError",
        "OutputExistsError",
        "ProcessDiedError",
        "WorkerError",
        "EncoderError",
        "StepTimeoutError",
        "ClosedError",
        "NoAsyncCallError",
        "AlreadyPendingCallError",
    ]:
        assert name in rlcapture.__all__, name


def test_errors_share_a_base_and_builtin_meanings() -> None:
    errors = [
        v
        for v in (getattr(rlcapture, n) for n in rlcapture.__all__)
        if inspect.isclass(v) and issubclass(v, BaseException)
    ]
    assert all(issubclass(e, rlcapture.RLCaptureError) for e in errors)
    assert issubclass(rlcapture.ConfigError, ValueError)
    assert issubclass(rlcapture.EnvError, ValueError)
    assert issubclass(rlcapture.FrameError, ValueError)
    assert issubclass(rlcapture.OutputExistsError, FileExistsError)
    assert issubclass(rlcapture.OutputError, OSError)
    assert issubclass(rlcapture.StepTimeoutError, TimeoutError)
    assert issubclass(rlcapture.StepTimeoutError, rlcapture.WorkerError)
    assert issubclass(rlcapture.WorkerError, rlcapture.ProcessDiedError)
    assert issubclass(rlcapture.EncoderError, rlcapture.ProcessDiedError)
    assert issubclass(rlcapture.ClosedError, RuntimeError)
    # Gymnasium's vector-env misuse errors, so AsyncVectorEnv code catches ours.
    assert issubclass(rlcapture.ClosedError, gymnasium.error.ClosedEnvironmentError)
    assert issubclass(rlcapture.NoAsyncCallError, gymnasium.error.NoAsyncCallError)
    assert issubclass(rlcapture.AlreadyPendingCallError, gymnasium.error.AlreadyPendingCallError)
    err = rlcapture.WorkerError("x", 3, -9)
    assert (err.env_index, err.process, err.exitcode) == (3, "env 3", -9)


def test_submodule_all_lists_exist() -> None:
    """Every module that declares ``__all__`` defines what it lists."""
    for info in pkgutil.walk_packages(rlcapture.__path__, "rlcapture."):
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"{info.name}.__all__ lists missing {name!r}"
