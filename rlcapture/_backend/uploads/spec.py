"""The tracker spec grammar: ``--log wandb[:PROJECT]``, ``tensorboard[:DIR]``, ``mlflow[:TRACKING_URI]``.

This module parses and checks spec strings (for
:class:`~rlcapture.RecordConfig`) and says which package each tracker needs
and which extra installs it, both from :mod:`.registry`. It imports no
tracker package: the adapters live in :mod:`rlcapture.trackers`, loaded by
name only inside the uploader process.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .registry import KINDS, adapter_class, closest_kind

if TYPE_CHECKING:
    from .adapter import RunInfo, Tracker

__all__ = [
    "TrackerSpec",
    "parse_tracker",
    "parse_trackers",
    "missing_package",
    "open_tracker",
    "DEFAULT_ATTEMPTS",
    "DEFAULT_UPLOAD_TIMEOUT",
]

#: Tries per upload before it is given up (and named at the end of the run).
DEFAULT_ATTEMPTS = 3
#: Seconds the end of a run waits for uploads still under way.
DEFAULT_UPLOAD_TIMEOUT = 60.0

# W&B: "project" or "entity/project": letters, digits, '-', '_', '.'.
_PROJECT = re.compile(r"[\w.-]{1,128}(/[\w.-]{1,128})?")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_CONTROL_ONLY = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class TrackerSpec:
    """One tracker to report to.

    Attributes:
        kind: A registered kind (:data:`~.registry.KINDS`): "wandb",
            "tensorboard" or "mlflow".
        target: The W&B project, the TensorBoard folder or the MLflow
            tracking URI; "" takes the default (project "rlcapture",
            ``OUT/tensorboard``, ``$MLFLOW_TRACKING_URI`` or ``OUT/mlruns``).
    """

    kind: str
    target: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind

    @property
    def extra(self) -> str:
        """The pip command that installs what this tracker needs."""
        return f'pip install "rlcapture[{KINDS[self.kind].extra}]"'


def _forms() -> str:
    """``wandb[:PROJECT], tensorboard[:DIR] or mlflow[:TRACKING_URI]``."""
    *most, last = (kind.form for kind in KINDS.values())
    return f"{', '.join(most)} or {last}" if most else last


def parse_tracker(text: Any) -> TrackerSpec:
    """``"mlflow:file:///data/mlruns"`` -> ``TrackerSpec("mlflow", "file:///data/mlruns")``.

    Raises:
        ValueError: The spec names no known tracker or its target is malformed
            (the message lists the valid forms).
    """
    forms = _forms()
    if not isinstance(text, str) or not text:
        raise ValueError(f"a tracker must be a non-empty string ({forms}), got {text!r}")
    kind, sep, target = text.partition(":")
    if kind not in KINDS:
        near = closest_kind(kind)
        hint = f" (did you mean {near!r}?)" if near else ""
        raise ValueError(f"unknown tracker {kind!r} in {text!r}{hint}; use {forms}")
    if sep and not target:
        raise ValueError(f"tracker {text!r}: nothing after ':'; drop it for the default")
    # A folder may hold spaces; a project or a URI may not.
    bad = _CONTROL_ONLY if kind == "tensorboard" else _CONTROL
    if bad.search(target):
        raise ValueError(f"tracker {text!r}: the target holds spaces or control characters")
    if kind == "wandb" and target and not _PROJECT.fullmatch(target):
        raise ValueError(
            f"tracker {text!r}: a W&B project is 'project' or 'entity/project' "
            "(letters, digits, '-', '_', '.')"
        )
    return TrackerSpec(kind, target)


def parse_trackers(specs: Any) -> tuple[str, ...]:
    """Check a list of tracker specs; returns them as a tuple of strings.

    Raises:
        ValueError: Not a list of strings, a malformed spec, or one tracker
            named twice.
    """
    if (
        isinstance(specs, str)
        or not isinstance(specs, (list, tuple))
        or not all(isinstance(s, str) and s for s in specs)
    ):
        raise ValueError(
            "loggers must be a list of tracker specs (non-empty strings such as "
            f"'wandb:myproject', 'tensorboard'), got {specs!r}"
        )
    seen: set[TrackerSpec] = set()
    for text in specs:
        spec = parse_tracker(text)
        if spec in seen:
            raise ValueError(f"tracker {text!r} is named twice")
        seen.add(spec)
    return tuple(specs)


def missing_package(spec: TrackerSpec) -> str | None:
    """The one line to print when ``spec``'s package is not installed (None: it is).

    Asks the import system whether the package can be found, without
    importing it (W&B takes a second to import, and the engine never does).
    """
    name = KINDS[spec.kind].package
    try:
        found = (
            sys.modules[name] is not None
            if name in sys.modules
            else (importlib.util.find_spec(name) is not None)
        )
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return f"--log {spec.kind} needs the {name} package: {spec.extra}"


def open_tracker(spec: TrackerSpec, run: RunInfo) -> Tracker:
    """Import ``spec``'s adapter and open its run.

    Raises:
        ImportError: The tracker's package is missing (the caller names the extra).
        Exception: Whatever the tracker raises when its run cannot be opened
            (an address where nothing listens...).
    """
    return adapter_class(spec.kind)(spec, run)
