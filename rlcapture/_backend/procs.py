"""Child processes: how they are started, waited on, and described when they die."""

from __future__ import annotations

import signal
from typing import Any

import multiprocess
from multiprocess.connection import wait as _wait

from .messages import decode
from .remote_error import RemoteTraceback  # the recorder imports it from here

__all__ = ["RemoteTraceback", "get_context", "describe_exit", "wait_ready", "stop_process"]

wait = _wait


def get_context(method: str | None) -> Any:
    """The ``multiprocess`` context for a start method (None: the platform's default)."""
    methods = multiprocess.get_all_start_methods()
    if method is not None and method not in methods:
        from ..errors import ConfigError

        raise ConfigError(
            f"start method {method!r} is not available here (cannot find context for "
            f"{method!r}, as multiprocessing says); choose one of {', '.join(methods)}"
        )
    return multiprocess.get_context(method)


def describe_exit(exitcode: int | None) -> str:
    """Say how a process ended: "exit status 1", "signal SIGKILL (-9)"."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"signal {name} ({exitcode})"
    return f"exit status {exitcode}"


def wait_ready(conn: Any, proc: Any, timeout: float) -> Any:
    """Wait for the first message from a child, watching that it stays alive.

    Returns:
        The message (``messages.decode``), or None if the child died or the
        timeout passed first.
    """
    ready = wait([conn, proc.sentinel], timeout)
    if conn in ready:
        try:
            return decode(conn.recv_bytes())
        except (EOFError, OSError):
            return None
    return None


def stop_process(proc: Any, timeout: float) -> None:
    """Join a child; terminate, then kill it if it does not exit in time."""
    proc.join(timeout)
    if proc.exitcode is None:
        proc.terminate()
        proc.join(2.0)
    if proc.exitcode is None:
        proc.kill()
        proc.join(2.0)
