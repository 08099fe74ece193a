"""``rlcapture bench``'s measuring, shared with ``benchmarks/``: a tool above the engine.

One module per part: :mod:`.command` (the driver that runs the trials side by
side; its flags are in :mod:`rlcapture.cli.bench`), :mod:`.variants` (what is
compared), :mod:`.trial` (one run in its own process), :mod:`.measure` (time, CPU
and memory of a process tree; also imported by the scripts in ``benchmarks/``),
:mod:`.report` (medians, per-frame costs, the table) and :mod:`.chart` (the PNG).
"""

from __future__ import annotations

from .command import bench

__all__ = ["bench"]
