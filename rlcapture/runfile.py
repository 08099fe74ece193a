"""``run.json``: what a run was, written beside its manifest so it can be replayed.

The manifest says how each episode started (its seed, or its generator's
state); ``run.json`` says what ran: the env id and its keyword arguments, the
time limit, the policy as it was named, the seeds of an evaluation, how the
videos were encoded, and which rlcapture wrote it. ``rlcapture replay`` reads
it back so a single episode can be re-rendered with nothing but the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["RUN_FILE", "read_run_file", "write_run_file", "describe_seeds"]

RUN_FILE = "run.json"


def describe_seeds(seeds: Any) -> Any:
    """A seed plan in JSON: ``{"start", "stop", "step"}`` for a range, else the list."""
    if seeds is None:
        return None
    if isinstance(seeds, range):
        return {"start": seeds.start, "stop": seeds.stop, "step": seeds.step}
    return [int(s) for s in seeds]


def write_run_file(out: str | os.PathLike[str], info: dict[str, Any]) -> Path:
    """Write ``out/run.json`` (whole or not at all: a temporary file renamed over it)."""
    from . import __version__

    path = Path(out) / RUN_FILE
    tmp = path.with_name(f".{RUN_FILE}.{os.getpid()}")
    body = {"rlcapture": __version__, **info}
    tmp.write_text(json.dumps(body, indent=2, default=repr) + "\n")
    os.replace(tmp, path)
    return path


def read_run_file(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``out/run.json`` as a dict, or None if the run wrote none.

    Raises:
        ConfigError: The file is there but is not a JSON object.
    """
    path = Path(out) / RUN_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{str(path)!r} is not valid JSON ({exc}); remove it or fix it") from None
    if not isinstance(info, dict):
        raise ConfigError(f"{str(path)!r} does not hold a JSON object")
    return info
