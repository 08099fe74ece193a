"""Tracker kinds by name: the one table that says which adapter serves ``--log KIND``.

The core names each tracker's adapter by its dotted path and imports it with
:mod:`importlib` inside the uploader process only, so no module of the engine
imports the trackers integration (:mod:`rlcapture.trackers`), and the
recording process never loads W&B (a second of import), MLflow or
TensorBoard. A new tracker is a module in ``rlcapture/trackers/`` with a
:class:`~.adapter.Tracker` subclass, and one line here.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .adapter import Tracker

__all__ = ["TrackerKind", "KINDS", "closest_kind", "adapter_class"]


@dataclass(frozen=True)
class TrackerKind:
    """One kind of tracker, as the spec grammar and the uploader process know it.

    Attributes:
        name: The spec's kind (``--log NAME[:TARGET]``).
        form: How ``--log`` takes it, for messages (``wandb[:PROJECT]``).
        adapter: ``"module:Class"`` of its :class:`~.adapter.Tracker` subclass.
        package: The import name of the package it needs.
        extra: The pip extra of rlcapture that installs that package.
    """

    name: str
    form: str
    adapter: str
    package: str
    extra: str


#: Every tracker kind, by name, in the order messages list them.
KINDS: dict[str, TrackerKind] = {
    kind.name: kind
    for kind in (
        TrackerKind(
            "wandb", "wandb[:PROJECT]", "rlcapture.trackers.wandb:WandbTracker", "wandb", "wandb"
        ),
        TrackerKind(
            "tensorboard",
            "tensorboard[:DIR]",
            "rlcapture.trackers.tensorboard:TensorBoardTracker",
            "tensorboard",
            "tensorboard",
        ),
        TrackerKind(
            "mlflow",
            "mlflow[:TRACKING_URI]",
            "rlcapture.trackers.mlflow:MlflowTracker",
            "mlflow",
            "mlflow",
        ),
    )
}


def closest_kind(name: str) -> str | None:
    """The registered kind ``name`` was probably meant to be (a typo), or None."""
    near = difflib.get_close_matches(name.lower(), KINDS, n=1)
    return near[0] if near else None


def adapter_class(kind: str) -> type[Tracker]:
    """Import the adapter of ``kind`` by its dotted path; returns its class.

    Raises:
        KeyError: ``kind`` is not registered (specs are checked before this).
        ImportError: The adapter's module or the tracker's package is missing.
    """
    module, _, name = KINDS[kind].adapter.partition(":")
    cls: type[Tracker] = getattr(importlib.import_module(module), name)
    return cls
