"""Experiment trackers: where each episode's statistics and video are reported.

``RecordConfig(loggers=[...])`` (``--log`` on ``rlcapture record``) names the
trackers as spec strings: ``wandb[:PROJECT]``, ``tensorboard[:DIR]``,
``mlflow[:TRACKING_URI]``. They are served by one uploader process per
recording (:mod:`rlcapture._backend.uploads`), which follows the run's
manifest, so the env workers and the encoder never wait for a tracker, and a
tracker's package is imported only there, by the name its registry gives
(:mod:`rlcapture._backend.uploads.registry`). One module per tracker:

- :mod:`.wandb`: a W&B run; statistics against ``rlcapture/step``, each
  video as the MP4 file itself (``wandb.Video(path, format="mp4")``).
- :mod:`.tensorboard`: event files written with the ``tensorboard``
  package alone (no TensorFlow or torch); TensorBoard has no video type, so
  each video is a small animated GIF preview plus its path as text.
- :mod:`.mlflow`: an MLflow run through ``MlflowClient``; metrics with
  their step, each video as an artifact under ``videos/``.
"""

from __future__ import annotations

from .base import RunInfo, Tracker, episode_metrics, open_tracker

__all__ = ["RunInfo", "Tracker", "episode_metrics", "open_tracker"]
