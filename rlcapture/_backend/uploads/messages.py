"""The messages on the recorder <-> uploader pipe, by name, with one encode/decode pair.

recorder -> uploader
    :class:`Follow` (send a manifest's episodes, now and as it grows), then
    :class:`Finish` once.
uploader -> recorder
    :class:`Report` (per tracker, what it sent and its last error) in
    answer to :class:`Finish`, or :class:`UploaderFailed` when the process
    itself failed.

Like the env and encoder pipes (:mod:`rlcapture._backend.messages`), each
message is a named tuple read by field name, and on the pipe it is the
pickle of a plain tuple ``(tag, *fields)``. This pipe carries a handful of
messages a run, so it has no fast path and no dill fallback: its payloads
are paths, manifest fields (JSON values) and texts.
"""

from __future__ import annotations

import pickle
from typing import Any, NamedTuple

__all__ = [
    "Follow",
    "Finish",
    "Sent",
    "TrackerReport",
    "Report",
    "UploaderFailed",
    "UploadMessage",
    "encode",
    "decode",
]

_PROTOCOL = 5


class Sent(NamedTuple):
    """One part of one episode that reached a tracker."""

    manifest: str
    env: int
    episode: int
    part: str  # "stats" or "video" (see parts.upload_parts)


# -- recorder -> uploader --------------------------------------------------------
class Follow(NamedTuple):
    """Send the episodes of the manifest at ``path``, with ``fields`` added to each line."""

    path: str
    fields: dict[str, Any]


class Finish(NamedTuple):
    """Read what is left of the manifests, finish the uploads within the timeout, report."""


# -- uploader -> recorder --------------------------------------------------------
class TrackerReport(NamedTuple):
    """What one tracker took: the parts it sent, and its last error (None: none)."""

    sent: list[Sent]
    error: str | None


class Report(NamedTuple):
    """The answer to :class:`Finish`: a :class:`TrackerReport` per tracker spec."""

    trackers: dict[str, TrackerReport]


class UploaderFailed(NamedTuple):
    """The uploader process failed; ``message`` says what, ``traceback`` where."""

    message: str
    traceback: str


UploadMessage = Follow | Finish | Report | UploaderFailed

_TYPES: tuple[type, ...] = (Follow, Finish, Report, UploaderFailed)
_TAGS: dict[type, int] = {cls: tag for tag, cls in enumerate(_TYPES)}
_SIZES: tuple[int, ...] = tuple(len(cls._fields) + 1 for cls in _TYPES)  # type: ignore[attr-defined]


def encode(message: UploadMessage) -> bytes:
    """The bytes of ``message``, for ``Connection.send_bytes``."""
    return pickle.dumps((_TAGS[type(message)], *message), _PROTOCOL)


def decode(raw: bytes) -> UploadMessage:
    """The message that :func:`encode` made into ``raw``.

    Raises:
        ValueError: If ``raw`` is not an uploader message (a foreign or corrupt peer).
    """
    try:
        fields = pickle.loads(raw)
        tag = fields[0]
        if isinstance(tag, int) and 0 <= tag < len(_TYPES) and len(fields) == _SIZES[tag]:
            return _TYPES[tag](*fields[1:])  # type: ignore[no-any-return]
    except (pickle.UnpicklingError, EOFError, TypeError, IndexError, KeyError):
        pass
    raise ValueError(f"not an uploader message: {raw!r:.80}")
