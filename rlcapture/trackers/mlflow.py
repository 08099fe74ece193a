"""MLflow: one run per recording through ``MlflowClient``; videos as artifacts.

The tracking URI is the spec's target, else ``$MLFLOW_TRACKING_URI``, else
``OUT/mlruns`` (a file store). MLflow 3 refuses file stores unless
``MLFLOW_ALLOW_FILE_STORE`` is set; a ``file:`` URI asked for by name is
taken as that consent (set in the uploader process only). MLflow's HTTP
client retries for minutes by default; here one request gets the run's
timeout and no retries of its own, since the uploader retries with backoff
and must finish when the run does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._backend.run_folder import RunFolder
from .._backend.uploads import TrackerSpec
from .base import RunInfo, Tracker, episode_metrics

__all__ = ["MlflowTracker", "tracking_uri"]


def tracking_uri(spec: TrackerSpec, out_dir: str) -> str:
    """Where ``spec`` sends its runs."""
    uri = spec.target or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        return RunFolder(out_dir).tracker_folder("mlflow").resolve().as_uri()
    if "://" not in uri and not uri.startswith("file:"):
        return Path(uri).resolve().as_uri()  # a bare folder
    return uri


class MlflowTracker(Tracker):
    """An MLflow run in experiment ``$MLFLOW_EXPERIMENT_NAME`` (default "rlcapture")."""

    def __init__(self, spec: TrackerSpec, run: RunInfo) -> None:
        uri = tracking_uri(spec, run.out_dir)
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, int(run.timeout))))
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "rlcapture"
        found = self.client.get_experiment_by_name(name)
        exp = found.experiment_id if found is not None else self.client.create_experiment(name)
        self.run_id = self.client.create_run(
            exp, run_name=run.name, tags={"rlcapture.out": run.out_dir}
        ).info.run_id

    def log_episode(self, record: dict[str, Any], step: int) -> None:
        for key, value in episode_metrics(record).items():
            self.client.log_metric(self.run_id, f"rlcapture/{key}", float(value), step=step)

    def log_video(self, record: dict[str, Any], path: str, step: int) -> None:
        self.client.log_artifact(self.run_id, path, "videos")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
