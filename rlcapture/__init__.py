"""rlcapture: record what reinforcement-learning agents do, off the critical path.

Subprocess workers render frames into shared-memory rings; one encoder process
writes one video per recorded (env, episode) and a manifest line per episode.
"""

from __future__ import annotations

from ._backend.keep import KeepRule
from ._backend.manifest import read_manifest
from .batch import BatchCapture
from .config import RecordConfig
from .errors import (
    AlreadyPendingCallError,
    ClosedError,
    ConfigError,
    EncoderError,
    EnvError,
    FrameError,
    NoAsyncCallError,
    OutputError,
    OutputExistsError,
    ProcessDiedError,
    RLCaptureError,
    StepTimeoutError,
    WorkerError,
)
from .evaluate import EpisodeResult, EvaluationResult, evaluate
from .recorder import Recorder
from .replay import ReplayResult, replay
from .triggers import RecordAll, RecordEvery, RecordNone
from .vector import CaptureVectorEnv, make_vec
from .wrapper import CaptureWrapper

__version__ = "0.1.0"

__all__ = [
    "AlreadyPendingCallError",
    "BatchCapture",
    "CaptureVectorEnv",
    "CaptureWrapper",
    "ClosedError",
    "ConfigError",
    "EncoderError",
    "EnvError",
    "EpisodeResult",
    "EvaluationResult",
    "FrameError",
    "KeepRule",
    "NoAsyncCallError",
    "OutputError",
    "OutputExistsError",
    "ProcessDiedError",
    "RLCaptureError",
    "RecordAll",
    "RecordConfig",
    "RecordEvery",
    "RecordNone",
    "Recorder",
    "ReplayResult",
    "StepTimeoutError",
    "WorkerError",
    "evaluate",
    "make_vec",
    "read_manifest",
    "replay",
    "__version__",
]
