"""Episodes from every actor into one folder and one manifest: settled once, judged by the keep rules.

An episode an actor finished arrives as a :class:`~.replies.Finished` (its
task's manifest line and the files it names). The collector gives it its
place in the evaluation (env 0, episode ``j`` for seed ``seeds[j]``), judges
it by the keep rules over the whole cluster, names its files after its seed
(:func:`final_names`), brings them into the output folder (a rename on shared
storage, a chunked copy otherwise: the episode waits in ``pending`` until its
last file is in), and appends its one line to the manifest. A seed is settled
once (:meth:`.plan.TaskPlan.settle`): a re-run's duplicate is dropped, so no
episode appears twice. An episode the keep rules drop later is evicted: its
files go, and an update line says so.

Nothing here talks to Ray; the driver hands it answers and asks it what an
actor's death costs (:meth:`EpisodeCollector.drop`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._backend.episode import FINISHED
from .._backend.keep import KeepPolicy
from .._backend.manifest import (
    ManifestFollower,
    ManifestWriter,
    file_names,
    forget_files,
    rename_files,
)
from .._backend.run_folder import RunFolder
from .actor import episode_files
from .fleet import Actor
from .plan import Task, TaskPlan
from .replies import Finished
from .transfer import FileCopy, Transfers

__all__ = ["EpisodeCollector", "final_names", "read_task_lines"]


@dataclass
class _Pending:
    """An episode kept but whose files are still on their way (stream mode)."""

    line: dict[str, Any]
    actor: int
    copies: list[FileCopy]
    left: int
    discard: str | None = None  # evicted meanwhile: why


class EpisodeCollector:
    """Settles each seed's episode once: its line in the manifest, its files in the folder.

    Args:
        out: The output folder.
        plan: The run's tasks and settled seeds.
        keep: The keep rules, over the whole cluster.
        transfers: The chunked copies (stream mode).
        manifest: The output folder's manifest (the collector is its only writer).
        prefix: The config's ``name_prefix`` (files are named ``PREFIXseedS``).
        episodes: Where each written line is appended (the run's result).
        events: Where a line is appended for each odd episode (the run's result).
        progress: Called with (episodes settled, steps) after each episode.
        files_in: Called with an actor's index once an episode's files from it
            are all in, so its finished tasks' folders may go.
    """

    def __init__(
        self,
        out: Path,
        plan: TaskPlan,
        keep: KeepPolicy,
        transfers: Transfers,
        manifest: ManifestWriter,
        prefix: str,
        episodes: list[dict[str, Any]],
        events: list[str],
        progress: Callable[[int, int], None] | None,
        files_in: Callable[[int], None],
    ) -> None:
        self.out = out
        self.plan = plan
        self.keep = keep
        self.transfers = transfers
        self.manifest = manifest
        self.prefix = prefix
        self.episodes = episodes
        self.events = events
        self.progress = progress
        self.files_in = files_in
        self.pending: dict[int, _Pending] = {}  # episode -> its files on their way
        self.written: dict[int, dict[str, Any]] = {}  # episode -> its line
        self.steps = 0

    # -- episodes in --------------------------------------------------------------------
    def collect(self, actor: Actor, task: Task, folder: str, episode: Finished, salvaged: bool) -> None:
        """Settle one episode from ``actor``'s task folder ``folder`` (or drop a duplicate).

        Args:
            salvaged: Read from a dead (or stopped) actor's folder: an episode
                its death cut short is left to run again.
        """
        record = episode.record
        seed = record.get("seed")
        j = self.plan.index.get(seed) if isinstance(seed, int) else None
        if j is None:
            self.events.append(f"{actor.name()} wrote an episode with an unknown seed {seed!r}; ignored")
            return
        if seed in self.plan.settled or j in self.pending:
            return  # a re-run's duplicate: its files stay in the task folder, removed with it
        if salvaged and record.get("end") not in FINISHED:
            return  # cut short by the actor's death: it runs again
        files = episode.files if episode.files is not None else episode_files(folder, record)
        line = _cluster_line(record, actor, task, j, seed)
        names = final_names(record, files, f"{self.prefix}seed{seed}")
        recorded = bool(files) or bool(record.get("frames"))
        evicted: list[tuple[Any, str]] = []
        if recorded and not self.keep.keeps_all:
            decision = self.keep.decide((0, j), line)
            line["kept"], line["why"] = decision.kept, decision.why
            evicted = decision.evicted
        rename_files(line, names)
        if line.get("kept") is False or not files:
            if line.get("kept") is False:
                forget_files(line)
            self._write(j, line)
        elif actor.shared:
            for rel, _size in files:
                target = self.out / names[rel]
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.replace(os.path.join(folder, rel), target)
            self._write(j, line)
        else:
            self._fetch(j, line, actor.index, [(os.path.join(folder, rel), names[rel], size) for rel, size in files])
        for key, why in evicted:
            self.evict(key[1], why)

    def salvage(self, actor: Actor, task: Task) -> int:
        """Settle what a dead actor's shared task folder holds finished; returns how many were new."""
        before = len(self.plan.settled)
        for record in read_task_lines(actor.folder):
            self.collect(actor, task, actor.folder, Finished(record), salvaged=True)
        return len(self.plan.settled) - before

    def _fetch(self, j: int, line: dict[str, Any], actor: int, files: list[tuple[str, str, int]]) -> None:
        """Copy an episode's files (remote path, final name, size) in; it is written when all are."""
        copies = [FileCopy(j, actor, remote, str(self.out / name), size) for remote, name, size in files]
        pending = _Pending(line, actor, copies, len(copies))
        self.pending[j] = pending
        for copy in copies:
            self.transfers.add(copy)
            if copy.size == 0:
                pending.left -= 1
        if pending.left == 0:
            self._settle_pending(j)

    def file_in(self, copy: FileCopy) -> None:
        """A copied file is whole: its episode is written once its last file is."""
        pending = self.pending.get(copy.key)
        if pending is None:
            return
        pending.left -= 1
        if pending.left == 0:
            self._settle_pending(copy.key)

    def _settle_pending(self, j: int) -> None:
        pending = self.pending.pop(j)
        line = pending.line
        if pending.discard is not None:
            for copy in pending.copies:
                Path(copy.local).unlink(missing_ok=True)
            line["kept"], line["why"] = False, pending.discard
            forget_files(line)
        self._write(j, line)
        self.files_in(pending.actor)

    def _write(self, j: int, line: dict[str, Any]) -> None:
        if not self.plan.settle(line["seed"]):
            return
        self.manifest.write(line)
        self.written[j] = line
        self.episodes.append(line)
        length = line.get("length")
        if isinstance(length, int):
            self.steps += length
        if self.progress is not None:
            self.progress(len(self.plan.settled), self.steps)

    # -- episodes out -------------------------------------------------------------------
    def evict(self, j: int, why: str) -> None:
        """The keep rules dropped episode ``j`` after it was written: its files go, an update says so."""
        pending = self.pending.get(j)
        if pending is not None:  # its files are still coming: drop them when in
            pending.discard = why
            return
        line = self.written.get(j)
        if line is None:
            return
        self.manifest.write({"env": 0, "episode": j, "kept": False, "why": why}, update=True)
        for name in file_names(line):
            path = self.out / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        line["kept"], line["why"] = False, why
        forget_files(line)

    def drop(self, actor: int) -> list[int]:
        """``actor`` died: the seeds of its episodes whose files had not all come in (to run again)."""
        lost = [j for j, p in self.pending.items() if p.actor == actor]
        if not lost:
            return []
        self.transfers.drop(actor)
        for j in lost:
            for copy in self.pending.pop(j).copies:
                copy.discard()
        return [self.plan.seeds[j] for j in lost]

    def discard_all(self) -> None:
        """Ctrl-C: forget every episode whose files are not all in, and their partial files."""
        for pending in self.pending.values():
            for copy in pending.copies:
                copy.discard()
                if os.path.exists(copy.local):
                    os.unlink(copy.local)
        self.pending.clear()

    # -- questions ----------------------------------------------------------------------
    def in_flight(self, seed: int) -> bool:
        """Whether ``seed``'s episode is kept and its files are on their way."""
        return self.plan.index[seed] in self.pending

    def holds(self, folder: str) -> bool:
        """Whether a file of ``folder`` (a task's) is still on its way."""
        prefix = folder + os.sep
        return any(c.remote.startswith(prefix) for p in self.pending.values() for c in p.copies)


def _cluster_line(record: dict[str, Any], actor: Actor, task: Task, j: int, seed: int) -> dict[str, Any]:
    """The task's line as the evaluation's: env 0, episode ``j``, and where it ran."""
    line = dict(record)
    # The evaluation is one stream of episodes on the cluster: env 0, episode j
    # (unique, and what `rlcapture replay DIR --env 0 --episode j` finds).
    line["task_env"], line["task_episode"] = record.get("env"), record.get("episode")
    line["env"], line["episode"], line["seed"], line["seed_index"] = 0, j, seed, j
    line["node"], line["actor"], line["task"] = actor.node, actor.index, task.id
    return line


def read_task_lines(folder: str) -> list[dict[str, Any]]:
    """The episode lines of a task's manifest (its updates left out), a torn last line skipped."""
    return [r for r in ManifestFollower(RunFolder(folder).manifest).read() if not r.get("update")]


def final_names(record: dict[str, Any], files: list[tuple[str, int]], stem: str) -> dict[str, str]:
    """Each of an episode's files renamed after its seed: ``videos/seed7.mp4``, ``frames/seed7/...``.

    Args:
        record: The task's manifest line (its file fields name the files).
        files: (path relative to the task's folder, size) of each file.
        stem: The new stem, ``PREFIXseedS``.

    Returns:
        Task-relative path -> path relative to the output folder, for each
        file and each name in the line's file fields.
    """
    local = _local_stem(record)
    names: dict[str, str] = {}
    keys = [rel for rel, _ in files] + file_names(record)
    for rel in keys:
        parts = rel.split("/")
        parts = [stem + p[len(local) :] if local and p.startswith(local) else p for p in parts]
        names[rel] = "/".join(parts)
    return names


def _local_stem(record: dict[str, Any]) -> str:
    """The stem the task named the episode's files with (``env0-ep3``)."""
    if isinstance(record.get("video"), str):
        return Path(record["video"]).stem
    if isinstance(record.get("images"), str):
        return Path(record["images"]).name
    for key in record.get("keyframes") or ():
        return Path(key).name.rpartition("-step")[0]
    return ""
