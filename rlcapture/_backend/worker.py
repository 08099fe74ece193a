"""The env worker: a subprocess that steps a few envs and renders their frames.

A worker answers ``step`` first (observations, rewards and done flags in shared
memory, infos through its pipe) and renders afterwards, straight into its ring,
so rendering overlaps the caller's policy computation. Episodes the schedule
turns down are never rendered. An error, in stepping or in rendering, is sent
back with the env's index and the traceback, in answer to the command it
belongs to or to the next one.

This module is the process: its entry point, its loop over the pipe, and the
error replies. The env logic (:class:`~.worker_envs.WorkerEnvs`: ``step``,
``reset``, ``call``, ``set_attr``, the episodes and the rendering) takes and
returns Python values and message objects (``messages.py``); only this loop
turns them into bytes, once per command. What a worker is given is
:mod:`.worker_spec`'s.
"""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import MutableMapping
from typing import Any

from .episode import EndReason
from .gl_platform import quiet_glfw
from .messages import (
    Call,
    Close,
    Error,
    IsWrapped,
    Ok,
    Render,
    Reset,
    SetAttr,
    Step,
    decode,
    encode,
)
from .remote_error import capture
from .worker_envs import EnvFailure, WorkerEnvs
from .worker_spec import Shared, WorkerSpec

__all__ = ["worker_main", "WorkerSpec", "Shared", "quiet_sdl"]


def _error_reply(env: int, exc: BaseException, tb: str, recoverable: bool = False) -> Error:
    # The exception itself crosses, so the caller raises the env's class
    # (and rlcapture's FrameError or EnvError as if the env ran in-process).
    return Error(env, capture(exc, tb), recoverable)


def _serve(worker: WorkerEnvs, cmd: Any) -> Ok:
    """Run one command on the worker's envs; its answer."""
    kind = type(cmd)
    if kind is Step:
        return worker.step(cmd.actions)
    if kind is Reset:
        return worker.reset(cmd.seeds, cmd.options, cmd.mask)
    if kind is Call:
        return worker.call(cmd.name, cmd.args, cmd.kwargs, cmd.which)
    if kind is SetAttr:
        return worker.set_attr(cmd.name, cmd.values, cmd.which)
    if kind is IsWrapped:
        return worker.is_wrapped(cmd.wrapper_class, cmd.which)
    raise RuntimeError(f"a worker cannot serve {kind.__name__}")


def quiet_sdl(environ: MutableMapping[str, str]) -> None:
    """Keep SDL (pygame, which classic-control envs render with) from trying a display.

    Without a display SDL still tries Wayland first, whose client library
    prints "error: XDG_RUNTIME_DIR is invalid or not set" once per process:
    64 lines at 64 envs. A worker renders to arrays only, so with no display
    at all SDL is pointed at its dummy driver (with one, SDL tries X11 before
    Wayland and says nothing). Sound is never played in a worker. Set in the
    worker, before any env is made, so the user's process is untouched; an
    SDL variable the user set wins.
    """
    if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        environ.setdefault("SDL_VIDEODRIVER", "dummy")
    environ.setdefault("SDL_AUDIODRIVER", "dummy")


def worker_main(spec: WorkerSpec, conn: Any, parent_conn: Any = None) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    # pygame (classic-control rendering) would otherwise catch SIGTERM, so a
    # stuck worker ignored terminate() and close() had to wait for SIGKILL.
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
    quiet_sdl(os.environ)
    for name, value in spec.gl.items():  # the OpenGL platform, before any env is made
        os.environ.setdefault(name, value)
    quiet_glfw(os.environ)
    if parent_conn is not None:
        parent_conn.close()
    worker = WorkerEnvs(spec, conn)
    try:
        if _start(worker, conn):
            _loop(worker, conn)
    except KeyboardInterrupt:
        return
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return  # the vector env's process is gone: no one to answer
    except Exception as exc:  # noqa: BLE001 - sent, never printed over the caller's output
        try:
            conn.send_bytes(encode(_error_reply(spec.env_indices[0], exc, traceback.format_exc())))
        except OSError:
            pass
    finally:
        try:
            worker.close(EndReason.ERROR)
        except Exception:  # noqa: BLE001 - the error that brought us here was already answered
            pass


def _start(worker: WorkerEnvs, conn: Any) -> bool:
    """Make the envs and answer ``Ready``, or why they could not be made; whether to go on."""
    spec = worker.spec
    try:
        conn.send_bytes(encode(worker.start()))
    except EnvFailure as f:
        conn.send_bytes(encode(_error_reply(f.env, f.exc, f.tb)))
        return False
    except Exception as exc:  # noqa: BLE001
        conn.send_bytes(encode(_error_reply(spec.env_indices[0], exc, traceback.format_exc())))
        return False
    return bool(worker.envs) and worker.producer is not None


def _loop(worker: WorkerEnvs, conn: Any) -> None:
    """Serve commands until ``close``, a fatal error, or the vector env's process is gone."""
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            # The vector env's process is gone: frames held for its go
            # are rendered still, so finished episodes keep their last frame.
            if worker.waiting:
                worker.waiting = False
                worker.after_reply()
            return
        cmd = decode(raw)
        if worker.waiting:
            # The go ("render"), or any command after a step whose go was
            # never sent (the vector env raised): frames of the last step
            # are rendered before anything else happens to the envs.
            worker.waiting = False
            worker.after_reply()
        if not _answer(worker, conn, cmd):
            return


def _answer(worker: WorkerEnvs, conn: Any, cmd: Any) -> bool:
    """Answer one command (``render`` needs none); whether to serve the next."""
    spec = worker.spec
    kind = type(cmd)
    if kind is Close:
        try:
            worker.close()
            answer: Ok | Error = Ok(None)
        except Exception as exc:  # noqa: BLE001 - e.g. the encoder died (a full disk)
            # Answered, not printed: the vector env hears of the
            # encoder's failure from the recorder, in one line.
            answer = _error_reply(spec.env_indices[0], exc, traceback.format_exc())
        conn.send_bytes(encode(answer))
        return False
    if kind is Render:  # every worker has answered; rendered above (no reply)
        return True
    if worker.pending is not None:  # rendering the last step failed
        f = worker.pending
        worker.close(EndReason.ERROR)
        conn.send_bytes(encode(_error_reply(f.env, f.exc, f.tb)))
        return False
    try:
        reply = _serve(worker, cmd)
    except EnvFailure as f:
        if kind is Call or kind is SetAttr or kind is IsWrapped:
            # A bad attribute name is the caller's mistake, not the
            # env's: answer with it and keep serving.
            conn.send_bytes(encode(_error_reply(f.env, f.exc, f.tb, recoverable=True)))
            return True
        worker.close(EndReason.ERROR)
        conn.send_bytes(encode(_error_reply(f.env, f.exc, f.tb)))
        return False
    conn.send_bytes(encode(reply))
    if not worker.waiting:
        worker.after_reply()
    return True
