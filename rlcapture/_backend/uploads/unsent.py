"""What did not reach the trackers: the uploader's report against the manifests.

The uploader process says what each tracker took; only the recorder can say
what each should have taken (it reads the manifests once the recording is
over) and write down the difference, in the summary (one ``NOT SENT`` line
per tracker) and in the manifests (an update line per episode, which
:func:`~rlcapture._backend.manifest.read_manifest` folds into its record).
"""

from __future__ import annotations

from typing import Any

from ..manifest import ManifestWriter, read_manifest
from .messages import Report
from .parts import upload_parts

__all__ = ["unsent"]

_Episode = tuple[str, int, int]  # (manifest, env, episode)


def unsent(
    specs: tuple[str, ...], manifests: list[str], report: Report | None, how: str
) -> dict[str, Any]:
    """What each manifest's episodes should have sent, against what was sent.

    Args:
        specs: The tracker specs the uploader served.
        manifests: The manifests it followed.
        report: Its report (None: it sent none, see ``how``).
        how: How the uploader process ended when it did not report ("": it did).

    Returns:
        ``{"uploads": {spec: {"sent": n, "not_sent": m, "error": ...}},
        "not_uploaded": [one line per tracker that missed something]}``; the
        manifests get an update line per episode that missed something.
    """
    trackers = report.trackers if report is not None else {}
    sent = {
        spec: {tuple(k) for k in trackers[spec].sent} if spec in trackers else set()
        for spec in specs
    }
    missing: dict[str, dict[_Episode, list[str]]] = {s: {} for s in specs}
    for path in manifests:
        try:
            records = read_manifest(path)
        except FileNotFoundError:
            continue
        for record in records:
            for part in upload_parts(record):
                key = (path, record["env"], record["episode"])
                for spec in specs:
                    if (*key, part) not in sent[spec]:
                        missing[spec].setdefault(key, []).append(part)
    uploads: dict[str, Any] = {}
    lines: list[str] = []
    for spec in specs:
        gone = missing[spec]
        parts = [p for ps in gone.values() for p in ps]
        error = how or (trackers[spec].error if spec in trackers else None)
        uploads[spec] = {"sent": len(sent[spec]), "not_sent": len(parts), "error": error}
        if parts:
            lines.append(f"{spec}: {_what(parts)} not sent ({error or 'no reason given'})")
    _note(missing)
    return {"uploads": uploads, "not_uploaded": lines}


def _what(parts: list[str]) -> str:
    """``3 episodes' statistics, 1 video``."""
    videos, stats = parts.count("video"), parts.count("stats")
    said = []
    if stats:
        said.append(
            f"{stats} episode's statistics" if stats == 1 else f"{stats} episodes' statistics"
        )
    if videos:
        said.append(f"{videos} video" if videos == 1 else f"{videos} videos")
    return ", ".join(said)


def _note(missing: dict[str, dict[_Episode, list[str]]]) -> None:
    """An update line per episode that missed a tracker, in its manifest."""
    per_episode: dict[_Episode, dict[str, list[str]]] = {}
    for spec, episodes in missing.items():
        for key, parts in episodes.items():
            per_episode.setdefault(key, {})[spec] = parts
    writers: dict[str, ManifestWriter] = {}
    try:
        for (path, env, episode), parts_of in sorted(per_episode.items()):
            try:
                if path not in writers:
                    writers[path] = ManifestWriter(path)
                writers[path].write(
                    {"env": env, "episode": episode, "not_uploaded": parts_of}, update=True
                )
            except OSError:
                continue  # the summary still names them
    finally:
        for writer in writers.values():
            writer.close()
