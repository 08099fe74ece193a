"""Where actors write: in the output folder itself (shared storage) or on their node, streamed back.

``storage="shared"``: every node sees the driver's output folder at the same
path (NFS, a cluster file system, or one machine), so an actor's evaluate
writes its task's files straight into a staging folder under it and the
driver only renames finished files into place. ``storage="stream"``: actors
write into a scratch folder on their own node, and the driver copies finished
files it keeps through Ray, in chunks (:mod:`.transfer`). ``"auto"`` asks every
actor: the driver writes a random token into the output folder's staging
folder, and the folder counts as shared if each actor reads back that same
token at that same path (a path that exists on a node but is another disk
holds no such token).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from .._backend.run_folder import STAGING
from ..errors import ConfigError

__all__ = ["STORAGE_MODES", "STAGING", "check_storage", "write_token", "sees_token", "scratch_root"]

STORAGE_MODES = ("auto", "shared", "stream")
# STAGING (the output folder's hidden staging folder: tasks' folders in shared
# mode, the token) is named by the run folder, which owns the folder's layout.
_TOKEN = "token"


def check_storage(storage: str) -> str:
    if storage not in STORAGE_MODES:
        raise ConfigError(f"storage must be one of {', '.join(STORAGE_MODES)}, got {storage!r}")
    return storage


def write_token(staging: Path) -> str:
    """Write a fresh token into ``staging``; returns it."""
    token = secrets.token_hex(16)
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = staging / _TOKEN
    tmp = staging / f".{_TOKEN}.{os.getpid()}"
    tmp.write_text(token)
    os.replace(tmp, path)
    return token


def sees_token(staging: str, token: str) -> bool:
    """Run on an actor: whether its node sees ``staging`` with this run's token in it."""
    try:
        return (Path(staging) / _TOKEN).read_text() == token
    except OSError:
        return False


def scratch_root(scratch: str | None, run_id: str) -> str:
    """The node-local folder of this run's tasks in stream mode (created by each actor)."""
    base = scratch if scratch is not None else tempfile.gettempdir()
    if not isinstance(base, str) or not base:
        raise ConfigError(f"scratch must be a folder path, got {scratch!r}")
    return os.path.join(base, f"rlcapture-ray-{run_id}")
