"""The driver: one evaluation over a Ray cluster, one output folder, one manifest.

:func:`evaluate_on_ray` cuts the seeds into tasks (:mod:`.plan`), starts
actors (:mod:`.actor`) that each reserve ``num_cpus`` CPUs on some node, and
waits on all of them at once with ``ray.wait`` and a timeout. Each actor
answers long polls with the episodes that ended since the last one; the driver
judges each episode by the keep rules over the whole cluster, brings the kept
episodes' files into the output folder (a rename on shared storage, a chunked
copy otherwise: :mod:`.storage`, :mod:`.transfer`), then appends the episode's
one line to the manifest. The driver is the manifest's only writer, and
a seed is settled once, so no episode appears twice.

Faults: an actor whose call fails with ``RayActorError`` (its process or its
node died), or that has not answered a poll for ``timeout`` seconds, is
dropped; its task's unsettled seeds go back to the front of the queue with the
same seeds (episode ``j`` keeps seed ``seeds[j]``), its episodes already
settled stay, and a new actor is asked for in its place. On shared storage the
lines its evaluate wrote but the driver had not polled yet are read from its
task folder, so nothing it finished is run twice. The run ends with a line per
such event in :attr:`ClusterResult.events`. Ctrl-C kills the actors (their
encoders close the videos they hold), writes the lines of every episode whose
files are whole, removes the staging folders, and raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
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
from .._backend.remote_error import RemoteError, rebuild
from .._backend.run_folder import RunFolder, describe_seeds
from ..config import RecordConfig
from ..errors import (
    ConfigError,
    EnvError,
    OutputError,
    ProcessDiedError,
)
from ..evaluate import EpisodeResult, EvaluationResult
from .actor import EvalActor, episode_files
from .connect import RayConnection
from .plan import Task, TaskPlan, check_cluster_seeds, default_task_size
from .storage import STAGING, check_storage, scratch_root, write_token
from .transfer import DEFAULT_CHUNK, DEFAULT_WINDOW, FileCopy, Transfers

__all__ = ["ClusterResult", "RayEvaluation", "evaluate_on_ray"]

_POLL = 1.0  # seconds an actor holds a poll open waiting for an episode to end
_MAX_ATTEMPTS = 3  # runs of a seed whose task ended without its episode
_OWN_ERRORS = (EnvError, ConfigError, OutputError)  # a task's errors raised on the driver as themselves


@dataclass
class ClusterResult:
    """What an evaluation on Ray produced.

    Attributes:
        out: The output folder (the manifest, ``videos/``).
        seeds: The seeds asked for.
        episodes: One manifest record per settled episode, in evaluation
            order (``episode`` is its index ``j``, ``seed`` is ``seeds[j]``).
        storage: "shared" (actors wrote into ``out``) or "stream" (files
            copied through Ray).
        nodes: Ray node id -> address, of the nodes that ran actors.
        actors: Actors started (replacements included).
        tasks: Tasks run (re-runs included).
        events: One line per actor lost, re-run or refused.
        interrupted: Ctrl-C stopped the run (``episodes`` holds what was whole).
        elapsed: Seconds from the call to the end.
        startup: Seconds from the call to the first task's start.
        streamed_bytes, streamed_chunks, streamed_files: What came through Ray.
    """

    out: Path
    seeds: tuple[int, ...] | range = ()
    episodes: list[dict[str, Any]] = field(default_factory=list)
    storage: str = ""
    nodes: dict[str, str] = field(default_factory=dict)
    actors: int = 0
    tasks: int = 0
    events: list[str] = field(default_factory=list)
    interrupted: bool = False
    elapsed: float = 0.0
    startup: float = 0.0
    streamed_bytes: int = 0
    streamed_chunks: int = 0
    streamed_files: int = 0

    @property
    def returns(self) -> list[float]:
        return [float(r["return"]) for r in self.episodes if r.get("end") in FINISHED]

    def evaluation(self) -> EvaluationResult:
        """The same episodes as the :class:`~rlcapture.evaluate.EvaluationResult` a local run returns."""
        episodes = [
            EpisodeResult(
                seed=int(r["seed"]),
                index=int(r["episode"]),
                ret=float("nan") if r.get("return") is None else float(r["return"]),
                length=int(r.get("length") or 0),
                end=str(r.get("end")),
                env=int(r.get("env") or 0),
                episode=int(r["episode"]),
                video=self.out / r["video"] if r.get("video") else None,
            )
            for r in self.episodes
        ]
        return EvaluationResult(self.out, episodes, self.seeds, self.interrupted)

    def describe_storage(self) -> str:
        if self.storage == "shared":
            return f"shared: every node wrote into {self.out}"
        return (
            f"stream: {self.streamed_files} files ({self.streamed_bytes / 2**20:.1f} MiB in "
            f"{self.streamed_chunks} chunks) copied to {self.out} through Ray"
        )


@dataclass
class _Actor:
    index: int
    handle: Any
    since: float
    state: str = "starting"  # starting, preparing, idle, busy, dead
    info: dict[str, Any] = field(default_factory=dict)
    task: Task | None = None
    folder: str = ""
    polled: float = 0.0  # when the outstanding poll was sent
    shared: bool = False  # its tasks write into the output folder's staging folder
    stale: list[str] = field(default_factory=list)  # finished task folders with files on their way

    def name(self) -> str:
        node = self.info.get("node", "")
        where = f" on node {node[:12]} ({self.info.get('ip', '?')}, pid {self.info.get('pid', '?')})" if node else ""
        return f"actor {self.index}{where}"


@dataclass
class _Pending:
    """An episode kept but whose files are still on their way (stream mode)."""

    record: dict[str, Any]
    actor: int
    copies: list[FileCopy]
    left: int
    discard: str | None = None  # evicted meanwhile: why


class RayEvaluation:
    """One evaluation on Ray; :meth:`run` does it. See :func:`evaluate_on_ray` for the arguments."""

    def __init__(
        self,
        env: Any,
        policy: Any = None,
        seeds: Sequence[int] | None = None,
        *,
        episodes: int | None = None,
        seed: int = 0,
        num_envs: int = 1,
        out: str | os.PathLike[str],
        config: RecordConfig | None = None,
        address: str | None = None,
        actors: int | None = None,
        num_cpus: float | None = None,
        task_size: int | None = None,
        storage: str = "auto",
        scratch: str | None = None,
        chunk_mib: float = DEFAULT_CHUNK / 2**20,
        overwrite: bool = False,
        progress: Callable[[int, int], None] | None = None,
        timeout: float = 60.0,
        start_timeout: float = 120.0,
        init_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        if seeds is None:
            if episodes is None:
                raise ConfigError("give seeds=[...] or episodes=K (seeds seed .. seed+K-1)")
            if not (isinstance(episodes, int) and episodes >= 1):
                raise ConfigError(f"episodes must be a positive integer, got {episodes!r}")
            seeds = range(int(seed), int(seed) + episodes)
        self.seeds = check_cluster_seeds(seeds)
        self.seed_plan = seeds if isinstance(seeds, range) else self.seeds
        if not (isinstance(num_envs, int) and 1 <= num_envs <= 1024):
            raise ConfigError(f"num_envs must be an integer from 1 to 1024, got {num_envs!r}")
        if actors is not None and not (isinstance(actors, int) and actors >= 1):
            raise ConfigError(f"actors must be a positive integer, got {actors!r}")
        if num_cpus is None:
            num_cpus = float(num_envs)
        if not (isinstance(num_cpus, (int, float)) and 0 < num_cpus <= 4096):
            raise ConfigError(f"num_cpus must be a positive number, got {num_cpus!r}")
        if task_size is not None and not (isinstance(task_size, int) and task_size >= 1):
            raise ConfigError(f"task_size must be a positive integer, got {task_size!r}")
        if not (isinstance(chunk_mib, (int, float)) and 1 / 1024 <= chunk_mib <= 1024):
            raise ConfigError(f"chunk_mib must be from 1/1024 (1 KiB) to 1024, got {chunk_mib!r}")
        for name, value in (("timeout", timeout), ("start_timeout", start_timeout)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        record_options = {k: options.pop(k) for k in list(options) if k in RecordConfig.option_names()}
        config = (config or RecordConfig()).replace(**record_options) if record_options or config else RecordConfig()
        if config.mosaic is not None:
            raise ConfigError("mosaic is not available on a cluster (each actor has its own envs); drop --mosaic")
        self.config = config
        self.task_config = config.replace(keep="all", name_prefix="")
        self.env, self.policy, self.num_envs = env, policy, num_envs
        self.out = Path(out)
        self.folder = RunFolder(self.out)  # its lock, layout and run.json
        self.address, self.init_options = address, init_options
        self.want_actors, self.num_cpus, self.task_size = actors, float(num_cpus), task_size
        self.storage = check_storage(storage)
        self.scratch = scratch
        self.chunk = int(chunk_mib * 2**20)
        self.overwrite = overwrite
        self.progress = progress
        self.timeout, self.start_timeout = float(timeout), float(start_timeout)
        self.options = options
        self.result = ClusterResult(self.out, self.seed_plan if isinstance(self.seed_plan, range) else tuple(self.seeds))

    # -- output folder ------------------------------------------------------------
    def _open_folder(self) -> None:
        """Lock the folder, refuse or clear an earlier recording, as the Recorder does."""
        self.folder.open(self.overwrite)
        self.manifest = ManifestWriter(str(self.folder.manifest))

    def _forget_folder(self) -> None:
        """A run that wrote no episode leaves no recording behind, so a rerun is not refused."""
        self.folder.forget_if_empty()

    def _close_folder(self) -> None:
        manifest = getattr(self, "manifest", None)
        if manifest is not None:
            manifest.close()
        self.folder.release()

    # -- the run ----------------------------------------------------------------------
    def run(self) -> ClusterResult:
        """Run the evaluation; returns its :class:`ClusterResult`.

        Raises:
            KeyboardInterrupt: After the cleanup, with :attr:`result` holding
                what was written.
        """
        t0 = time.perf_counter()
        self._open_folder()
        try:
            with RayConnection(self.address, self.init_options) as conn:
                self.ray = conn.ray
                try:
                    self._run(t0)
                except KeyboardInterrupt:
                    self.result.interrupted = True
                    self._interrupt()
                    raise
                finally:
                    self._stop_actors()
                    self._clean_staging()
        finally:
            self._tally()
            if self.result.episodes:
                self._write_run_file()
            self._close_folder()
            if not self.result.episodes:
                self._forget_folder()
            self.result.elapsed = time.perf_counter() - t0
            self.result.episodes.sort(key=lambda r: r["episode"])
        return self.result

    def _run(self, t0: float) -> None:
        ray = self.ray
        from ray import cloudpickle

        self.run_id = secrets.token_hex(4)
        self.staging = self.out / STAGING / self.run_id
        self.token = write_token(self.staging)
        self.scratch_root = scratch_root(self.scratch, self.run_id)
        try:
            self.blob = cloudpickle.dumps(
                {"env": self.env, "policy": self.policy, "num_envs": self.num_envs,
                 "config": self.task_config, "options": self.options}
            )
        except Exception as exc:  # noqa: BLE001 - whatever cannot be pickled
            raise ConfigError(f"the env or policy cannot be sent to the cluster: {type(exc).__name__}: {exc}") from None
        cpus = float(ray.cluster_resources().get("CPU", 0))
        if cpus < self.num_cpus:
            raise ConfigError(
                f"each actor reserves {self.num_cpus:g} CPUs (num_cpus) but the cluster has {cpus:g}; "
                "lower num_cpus/num_envs or add nodes"
            )
        fit = int(cpus // self.num_cpus)
        most = math.ceil(len(self.seeds) / self.num_envs)
        self.n_actors = min(self.want_actors or fit, most)
        size = self.task_size or default_task_size(len(self.seeds), self.n_actors, self.num_envs)
        self.plan = TaskPlan(self.seeds, size)
        self.keep = KeepPolicy(self.config.keep, self.config.keep_seed)
        self.transfers = Transfers(self.chunk, DEFAULT_WINDOW)
        self.cls = ray.remote(EvalActor)
        self.actors: dict[int, _Actor] = {}
        self.refs: dict[Any, tuple[str, int, Any]] = {}
        self.pending: dict[int, _Pending] = {}  # episode -> files on their way
        self.written: dict[int, dict[str, Any]] = {}  # episode -> its line
        self.steps = 0
        self.shared: bool | None = None
        self.replacements = 0
        for _ in range(self.n_actors):
            self._spawn()
        first = True
        while not self.plan.done:
            self._assign()
            if first and self.plan.running:
                self.result.startup = time.perf_counter() - t0
                first = False
            self._request_chunks()
            self._check_liveness()
            live = [a for a in self.actors.values() if a.state != "dead"]
            if not live:
                raise ProcessDiedError(
                    "every actor of the evaluation died or could not start ("
                    + "; ".join(self.result.events[-3:]) + "); check the cluster with `ray status`",
                    "ray actors",
                )
            refs = list(self.refs)
            if not refs:  # nothing outstanding (cannot last: a queued task meets an idle actor)
                time.sleep(_POLL / 10)
                continue
            ready, _ = ray.wait(refs, num_returns=1, timeout=_POLL)
            if ready:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                self._answer(ref)
        self.result.storage = "shared" if self.shared else "stream"

    def _write_run_file(self) -> None:
        """``run.json`` as :func:`rlcapture.evaluate` writes it, plus how the cluster ran it."""
        env = self.env
        info = {
            "command": "evaluate_on_ray",
            "env": env if isinstance(env, str) else None,
            "env_factory": None if isinstance(env, str) else repr(env),
            "env_kwargs": dict(self.options.get("env_kwargs") or {}),
            "max_episode_steps": self.options.get("max_episode_steps"),
            "imports": list(self.options.get("imports") or ()),
            "policy": "random" if self.policy is None else self.policy if isinstance(self.policy, str) else None,
            "deterministic": self.options.get("deterministic", True),
            "seeds": describe_seeds(self.seed_plan),
            "num_envs": self.num_envs,
            "video": asdict(self.config.video),
            "ray": {
                "storage": self.result.storage,
                "nodes": self.result.nodes,
                "actors": self.result.actors,
                "tasks": self.result.tasks,
                "events": self.result.events,
                "interrupted": self.result.interrupted,
            },
        }
        from .. import __version__

        try:
            self.folder.write_run_file(info, version=__version__)
        except OSError:
            pass

    def _tally(self) -> None:
        transfers = getattr(self, "transfers", None)
        if transfers is not None:
            self.result.streamed_bytes = transfers.bytes
            self.result.streamed_chunks = transfers.chunks
            self.result.streamed_files = transfers.files
        if self.result.storage == "" and getattr(self, "shared", None) is not None:
            self.result.storage = "shared" if self.shared else "stream"

    # -- actors -------------------------------------------------------------------------
    def _spawn(self) -> None:
        index = len(self.actors)
        handle = self.cls.options(
            num_cpus=self.num_cpus,
            max_concurrency=4,
            max_restarts=0,
            scheduling_strategy="SPREAD",
            name=f"rlcapture-{self.run_id}-{index}",
        ).remote(index)
        actor = _Actor(index, handle, time.monotonic())
        self.actors[index] = actor
        self.result.actors += 1
        self._call(actor, "hello", handle.hello.remote())

    def _call(self, actor: _Actor, kind: str, ref: Any, extra: Any = None) -> None:
        self.refs[ref] = (kind, actor.index, extra)

    def _answer(self, ref: Any) -> None:
        kind, index, extra = self.refs.pop(ref)
        actor = self.actors[index]
        ray = self.ray
        gone = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.NodeDiedError)
        try:
            value = ray.get(ref, timeout=self.timeout)
        except Exception as exc:
            if kind == "chunk":
                self.transfers.failed()
            if kind == "remove":
                return  # a failed clean-up changes nothing of the run
            if isinstance(exc, gone):  # the actor, or the node holding its answer, is gone
                self._lost(actor, exc)
                return
            raise ProcessDiedError(f"{actor.name()}: {kind} failed: {_first_line(exc)}", f"actor {index}") from exc
        if actor.state == "dead":
            if kind == "chunk":
                self.transfers.failed()
            return
        if kind == "hello":
            actor.info = value
            self.result.nodes[value["node"]] = value["ip"]
            actor.state = "preparing"
            staging = str(self.staging.resolve())
            self._call(actor, "prepare", actor.handle.prepare.remote(self.blob, staging, self.token, self.scratch_root))
        elif kind == "prepare":
            self._prepared(actor, value)
        elif kind == "start":
            actor.folder = value
            self._poll(actor)
        elif kind == "poll":
            self._polled(actor, value)
        elif kind == "chunk":
            copy, offset, length = extra
            if self.transfers.received(copy, offset, value, length):
                self._file_in(copy)

    def _prepared(self, actor: _Actor, value: dict[str, Any]) -> None:
        if value["error"]:
            raise EnvError(
                f"{actor.name()} {value['error']}; install the env's package on every node "
                "(or ship it with init_options={'runtime_env': {'py_modules': [...]}})"
            )
        shared = bool(value["shared"])
        if self.storage == "shared" and not shared:
            raise ConfigError(
                f"storage='shared' but {actor.name()} does not see {self.out} at the same path; "
                "use storage='stream' (or 'auto')"
            )
        if self.shared is None:
            self.shared = shared if self.storage == "auto" else self.storage == "shared"
        elif self.storage == "auto" and self.shared and not shared:
            # A node without the shared folder joined: stream from now on (renames still work for the others).
            self.result.events.append(f"{actor.name()} does not see {self.out}: its files are streamed")
        actor.shared = shared and self.storage != "stream"
        actor.state = "idle"

    def _assign(self) -> None:
        for actor in self.actors.values():
            if actor.state != "idle":
                continue
            task = self.plan.take(actor.index)
            if task is None:
                return
            actor.state, actor.task = "busy", task
            actor.polled = time.monotonic()  # the start call counts as a poll for liveness
            self.result.tasks += 1
            root = str(self.staging.resolve()) if actor.shared else self.scratch_root
            self._call(actor, "start", actor.handle.start.remote(task.id, task.seeds, root))

    def _poll(self, actor: _Actor) -> None:
        actor.polled = time.monotonic()
        self._call(actor, "poll", actor.handle.poll.remote(_POLL))

    def _check_liveness(self) -> None:
        now = time.monotonic()
        for actor in list(self.actors.values()):
            if actor.state in ("starting", "preparing") and now - actor.since > self.start_timeout:
                self._lost(actor, f"not placed or not ready after {self.start_timeout:g} s (cluster CPUs busy?)", retire=True)
            elif actor.state == "busy" and actor.polled and now - actor.polled > self.timeout + _POLL:
                self._lost(actor, f"no answer for {self.timeout:g} s")

    def _polled(self, actor: _Actor, value: dict[str, Any]) -> None:
        task = actor.task
        assert task is not None
        for record in value["records"]:
            self._episode(actor, task, value["dir"], record, salvaged=False)
        if not value["done"]:
            self._poll(actor)
            return
        error: RemoteError | None = value["error"]
        if error is not None:
            exc = rebuild(error)
            message = f"{actor.name()}, task of seeds {_seeds(task.seeds)}: {error.kind}: {error.first_line}"
            if isinstance(exc, _OWN_ERRORS):
                raise type(exc)(message) from exc
            raise ProcessDiedError(message + "\n" + error.traceback, f"actor {actor.index}") from exc
        left = [s for s in self.plan.finish(task.id) if not self._in_flight(s)]
        if left:
            if task.attempt + 1 >= _MAX_ATTEMPTS:
                raise ProcessDiedError(
                    f"seeds {_seeds(left)} ended without an episode {_MAX_ATTEMPTS} times; last on {actor.name()}",
                    f"actor {actor.index}",
                )
            self.plan.retry(left, task.attempt + 1)
            self.result.events.append(f"{actor.name()}: task ended without seeds {_seeds(left)}; they run again")
        self._done_with_folder(actor, value["dir"])
        actor.task, actor.state = None, "idle"

    def _done_with_folder(self, actor: _Actor, folder: str) -> None:
        """A task's folder is no longer needed once none of its files is on its way."""
        if any(c.remote.startswith(folder + os.sep) for p in self.pending.values() for c in p.copies):
            actor.stale.append(folder)
            return
        if actor.shared:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            self._call(actor, "remove", actor.handle.remove.remote(folder))

    def _in_flight(self, seed: int) -> bool:
        return self.plan.index[seed] in self.pending

    # -- episodes -------------------------------------------------------------------------
    def _episode(self, actor: _Actor, task: Task, folder: str, record: dict[str, Any], salvaged: bool) -> None:
        seed = record.get("seed")
        j = self.plan.index.get(seed) if isinstance(seed, int) else None
        if j is None:
            self.result.events.append(f"{actor.name()} wrote an episode with an unknown seed {seed!r}; ignored")
            return
        if seed in self.plan.settled or j in self.pending:
            return  # a re-run's duplicate: its files stay in the task folder, removed with it
        if salvaged and record.get("end") not in FINISHED:
            return  # cut short by the actor's death: it runs again
        files = record.pop("files", None)
        if files is None:
            files = episode_files(folder, record)
        line = dict(record)
        # The evaluation is one stream of episodes on the cluster: env 0, episode j
        # (unique, and what `rlcapture replay DIR --env 0 --episode j` finds).
        line["task_env"], line["task_episode"] = record.get("env"), record.get("episode")
        line["env"], line["episode"], line["seed"], line["seed_index"] = 0, j, seed, j
        line["node"], line["actor"], line["task"] = actor.info.get("node", "")[:12], actor.index, task.id
        names = _final_names(record, files, f"{self.config.name_prefix}seed{seed}")
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
            self._write(j, seed, line, length=record.get("length"))
        elif actor.shared:
            for rel, _size in files:
                target = self.out / names[rel]
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.replace(os.path.join(folder, rel), target)
            self._write(j, seed, line, length=record.get("length"))
        else:
            copies = [
                FileCopy(j, actor.index, os.path.join(folder, rel), str(self.out / names[rel]), size)
                for rel, size in files
            ]
            pending = _Pending(line, actor.index, copies, len(copies))
            self.pending[j] = pending
            for copy in copies:
                self.transfers.add(copy)
                if copy.size == 0:
                    pending.left -= 1
            if pending.left == 0:
                self._settle_pending(j)
        for key, why in evicted:
            self._evict(key[1], why)

    def _evict(self, j: int, why: str) -> None:
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

    def _file_in(self, copy: FileCopy) -> None:
        pending = self.pending.get(copy.key)
        if pending is None:
            return
        pending.left -= 1
        if pending.left == 0:
            self._settle_pending(copy.key)

    def _settle_pending(self, j: int) -> None:
        pending = self.pending.pop(j)
        line = pending.record
        if pending.discard is not None:
            for copy in pending.copies:
                Path(copy.local).unlink(missing_ok=True)
            line["kept"], line["why"] = False, pending.discard
            forget_files(line)
        self._write(j, line["seed"], line, length=line.get("length"))
        actor = self.actors[pending.actor]
        for folder in list(actor.stale):
            if not any(c.remote.startswith(folder + os.sep) for p in self.pending.values() for c in p.copies):
                actor.stale.remove(folder)
                if actor.state != "dead":
                    self._call(actor, "remove", actor.handle.remove.remote(folder))

    def _write(self, j: int, seed: int, line: dict[str, Any], length: Any) -> None:
        if not self.plan.settle(seed):
            return
        self.manifest.write(line)
        self.written[j] = line
        self.result.episodes.append(line)
        if isinstance(length, int):
            self.steps += length
        if self.progress is not None:
            self.progress(len(self.plan.settled), self.steps)

    def _request_chunks(self) -> None:
        for copy, offset, length in self.transfers.requests():
            actor = self.actors[copy.actor]
            self._call(actor, "chunk", actor.handle.read.remote(copy.remote, offset, length), (copy, offset, length))

    # -- faults -----------------------------------------------------------------------------
    def _lost(self, actor: _Actor, why: Any, retire: bool = False) -> None:
        if actor.state == "dead":
            return
        was = actor.state
        actor.state = "dead"
        try:
            self.ray.kill(actor.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        reason = why if isinstance(why, str) else f"{type(why).__name__}: {_first_line(why)}"
        kept = rerun = 0
        task = actor.task
        if task is not None:
            if actor.shared and actor.folder:
                before = len(self.plan.settled)
                for record in _read_lines(actor.folder):
                    self._episode(actor, task, actor.folder, record, salvaged=True)
                kept = len(self.plan.settled) - before
            new = self.plan.requeue(task.id)
            rerun = len(new.seeds) if new else 0
        lost = [j for j, p in self.pending.items() if p.actor == actor.index]
        if lost:
            self.transfers.drop(actor.index)
            seeds = []
            for j in lost:
                for copy in self.pending.pop(j).copies:
                    copy.discard()
                seeds.append(self.seeds[j])
            self.plan.retry(seeds, 1)
            rerun += len(seeds)
        what = "could not start" if was in ("starting", "preparing") else "died"
        line = f"{actor.name()} {what} ({reason})"
        if task is not None or lost:
            line += f"; {rerun} unfinished episodes went back to the queue with their seeds"
            if kept:
                line += f", {kept} it had finished were kept from its folder"
        self.result.events.append(line)
        if not self.plan.done and not retire and self.replacements < 2 * self.n_actors:
            self.replacements += 1
            self._spawn()

    def _interrupt(self) -> None:
        """Ctrl-C: stop every actor, keep the episodes whose files are whole."""
        ray = self.ray
        for actor in self.actors.values():
            if actor.state != "dead":
                try:
                    ray.kill(actor.handle, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
        for actor in self.actors.values():
            if actor.task is not None and actor.shared and actor.folder:
                for record in _read_lines(actor.folder):
                    self._episode(actor, actor.task, actor.folder, record, salvaged=True)
            actor.state = "dead"
        for pending in self.pending.values():
            for copy in pending.copies:
                copy.discard()
                if os.path.exists(copy.local):
                    os.unlink(copy.local)
        self.pending.clear()

    def _stop_actors(self) -> None:
        ray = self.ray
        if not hasattr(self, "actors"):
            return
        removals = []
        for actor in self.actors.values():
            if actor.state in ("idle", "busy") and not actor.shared:
                removals.append(actor.handle.remove.remote(self.scratch_root))
        if removals:
            try:
                ray.wait(removals, num_returns=len(removals), timeout=self.timeout)
            except Exception:  # noqa: BLE001 - best effort: a dead actor's scratch went with it
                pass
        for actor in self.actors.values():
            try:
                ray.kill(actor.handle, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        self._wait_gone()

    def _wait_gone(self) -> None:
        """Wait (bounded) until the killed actors' processes are gone."""
        deadline = time.monotonic() + 10.0
        names = {f"rlcapture-{self.run_id}-{a.index}" for a in self.actors.values()}
        while time.monotonic() < deadline:
            alive = [n for n in names if _actor_alive(self.ray, n)]
            if not alive:
                return
            time.sleep(0.1)

    def _clean_staging(self) -> None:
        staging = getattr(self, "staging", None)
        if staging is None:
            return
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.parent.rmdir()
        except OSError:
            pass


def _actor_alive(ray: Any, name: str) -> bool:
    try:
        ray.get_actor(name)
    except ValueError:
        return False
    return True


def _read_lines(folder: str) -> list[dict[str, Any]]:
    return [r for r in ManifestFollower(RunFolder(folder).manifest).read() if not r.get("update")]


def _final_names(record: dict[str, Any], files: list[tuple[str, int]], stem: str) -> dict[str, str]:
    """Each of an episode's files renamed after its seed: ``videos/seed7.mp4``, ``frames/seed7/...``."""
    local = _local_stem(record)
    names: dict[str, str] = {}
    keys = [rel for rel, _ in files] + file_names(record)
    for rel in keys:
        parts = rel.split("/")
        parts = [stem + p[len(local):] if local and p.startswith(local) else p for p in parts]
        names[rel] = "/".join(parts)
    return names


def _local_stem(record: dict[str, Any]) -> str:
    if isinstance(record.get("video"), str):
        return Path(record["video"]).stem
    if isinstance(record.get("images"), str):
        return Path(record["images"]).name
    for key in record.get("keyframes") or ():
        return Path(key).name.rpartition("-step")[0]
    return ""


def _seeds(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    text = ", ".join(map(str, seeds[:8]))
    return text + (f" and {len(seeds) - 8} more" if len(seeds) > 8 else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def evaluate_on_ray(
    env: Any,
    policy: Any = None,
    seeds: Sequence[int] | None = None,
    **kwargs: Any,
) -> ClusterResult:
    """Evaluate ``policy`` on ``env`` for every seed, sharded over a Ray cluster.

    Episode ``j`` resets with ``seeds[j]`` (and a random policy draws from a
    generator seeded from it) on whichever node runs it, so each episode's
    seed, return and length are those of a local :func:`rlcapture.evaluate`.

    Args:
        env: An env id or a picklable function that makes the env; it must
            be importable on every node.
        policy: None (random actions), or what :func:`rlcapture.evaluate`
            takes; picklable.
        seeds: The episodes' seeds (distinct); or ``episodes=K, seed=S`` for
            ``S .. S+K-1``.
        num_envs: Envs per actor (its vector env).
        out: The output folder, on the driver's machine.
        config: A :class:`~rlcapture.RecordConfig`; keep rules apply over the
            whole cluster. Other RecordConfig keywords may be given flat.
        address: None: this process's Ray, else a local cluster, else a new
            one (stopped at the end); "HOST:6379" or "ray://HOST:10001".
        actors: How many actors (default: as many as the cluster's CPUs hold).
        num_cpus: CPUs each actor reserves (default ``num_envs``).
        task_size: Seeds per task (default :func:`.plan.default_task_size`).
        storage: "auto" (detect), "shared" (every node sees ``out``) or
            "stream" (actors write to ``scratch`` on their node; files come
            back in chunks of ``chunk_mib`` MiB).
        scratch: Node-local folder for stream mode (default the system's
            temporary folder).
        progress: Called with (episodes settled, steps) after each episode.
        timeout: Seconds an actor may leave a poll unanswered before it is
            called stuck and replaced.
        start_timeout: Seconds an actor may take to be placed and ready.
        init_options: More keywords for ``ray.init``.
        **kwargs: Other options of :func:`rlcapture.evaluate`.

    Returns:
        A :class:`ClusterResult`.

    Raises:
        EnvError: A node cannot load the env or the policy (names the node).
        ConfigError: A bad option, Ray missing, or no cluster at ``address``.
        ProcessDiedError: Every actor died, or an evaluation task failed.
    """
    return RayEvaluation(env, policy, seeds, **kwargs).run()
