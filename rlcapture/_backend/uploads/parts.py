"""Which parts of an episode's manifest line go to the trackers.

Both sides of the uploader ask the same question: the process, to know what
to send; the recorder, at the end, to know what should have been sent and
name what was not.
"""

from __future__ import annotations

from typing import Any

from ..episode import FINISHED

__all__ = ["upload_parts"]


def upload_parts(record: dict[str, Any]) -> list[str]:
    """What of an episode's (folded) manifest line goes to the trackers.

    ``"stats"`` once it finished on its own (terminated or truncated: it has
    a return to plot); ``"video"`` when it has a video kept by the keep rules.
    """
    parts = []
    if record.get("update") is not True and record.get("end") in FINISHED:
        parts.append("stats")
    if record.get("video") and record.get("kept", True) is not False:
        parts.append("video")
    return parts
