"""The errors rlcapture raises.

Every error derives from :class:`RLCaptureError`, and where a builtin error
means the same thing the subclass derives from it too (as PyAV does), so a
caller may catch either. Messages say what to do next. Misuse that Gymnasium's
vector envs name (``step_wait`` without ``step_async``, a second call while
one is pending, a call after ``close``) raises errors that also subclass
Gymnasium's, so code written for ``AsyncVectorEnv`` catches them unchanged.
Each pickles as itself, attributes included, so an error raised in a worker
or a Ray actor reaches the caller as the same class.
"""

from __future__ import annotations

from multiprocessing import TimeoutError as _MPTimeoutError
from typing import Any

from gymnasium import error as _gym

__all__ = [
    "RLCaptureError",
    "ConfigError",
    "BatchError",
    "EnvError",
    "SpaceMismatchError",
    "FrameError",
    "OutputExistsError",
    "OutputError",
    "ProcessDiedError",
    "WorkerError",
    "EncoderError",
    "StepTimeoutError",
    "ClosedError",
    "NoAsyncCallError",
    "AlreadyPendingCallError",
    "first_line",
]


class RLCaptureError(Exception):
    """Base class of every error raised by rlcapture."""


class ConfigError(RLCaptureError, ValueError):
    """An option or argument is out of range or malformed."""


class BatchError(ConfigError, TypeError):
    """What should be a batch (one action per env) is not one.

    A ``TypeError`` too, as Gymnasium raises when it cannot iterate a batch.
    """


class EnvError(RLCaptureError, ValueError):
    """An environment cannot be made or cannot render the way rlcapture needs."""


class SpaceMismatchError(EnvError, RuntimeError):
    """The envs of a vector env do not share their spaces.

    A ``RuntimeError`` too, as AsyncVectorEnv raises for the same mistake.
    """


class FrameError(RLCaptureError, ValueError):
    """A rendered or submitted frame has the wrong type, shape or size."""


class OutputError(RLCaptureError, OSError):
    """The output folder cannot be created, locked or written."""


class OutputExistsError(OutputError, FileExistsError):
    """The output folder already holds a recording and overwriting was not asked for."""


class ClosedError(RLCaptureError, RuntimeError, _gym.ClosedEnvironmentError):
    """The engine (or a producer attached to it) was closed, or broke and must be closed."""


class NoAsyncCallError(RLCaptureError, RuntimeError, _gym.NoAsyncCallError):
    """A ``*_wait`` call without the ``*_async`` call it collects.

    Attributes:
        name: The call that was not started ("step").
    """

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


class AlreadyPendingCallError(RLCaptureError, RuntimeError, _gym.AlreadyPendingCallError):
    """A call while another one is pending (``step_async`` twice, ``reset`` before ``step_wait``).

    Attributes:
        name: The call that is pending ("step", "reset").
    """

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


class ProcessDiedError(RLCaptureError, RuntimeError):
    """A process of the engine died or failed.

    Attributes:
        process: A readable name of the process ("env 3", "encoder").
        exitcode: Its exit status: negative for a signal, None while alive.
    """

    def __init__(self, message: str, process: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.process = process
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle would call ``cls(message)``; these take more arguments.
        return (type(self), (self._message(), self.process, self.exitcode), self.__dict__)

    def _message(self) -> str:
        return str(self.args[0]) if self.args else ""


class WorkerError(ProcessDiedError):
    """An env worker raised, died or stopped answering.

    Attributes:
        env_index: The vector index of the env whose worker failed.
    """

    def __init__(
        self, message: str, env_index: int, exitcode: int | None = None
    ) -> None:
        super().__init__(message, f"env {env_index}", exitcode)
        self.env_index = env_index

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._message(), self.env_index, self.exitcode), self.__dict__)


class StepTimeoutError(WorkerError, TimeoutError, _MPTimeoutError):
    """An env took longer than the step timeout to answer.

    Also ``multiprocessing.TimeoutError``, which AsyncVectorEnv's ``*_wait(timeout)`` raise.
    """


class EncoderError(ProcessDiedError):
    """The encoder process raised or died.

    Attributes:
        shard: Which of the recorder's encoder processes (0 with one encoder),
            or None where it is not known (a producer that lost its encoder).
    """

    def __init__(self, message: str, exitcode: int | None = None, shard: int | None = None) -> None:
        super().__init__(message, "encoder", exitcode)
        self.shard = shard

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._message(), self.exitcode, self.shard), self.__dict__)


def first_line(message: object, default: str = "") -> str:
    """The first non-blank line of ``str(message)``, stripped; ``default`` if it has none.

    An error told to a user is one line (the CLI prints ``rlcapture: error: ...``),
    however many lines the exception it wraps holds: a traceback, pip's advice, Ray's
    actor dump. Pass ``type(exc).__name__`` as ``default`` to name an empty exception.
    """
    for line in str(message).splitlines():
        if line.strip():
            return line.strip()
    return default
