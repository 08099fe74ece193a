"""Exceptions that cross a process boundary, as themselves.

An env worker's pipe and a Ray actor's reply carry a failure the same way:
the exception pickled where it was raised, beside its formatted traceback, as
loky sends ``_ExceptionWithTraceback`` and raises it again with ``_rebuild_exc``.
The caller so gets the very class that was raised (an env's ``ValueError``,
rlcapture's own ``FrameError`` with its attributes), with the remote frames as
its ``__cause__``, and no class is looked up by name in a table. An exception
that cannot cross (an attribute pickle refuses, a class only the other side
can import, an ``__init__`` that its ``args`` do not satisfy) comes back as
its nearest builtin class with the same message, so ``except ValueError``
around a step still catches it.
"""

from __future__ import annotations

import functools
import pickle
import traceback
from typing import NamedTuple, TypeVar

from ..errors import first_line

__all__ = ["RemoteError", "RemoteTraceback", "capture", "rebuild", "builtin_class", "also_builtin"]

E = TypeVar("E", bound=BaseException)


class RemoteTraceback(Exception):
    """The traceback of an error raised in another process; set as ``__cause__``."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return "\n\n" + self.tb


class RemoteError(NamedTuple):
    """An exception raised in another process, in the form that crosses to this one.

    Attributes:
        pickled: The exception itself, pickled; None where pickle refused it.
        builtin: Its nearest builtin class, what it comes back as where it
            cannot be unpickled.
        kind: Its class name, for messages.
        text: Its message (``str(exc)``).
        traceback: Its formatted traceback, from the other process.
    """

    pickled: bytes | None
    builtin: type[BaseException]
    kind: str
    text: str
    traceback: str

    @property
    def first_line(self) -> str:
        """The first non-blank line of the message (the class name if it has none)."""
        return first_line(self.text, self.kind)


def builtin_class(cls: type[BaseException]) -> type[BaseException]:
    """The first builtin class among ``cls``'s bases (``ValueError`` for a ``ConfigError``)."""
    return next(c for c in cls.__mro__ if c.__module__ == "builtins")


def capture(exc: BaseException, tb: str | None = None) -> RemoteError:
    """``exc`` as it crosses to another process (in the process that raised it).

    Args:
        exc: The exception.
        tb: Its formatted traceback (None: formatted from ``exc`` here).
    """
    if tb is None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickled: bytes | None = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - any attribute may refuse; the builtin stands in
        pickled = None
    return RemoteError(pickled, builtin_class(type(exc)), type(exc).__name__, str(exc), tb)


def rebuild(error: RemoteError, where: str = "") -> BaseException:
    """The exception another process raised, to raise in this one.

    Args:
        error: What :func:`capture` sent.
        where: What failed ("env 3"), put before the message unless the
            message already starts with it.

    Returns:
        The exception itself where it unpickles here and its message can be
        led by ``where``; else an instance of its nearest builtin class with
        the message. Its ``__cause__`` is the remote traceback.
    """
    text = error.text if _starts_with(error.text, where) else f"{where}: {error.text}"
    exc = _unpickled(error.pickled)
    if exc is None or (text != error.text and not _retold(exc, error.text, text)):
        exc = _instance(error.builtin, text)
    exc.__cause__ = RemoteTraceback(error.traceback)
    return exc


@functools.cache
def also_builtin(ours: type[E], builtin: type[BaseException]) -> type[E]:
    """A subclass of ``ours`` that is also ``builtin``, or ``ours`` where none can be made.

    So ``except ValueError`` catches rlcapture's error about an env that
    raised ``ValueError``, as it catches AsyncVectorEnv's. Made once per pair;
    never for ``KeyboardInterrupt`` and the like (not ``Exception``).
    """
    if issubclass(ours, builtin) or not issubclass(builtin, Exception):
        return ours
    try:
        return type(ours.__name__, (ours, builtin), {"__module__": ours.__module__})
    except TypeError:  # a builtin whose instance layout cannot be combined with ours
        return ours


def _starts_with(text: str, where: str) -> bool:
    """``text`` names ``where`` first ("env 1 episode 3: ..." for "env 1", not "env 12")."""
    if not where:
        return True
    if not text.startswith(where):
        return False
    return not text[len(where) : len(where) + 1].isdigit()


def _unpickled(data: bytes | None) -> BaseException | None:
    if data is None:
        return None
    try:
        exc = pickle.loads(data)
    except Exception:  # noqa: BLE001 - a class we cannot import or rebuild
        return None
    return exc if isinstance(exc, BaseException) else None


def _retold(exc: BaseException, old: str, new: str) -> bool:
    """Give ``exc`` the message ``new`` where its message is its one argument."""
    if exc.args != (old,) or str(exc) != old:
        return False
    exc.args = (new,)
    if str(exc) == new:
        return True
    exc.args = (old,)
    return False


def _instance(cls: type[BaseException], text: str) -> BaseException:
    """``cls(text)``, or of the nearest base that takes one message."""
    for base in cls.__mro__:
        try:
            return base(text)  # type: ignore[no-any-return]
        except TypeError:  # UnicodeDecodeError and kin take more arguments
            continue
    return Exception(text)
