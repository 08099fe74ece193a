"""The messages on rlcapture's two pipes, by name, with one encode/decode pair.

Two ``multiprocess`` pipes carry commands and answers between processes:

vector env <-> worker
    Commands :class:`Step`, :class:`Reset`, :class:`Call`, :class:`SetAttr`,
    :class:`IsWrapped`, :class:`Render` (no answer) and :class:`Close`; answers :class:`Ready`
    (once, at start), :class:`Ok` and :class:`Error`.
recorder <-> encoder
    :class:`EncoderReady` (once, at start), :class:`CloseEncoder`, then
    :class:`EncoderClosed` with the summary or :class:`EncoderFailed`.

Every message is a named tuple read by field name, never by position or
length. :func:`encode` and :func:`decode` are the only place a message becomes
bytes and back, for both pipes. Underneath it is pickle (the payloads are
actions, infos and observation spaces, which only pickle carries) of a plain
tuple ``(tag, *fields)``; a message that pickle refuses (an env's spec or
info holding a lambda) goes through dill instead, which pickle loads back
marked by a leading ``D`` (pickle's own start with ``\x80``). Pickling the named tuple itself would name its class
in every message and look it up again on every load (~2 us more a message).
The answer to most steps (:data:`NOTHING`: no infos, no failures) is encoded
once and recognised by its bytes. Measured (encode + decode, the message built
included, 2-core VM, best of 300 x 1000): a step of two ``int64`` actions in an
array 8.8 us against 9.1 us for the former ``("step", actions)`` tuple; of a
list of two ints 1.35 us against 0.71 us; the empty answer 0.08 us against
0.63 us; an answer with infos 2.2 us against 1.4 us. A step and its answer
together cost what they did (within 0.1 us); the pipe's system calls, tens of
us, dominate.

The ring channel between producers and the encoder has its own, struct-framed
messages: see ``channel.py``.
"""

from __future__ import annotations

import pickle
from typing import Any, NamedTuple

from .remote_error import RemoteError

__all__ = [
    "Step",
    "Reset",
    "Call",
    "SetAttr",
    "IsWrapped",
    "Render",
    "Close",
    "EnvInfo",
    "Ready",
    "Ok",
    "Error",
    "EncoderReady",
    "CloseEncoder",
    "EncoderClosed",
    "EncoderFailed",
    "Message",
    "NOTHING",
    "encode",
    "decode",
]

_PROTOCOL = 5


# -- vector env -> worker --------------------------------------------------------
class Step(NamedTuple):
    """Step the worker's envs, one action each (in the order of its envs)."""

    actions: Any


class Reset(NamedTuple):
    """Reset the worker's envs, one seed each (None: unseeded), with ``options``.

    ``mask`` (one flag each, None: all) says which envs to reset; the others
    keep their episode and observation (Gymnasium's ``reset_mask``).
    """

    seeds: list[int | None]
    options: dict[str, Any] | None
    mask: list[bool] | None = None


class Call(NamedTuple):
    """Call ``name`` (or read it) on the envs at positions ``which`` (None: all)."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    which: list[int] | None


class SetAttr(NamedTuple):
    """Set ``name`` on the envs at positions ``which`` (None: all), one value each."""

    name: str
    values: list[Any]
    which: list[int] | None


class IsWrapped(NamedTuple):
    """Whether the envs at positions ``which`` (None: all) are wrapped in ``wrapper_class``."""

    wrapper_class: type
    which: list[int] | None


class Render(NamedTuple):
    """Every worker has answered the step: render the frames held back. No answer."""


class Close(NamedTuple):
    """Close the envs (running recorded episodes end as "closed") and exit."""


# -- worker -> vector env --------------------------------------------------------
class EnvInfo(NamedTuple):
    """What the vector env needs to know about one of a worker's envs."""

    observation_space: Any
    action_space: Any
    metadata: dict[str, Any]
    render_mode: str | None
    spec: Any


class Ready(NamedTuple):
    """The worker made its envs and reached the encoder."""

    info: list[EnvInfo]


