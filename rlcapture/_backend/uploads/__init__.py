"""Uploads to experiment trackers: one uploader process per recording, following its manifest.

- :mod:`.spec`: the ``--log`` grammar (``wandb[:PROJECT]``...) and the
  package each tracker needs.
- :mod:`.registry`: tracker kinds by name, each with the dotted path of its
  adapter in :mod:`rlcapture.trackers`, imported only inside the uploader
  process; the engine names no integration in an import.
- :mod:`.adapter`: what the uploader asks of an adapter (:class:`Tracker`)
  and tells it of the run (:class:`RunInfo`).
- :mod:`.parts`: which parts of an episode are sent.
- :mod:`.messages`: the typed messages of the recorder <-> uploader pipe.
- :mod:`.process`: the recorder's handle on the process (:class:`Uploader`).
- :mod:`.loop`: what runs in the process: the manifests followed, one thread
  per tracker, retries.
- :mod:`.unsent`: what was not sent, named in the summary and the manifest.
"""

from __future__ import annotations

from .adapter import RunInfo, Tracker
from .parts import upload_parts
from .process import Uploader
from .registry import KINDS, TrackerKind, adapter_class
from .spec import (
    DEFAULT_ATTEMPTS,
    DEFAULT_UPLOAD_TIMEOUT,
    TrackerSpec,
    missing_package,
    open_tracker,
    parse_tracker,
    parse_trackers,
)

__all__ = [
    "Uploader",
    "TrackerSpec",
    "parse_tracker",
    "parse_trackers",
    "missing_package",
    "upload_parts",
    "DEFAULT_ATTEMPTS",
    "DEFAULT_UPLOAD_TIMEOUT",
    "KINDS",
    "TrackerKind",
    "adapter_class",
    "open_tracker",
    "RunInfo",
    "Tracker",
]
