"""``episodes.jsonl``: one JSON line per finished episode, appended and never rewritten.

Each line is written with a single ``write`` on a file opened for appending,
so a line is on disk (in the page cache) before the next episode is handled
and a crash cannot leave earlier lines half-written.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

__all__ = ["Manifest", "FIELDS", "read_manifest"]

#: Field order of a line; fields beyond these follow in the order given.
FIELDS = ("env", "episode", "seed", "return", "length", "time", "video", "frames", "dropped", "end")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Manifest:
    """Appends episode records to a JSONL file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.lines = 0

    def write(self, record: dict[str, Any]) -> None:
        ordered = {k: _clean(record.get(k)) for k in FIELDS}
        ordered.update({k: _clean(v) for k, v in record.items() if k not in ordered})
        line = json.dumps(ordered, separators=(", ", ": ")) + "\n"
        data = line.encode()
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk: say so rather than leave half a line
            raise OSError(f"only {written} of {len(data)} bytes of a manifest line were written")
        self.lines += 1

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read every complete line of a manifest (a torn last line is skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            records.append(json.loads(line))
    return records