class Ok(NamedTuple):
    """A command succeeded.

    Attributes:
        value: Its result: per-env infos (None when all are empty), call results.
        failures: ``(position, message)`` of envs taken out since the last answer
            (``on_error="continue"``).
        waiting: The worker holds frames until it gets :class:`Render`.
        observations: One observation per env when they do not go through
            shared memory (``shared_memory=False``), else None.
        episodes: ``(position, {"r", "l", "t"})`` of episodes that finished
            with this step, ``r`` the env's own return (see the worker).
    """

    value: Any
    failures: list[tuple[int, str]] | tuple[()] = ()
    waiting: bool = False
    observations: list[Any] | None = None
    episodes: list[tuple[int, dict[str, Any]]] | tuple[()] = ()


class Error(NamedTuple):
    """A command failed in env ``env``.

    Attributes:
        env: The env's index in the recording.
        error: The exception, as it crosses processes (pickled, with its
            traceback: :mod:`.remote_error`), so the caller raises the
            class the env raised.
        recoverable: A failed ``call``/``set_attr``: the worker serves on.
    """

    env: int
    error: RemoteError
    recoverable: bool


# -- recorder <-> encoder --------------------------------------------------------
class EncoderReady(NamedTuple):
    """The encoder listens at ``address``."""

    address: str


class CloseEncoder(NamedTuple):
    """Finish: producers have ``timeout`` seconds to say goodbye."""

    timeout: float


class EncoderClosed(NamedTuple):
    """The encoder finished every video; what it did."""

    summary: dict[str, Any]


class EncoderFailed(NamedTuple):
    """The encoder failed; ``message`` says what, ``traceback`` where."""

    message: str
    traceback: str


Message = (
    Step
    | Reset
    | Call
    | SetAttr
    | IsWrapped
    | Render
    | Close
    | Ready
    | Ok
    | Error
    | EncoderReady
    | CloseEncoder
    | EncoderClosed
    | EncoderFailed
)

# The hot pair (Step, Ok) first: small tags pickle in one byte.
_TYPES: tuple[type, ...] = (
    Step,
    Ok,
    Reset,
    Call,
    SetAttr,
    Render,
    Close,
    Ready,
    Error,
    IsWrapped,
    EncoderReady,
    CloseEncoder,
    EncoderClosed,
    EncoderFailed,
)
_TAGS: dict[type, int] = {cls: tag for tag, cls in enumerate(_TYPES)}
_SIZES: tuple[int, ...] = tuple(len(cls._fields) + 1 for cls in _TYPES)  # type: ignore[attr-defined]
_new = tuple.__new__
_dumps = pickle.dumps
_DILL = b"D"
_loads = pickle.loads

#: The answer to most steps: nothing to report (no infos, failures or frames held). Encoded once, and
#: recognised by comparing bytes, so the common answer is never pickled.
NOTHING = Ok(None)
_NOTHING = _dumps((_TAGS[Ok], *NOTHING), _PROTOCOL)


def encode(message: Message) -> bytes:
    """The bytes of ``message``, for ``Connection.send_bytes``."""
    if message is NOTHING:
        return _NOTHING
    fields = (_TAGS[type(message)], *message)
    try:
        return _dumps(fields, _PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        # A lambda or local class somewhere in the payload: pickle names
        # functions by module path, dill carries their code.
        import dill

        return _DILL + dill.dumps(fields, _PROTOCOL)


def decode(raw: bytes) -> Message:
    """The message that :func:`encode` made into ``raw``.

    Raises:
        ValueError: If ``raw`` is not a message (a foreign or corrupt peer).
    """
    if raw == _NOTHING:
        return NOTHING
    if raw[:1] == _DILL:
        import dill

        fields = dill.loads(raw[1:])
    else:
        fields = _loads(raw)
    try:
        tag = fields[0]
        if len(fields) == _SIZES[tag] and tag >= 0:
            return _new(_TYPES[tag], fields[1:])  # type: ignore[no-any-return]
    except (TypeError, IndexError, KeyError):
        pass
    raise ValueError(f"not an rlcapture message: {fields!r:.80}")
