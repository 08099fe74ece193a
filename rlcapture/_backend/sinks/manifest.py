"""The manifest and the keep rules as a sink (:mod:`..manifest`, :mod:`..keep`).

Every episode gets its line, recorded or not. A recorded episode that ended is
first judged by the keep rules (unless they keep everything): a discarded
one's files are deleted, its line keeping their counts but not their names;
one a ranked rule holds is remembered, and when a later episode pushes it out
an update line says so before its files go (a crash in between leaves a file
the manifest calls discarded, never a line naming a missing file).

This sink also watches the output folder: open files stay writable after
their folder is removed, so without that check a run would go on "recording"
into deleted files.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from ..keep import KeepPolicy, KeepRule
from ..manifest import MANIFEST, ManifestWriter, forget_files
from ..outputs import delete_paths
from .base import Ending, OutputWriteError, Sink, reason

__all__ = ["ManifestSink"]

Key = tuple[int, int]


class ManifestSink(Sink):
    """Appends each episode's line to ``<out_dir>/<name>`` and applies the keep rules.

    Args:
        out_dir: The run's folder.
        name: The manifest's file name in it.
        keep: Which ended episodes keep their files.
        seed: Seeds the keep rules' random samples.
    """

    def __init__(
        self,
        out_dir: str,
        name: str = MANIFEST,
        keep: tuple[KeepRule, ...] = (KeepRule("all"),),
        seed: int = 0,
    ) -> None:
        self.out_dir = out_dir
        self.name = name
        self.keep = KeepPolicy(keep, seed)
        self.manifest = ManifestWriter(os.path.join(out_dir, name))
        self.failed = False  # no more lines can go to the manifest
        self.episodes = 0
        self.held: dict[Key, list[str]] = {}  # files of episodes a ranked rule may push out

    def record(self, ending: Ending) -> None:
        record = ending.record
        if ending.aborting:  # no judging: every file written stays, with its line
            if not self.failed:
                try:
                    self.manifest.write(record)
                except OSError:
                    self.failed = True
            return
        evicted: list[tuple[Key, str]] = []
        if ending.recorded and not self.keep.keeps_all:  # only recorded episodes are judged
            decision = self.keep.decide(ending.key, record)
            record["kept"] = decision.kept
            record["why"] = decision.why
            evicted = decision.evicted
            if not decision.kept:
                self._discard(record, ending.files)
            elif self.keep.held(ending.key):
                self.held[ending.key] = ending.files
        try:
            self._write(record)
        except OutputWriteError:
            if ending.error is None:
                raise  # else the episode's own error is the one to report
        self.episodes += 1
        for key, why in evicted:
            self._write({"env": key[0], "episode": key[1], "kept": False, "why": why}, update=True)
            delete_paths(self.held.pop(key, []))

    def _discard(self, record: dict[str, Any], paths: list[str]) -> None:
        """Delete a discarded episode's files; its line keeps the counts, not the names."""
        failed = delete_paths(paths)
        forget_files(record)
        if failed:
            record["not_deleted"] = [os.path.relpath(p, self.out_dir) for p in failed]

    def _write(self, record: dict[str, Any], update: bool = False) -> None:
        try:
            self.manifest.write(record, update=update)
        except OSError as exc:
            self.failed = True
            raise OutputWriteError(
                exc.errno,
                f"writing {os.path.relpath(self.manifest.path, self.out_dir)} failed after "
                f"{self.manifest.lines} lines: {reason(exc)}",
            ) from exc

    def check(self) -> None:
        """Stop if the output folder was removed or moved: writes would go nowhere."""
        if not self.failed and self.manifest.moved():
            self.failed = True
            raise OutputWriteError(
                errno.ENOENT,
                f"the output folder {self.out_dir} was removed or moved "
                f"({self.name} is gone) after {self.episodes} episodes; "
                "nothing more can be recorded there",
            )

    def close(self) -> None:
        self.manifest.close()

    def abort(self) -> None:
        try:
            self.manifest.close()
        except OSError:
            pass
