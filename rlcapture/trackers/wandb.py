"""Weights & Biases: one run per recording; each video uploaded as its MP4 file.

Statistics are logged against their own x-axis, ``rlcapture/step`` (env
steps, or the training timestep during training), declared with
``define_metric``: W&B's own step must only grow, and episodes of several
envs or shards do not end in step order. A video is ``wandb.Video(path,
format="mp4")`` from the file, which W&B copies as it is (given arrays it
would re-encode through moviepy, at 4 fps by default).

Offline mode (``WANDB_MODE=offline``) writes the run under ``WANDB_DIR``
(default: the output folder) for ``wandb sync``.
"""

from __future__ import annotations

import os
from typing import Any

import wandb

from .._backend.uploads import TrackerSpec
from .base import RunInfo, Tracker, caption, episode_metrics

__all__ = ["WandbTracker"]


class WandbTracker(Tracker):
    """A W&B run in project ``spec.target`` (default ``$WANDB_PROJECT`` or "rlcapture")."""

    def __init__(self, spec: TrackerSpec, run: RunInfo) -> None:
        project = spec.target or os.environ.get("WANDB_PROJECT") or "rlcapture"
        entity = None
        if "/" in project:
            entity, project = project.split("/", 1)
        os.environ.setdefault("WANDB_SILENT", "true")  # this process's own environment
        settings = wandb.Settings(init_timeout=run.timeout, silent=True, console="off")
        self.run = wandb.init(
            project=project,
            entity=entity,
            name=run.name,
            dir=os.environ.get("WANDB_DIR") or run.out_dir,
            settings=settings,
            config={"rlcapture_out": run.out_dir},
        )
        self.run.define_metric("rlcapture/step")
        self.run.define_metric("rlcapture/*", step_metric="rlcapture/step")

    def log_episode(self, record: dict[str, Any], step: int) -> None:
        data: dict[str, Any] = {f"rlcapture/{k}": v for k, v in episode_metrics(record).items()}
        data["rlcapture/end"] = str(record.get("end"))
        data["rlcapture/step"] = step
        self.run.log(data)

    def log_video(self, record: dict[str, Any], path: str, step: int) -> None:
        video = wandb.Video(path, caption=caption(record), format="mp4")
        self.run.log({"rlcapture/video": video, "rlcapture/step": step})

    def close(self) -> None:
        self.run.finish()
