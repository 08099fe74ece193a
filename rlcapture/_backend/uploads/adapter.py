"""What the uploader process asks of a tracker adapter, and what it tells one of the run.

The interface lives in the core because the uploader loop drives adapters
through it; the adapters themselves (W&B, TensorBoard, MLflow) live in the
integration package :mod:`rlcapture.trackers`, which imports this module,
never the other way round (:mod:`.registry` names them by dotted path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RunInfo", "Tracker"]


@dataclass(frozen=True)
class RunInfo:
    """What a tracker knows of the recording it reports.

    Attributes:
        out_dir: The run's output folder (default home of local tracker files).
        name: The run's name in the tracker (the folder's name).
        timeout: Seconds one request may take before it counts as failed.
    """

    out_dir: str
    name: str
    timeout: float = 30.0


class Tracker:
    """One tracker's run; made in the uploader process, used from one thread.

    A subclass is built as ``cls(spec, run)`` (a
    :class:`~.spec.TrackerSpec` and a :class:`RunInfo`). Each method raises
    what its tracker raises when it fails; the uploader retries and, in the
    end, names what could not be sent.
    """

    def log_episode(self, record: dict[str, Any], step: int) -> None:
        """Log a finished episode's statistics at ``step`` (env steps or training timestep)."""
        raise NotImplementedError

    def log_video(self, record: dict[str, Any], path: str, step: int) -> None:
        """Send the episode's video file ``path`` (closed, kept) as it is."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the run (flush, mark it finished)."""
