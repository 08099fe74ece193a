"""The options of a run on Ray, checked on the driver before anything starts.

The options each task passes on to :func:`rlcapture.evaluate` go through the
very checks a local ``evaluate`` runs them through, with the same messages, so
an option that is unknown or out of range is refused here, before Ray is
joined, instead of by every actor.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from ..config import RecordConfig, build_config, keyword_names
from ..errors import ConfigError
from ..evaluate import evaluate
from ..vector import CaptureVectorEnv
from ..vector_options import VectorOptions

__all__ = ["check_numbers", "task_options"]

# What a task passes on to evaluate: evaluate's own keywords that the driver does not
# take itself, and CaptureVectorEnv's options but the two that evaluate sets from seeds.
_EVALUATE_SETS = ("episode_seeds", "episodes_per_env")
_DRIVER_TAKES = {"env", "policy", "seeds", "num_envs", "out", "config", "overwrite", "progress"}
_EVALUATE_OPTIONS = frozenset(keyword_names(evaluate)) - _DRIVER_TAKES
_VECTOR_OPTIONS = frozenset(f.name for f in fields(VectorOptions) if f.init) - {"num_envs", *_EVALUATE_SETS}


def task_options(
    config: RecordConfig | None, num_envs: int, options: dict[str, Any]
) -> tuple[RecordConfig, dict[str, Any]]:
    """The run's config, and the keywords each task passes on to :func:`rlcapture.evaluate`.

    Checked with the very functions a local :func:`rlcapture.evaluate` runs
    them through (:class:`~rlcapture.vector_options.VectorOptions`, then
    :func:`~rlcapture.config.build_config`), so a bad or unknown option is
    refused here, before any actor starts, with the message it has locally.

    Raises:
        ConfigError: An option is unknown or out of range, ``evaluate`` sets it
            itself, or it cannot work on a cluster (``mosaic``).
    """
    for name in _EVALUATE_SETS:
        if name in options:
            raise ConfigError(f"evaluate sets {name} itself (from seeds)")
    vector = {k: v for k, v in options.items() if k in _VECTOR_OPTIONS}
    VectorOptions(num_envs, **vector)  # raises what CaptureVectorEnv raises
    passed = {k: v for k, v in options.items() if k in _EVALUATE_OPTIONS}
    rest = {k: v for k, v in options.items() if k not in _VECTOR_OPTIONS and k not in _EVALUATE_OPTIONS}
    config = build_config(
        config, rest, front="CaptureVectorEnv", front_options=keyword_names(CaptureVectorEnv.__init__)
    )
    if config.mosaic is not None:
        raise ConfigError("mosaic is not available on a cluster (each actor has its own envs); drop --mosaic")
    return config, {**passed, **vector}


def check_numbers(
    num_envs: Any, actors: Any, num_cpus: Any, task_size: Any, chunk_mib: Any, timeout: Any, start_timeout: Any
) -> float:
    """Check the run's numbers; returns ``num_cpus`` (default ``num_envs``).

    Raises:
        ConfigError: One is out of range, naming it.
    """
    if not (isinstance(num_envs, int) and 1 <= num_envs <= 1024):
        raise ConfigError(f"num_envs must be an integer from 1 to 1024, got {num_envs!r}")
    if actors is not None and not (isinstance(actors, int) and actors >= 1):
        raise ConfigError(f"actors must be a positive integer, got {actors!r}")
    if num_cpus is None:
        num_cpus = float(num_envs)
    if not (isinstance(num_cpus, (int, float)) and 0 < num_cpus <= 4096):
        raise ConfigError(f"num_cpus must be a positive number, got {num_cpus!r}")
    if task_size is not None and not (isinstance(task_size, int) and task_size >= 1):
        raise ConfigError(f"task_size must be a positive integer, got {task_size!r}")
    if not (isinstance(chunk_mib, (int, float)) and 1 / 1024 <= chunk_mib <= 1024):
        raise ConfigError(f"chunk_mib must be from 1/1024 (1 KiB) to 1024, got {chunk_mib!r}")
    for name, value in (("timeout", timeout), ("start_timeout", start_timeout)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(num_cpus)
