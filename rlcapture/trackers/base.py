"""What every tracker does, and how one is opened from its spec."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .._backend.uploads import TrackerSpec

__all__ = ["RunInfo", "Tracker", "episode_metrics", "open_tracker"]

#: Spec kind -> module and class of its tracker.
_CLASSES = {
    "wandb": ("rlcapture.trackers.wandb", "WandbTracker"),
    "tensorboard": ("rlcapture.trackers.tensorboard", "TensorBoardTracker"),
    "mlflow": ("rlcapture.trackers.mlflow", "MlflowTracker"),
}


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


def episode_metrics(record: dict[str, Any]) -> dict[str, int | float]:
    """The numbers of an episode's manifest line every tracker logs.

    Its return and length, and its seed, env and episode index, so that a
    point of a curve leads back to the episode (and its replay). Integers
    stay integers where the tracker keeps them (a 32-bit seed is exact).
    """
    out: dict[str, int | float] = {}
    for field in ("return", "length", "seed", "env", "episode"):
        value = record.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[field] = value
    return out


def caption(record: dict[str, Any]) -> str:
    """``env 0 episode 3 seed 7: return 21 in 21 steps (terminated)``."""
    ret = record.get("return")
    value = f"return {ret:g}" if isinstance(ret, (int, float)) else "no return"
    return (
        f"env {record.get('env')} episode {record.get('episode')} seed {record.get('seed')}: "
        f"{value} in {record.get('length')} steps ({record.get('end')})"
    )


class Tracker:
    """One tracker's run; made in the uploader process, used from one thread.

    Each method raises what its tracker raises when it fails; the uploader
    retries and, in the end, names what could not be sent.
    """

    def log_episode(self, record: dict[str, Any], step: int) -> None:
        """Log a finished episode's statistics at ``step`` (env steps or training timestep)."""
        raise NotImplementedError

    def log_video(self, record: dict[str, Any], path: str, step: int) -> None:
        """Send the episode's video file ``path`` (closed, kept) as it is."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the run (flush, mark it finished)."""


def open_tracker(spec: TrackerSpec, run: RunInfo) -> Tracker:
    """Import ``spec``'s tracker module and open its run.

    Raises:
        ImportError: The tracker's package is missing (the caller names the extra).
        Exception: Whatever the tracker raises when its run cannot be opened
            (an address where nothing listens...).
    """
    module, cls = _CLASSES[spec.kind]
    return getattr(importlib.import_module(module), cls)(spec, run)
