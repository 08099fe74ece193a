"""Errors that cross a process boundary come back as themselves (or their builtin class)."""

from __future__ import annotations

import pickle

import pytest

import rlcapture
from rlcapture._backend.remote_error import (
    RemoteTraceback,
    also_builtin,
    builtin_class,
    capture,
    rebuild,
)
from rlcapture.errors import SpaceMismatchError, first_line


class EnvOwnError(ValueError):
    """An env's own error class, importable on both sides."""


class TwoArgumentError(ValueError):
    """Pickles, but cannot be unpickled: ``__init__`` wants more than its ``args``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as a worker catches it."""
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return caught


def _crossed(exc: BaseException, where: str = "") -> BaseException:
    """``exc`` captured, sent through pickle as a pipe does, and rebuilt."""
    return rebuild(pickle.loads(pickle.dumps(capture(_raised(exc)))), where)


def test_an_env_error_comes_back_as_its_class_with_the_remote_traceback() -> None:
    back = _crossed(EnvOwnError("bad action 7"))
    assert type(back) is EnvOwnError and str(back) == "bad action 7"
    cause = back.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "EnvOwnError: bad action 7" in cause.tb and "_raised" in cause.tb  # the remote frames


def test_where_leads_the_message_once() -> None:
    assert str(_crossed(ValueError("bad"), "env 3")) == "env 3: bad"
    assert str(_crossed(rlcapture.FrameError("env 3 episode 0: 2-D"), "env 3")) == "env 3 episode 0: 2-D"
    # "env 12 ..." does not name env 1
    assert str(_crossed(ValueError("env 12 is odd"), "env 1")) == "env 1: env 12 is odd"


def test_an_error_that_cannot_be_unpickled_comes_back_as_its_builtin_class() -> None:
    back = _crossed(TwoArgumentError("no code", 3), "env 0")
    assert type(back) is ValueError and str(back) == "env 0: no code"
    assert isinstance(back.__cause__, RemoteTraceback)


def test_an_error_that_cannot_be_pickled_comes_back_as_its_builtin_class() -> None:
    exc = EnvOwnError("holds a lambda")
    exc.callback = lambda: None  # type: ignore[attr-defined]
    error = capture(_raised(exc))
    assert error.pickled is None and error.kind == "EnvOwnError"
    back = rebuild(error)
    assert type(back) is ValueError and str(back) == "holds a lambda"


def test_an_error_whose_message_is_not_its_argument_keeps_its_builtin_class() -> None:
    back = _crossed(KeyError("speed"), "env 2")  # str(KeyError) quotes its argument
    assert type(back) is KeyError and "env 2: 'speed'" in str(back)


def test_rlcapture_errors_pickle_with_their_attributes() -> None:
    for exc in [
        rlcapture.WorkerError("w", 3, -9),
        rlcapture.StepTimeoutError("t", 2, None),
        rlcapture.EncoderError("e", 1, shard=2),
        rlcapture.ProcessDiedError("p", "actor 1", 5),
        rlcapture.NoAsyncCallError("n", "step"),
        rlcapture.OutputExistsError("o"),
    ]:
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc), exc
        assert vars(back) == vars(exc), exc
    back = _crossed(SpaceMismatchError("spaces differ"))
    assert type(back) is SpaceMismatchError  # not mapped to a base class by name


@pytest.mark.parametrize(
    ("raised", "builtin"),
    [(EnvOwnError, ValueError), (rlcapture.ConfigError, ValueError), (KeyError, KeyError),
     (rlcapture.OutputExistsError, FileExistsError), (KeyboardInterrupt, KeyboardInterrupt)],
)  # fmt: skip
def test_builtin_class_is_the_first_builtin_base(raised: type, builtin: type) -> None:
    assert builtin_class(raised) is builtin


def test_also_builtin() -> None:
    as_value = also_builtin(rlcapture.WorkerError, ValueError)
    assert issubclass(as_value, rlcapture.WorkerError) and issubclass(as_value, ValueError)
    assert as_value is also_builtin(rlcapture.WorkerError, ValueError)  # made once
    assert as_value.__name__ == "WorkerError"
    err = as_value("env 1 raised ValueError: x", 1, None)
    assert err.env_index == 1
    # Already one, or not an Exception: the class itself.
    assert also_builtin(rlcapture.WorkerError, RuntimeError) is rlcapture.WorkerError
    assert also_builtin(rlcapture.WorkerError, KeyboardInterrupt) is rlcapture.WorkerError


def test_first_line_is_the_first_non_blank_line_or_the_default() -> None:
    """One helper says an error in one line, wherever it crossed from."""
    assert first_line(ValueError("\n  \n  bad value  \nsecond line")) == "bad value"
    assert first_line("only") == "only"
    assert first_line(ValueError(), "ValueError") == "ValueError"
    assert first_line(" \n\t\n") == ""
    # A remote error's line is the same helper's, its class name where it says nothing.
    empty = capture(_raised(KeyError()))
    assert empty.first_line == "KeyError"
