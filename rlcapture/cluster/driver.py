"""The driver: one evaluation over a Ray cluster, one output folder, one manifest.

:func:`evaluate_on_ray` checks its options as a local evaluate does
(:mod:`.options`), cuts the seeds into tasks (:mod:`.plan`), starts actors
(:mod:`.actor`, kept by :mod:`.fleet`) that each reserve ``num_cpus`` CPUs on
some node, and waits on all of their calls at once with ``ray.wait`` and a
timeout. Each actor answers long polls with the episodes that ended since the
last one (:mod:`.replies`); the collector (:mod:`.collector`) judges each
episode by the keep rules over the whole cluster, brings the kept episodes'
files into the output folder (a rename on shared storage, a chunked copy
otherwise: :mod:`.storage`, :mod:`.transfer`), then appends the episode's one
line to the manifest. The collector is the manifest's only writer, and a seed
is settled once, so no episode appears twice. :class:`RayEvaluation` only
coordinates: it says what each answer means for the evaluation.

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
from .._backend.manifest import ManifestWriter
from .._backend.remote_error import rebuild
from .._backend.run_folder import RunFolder, describe_seeds
from ..config import RecordConfig
from ..errors import ConfigError, EnvError, OutputError, ProcessDiedError, first_line
from ..evaluate import EpisodeResult, EvaluationResult
from .collector import EpisodeCollector
from .connect import RayConnection
from .fleet import POLL, Actor, ActorFleet, ActorState, CallKind
from .options import check_numbers, task_options
from .plan import TaskPlan, check_cluster_seeds, default_task_size, size_actors
from .replies import Polled, Prepared
from .storage import STAGING, check_storage, scratch_root, write_token
from .transfer import DEFAULT_CHUNK, DEFAULT_WINDOW, Transfers

__all__ = ["ClusterResult", "RayEvaluation", "evaluate_on_ray"]

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
class _Run:
    """What one :meth:`RayEvaluation.run` holds while it runs (built once Ray is joined)."""

    staging: Path  # the output folder's staging folder of this run (token, shared task folders)
    token: str
    scratch: str  # node-local folder of this run's tasks in stream mode
    blob: bytes  # the env, policy and task options, cloudpickled once for every actor
    plan: TaskPlan
    transfers: Transfers
    fleet: ActorFleet
    collector: EpisodeCollector
    shared: bool | None = None  # storage decided from the first prepared actor


class RayEvaluation:
    """One evaluation on Ray; :meth:`run` does it. See :func:`evaluate_on_ray` for the arguments.

    It coordinates: the fleet (:mod:`.fleet`) keeps the actors and their calls,
    the collector (:mod:`.collector`) the episodes, the plan (:mod:`.plan`) the
    seeds; this class says what each answer means for the evaluation.
    """

    def __init__(
        self,
        env: Any,
        policy: Any = None,
        seeds: Sequence[int] | None = None,
        *,
        episodes: int | None = None,
        seed: int = 0,
        num_envs: int | None = None,
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
        checked = check_numbers(num_envs or 1, actors, num_cpus, task_size, chunk_mib, timeout, start_timeout)
        # Checked here as a local evaluate checks them, so a bad option never reaches an actor.
        self.config, self.options = task_options(config, num_envs or 1, options)
        self.task_config = self.config.replace(keep="all", name_prefix="")
        self.env, self.policy, self.num_envs = env, policy, num_envs
        self.out = Path(out)
        self.folder = RunFolder(self.out)  # its lock, layout and run.json
        self.address, self.init_options = address, init_options
        # None until run(): sized to the cluster's nodes when num_envs is not given (size_actors).
        self.want_actors, self.task_size = actors, task_size
        self.num_cpus = checked if num_cpus is not None else None  # None: num_envs
        self.storage = check_storage(storage)
        self.scratch = scratch
        self.chunk = int(chunk_mib * 2**20)
        self.overwrite = overwrite
        self.progress = progress
        self.timeout, self.start_timeout = float(timeout), float(start_timeout)
        self.result = ClusterResult(self.out, self.seed_plan if isinstance(self.seed_plan, range) else tuple(self.seeds))
        self._state: _Run | None = None

    @property
    def actors(self) -> dict[int, Actor]:
        """The run's actors by index, replacements included (none before :meth:`run`)."""
        return self._state.fleet.actors if self._state is not None else {}

    # -- the run ----------------------------------------------------------------------
    def run(self) -> ClusterResult:
        """Run the evaluation; returns its :class:`ClusterResult`.

        Raises:
            KeyboardInterrupt: After the cleanup, with :attr:`result` holding
                what was written.
        """
        t0 = time.perf_counter()
        self.folder.open(self.overwrite)  # lock; refuse or clear an earlier recording
        manifest = ManifestWriter(str(self.folder.manifest))
        staging = self.out / STAGING / secrets.token_hex(4)
        self._state = None
        try:
            with RayConnection(self.address, self.init_options) as conn:
                try:
                    self._state = self._start(conn.ray, staging, manifest)
                    self._loop(self._state, t0)
                except KeyboardInterrupt:
                    self.result.interrupted = True
                    if self._state is not None:
                        self._interrupt(self._state)
                    raise
                finally:
                    if self._state is not None:
                        self._state.fleet.stop(self._state.scratch)
                    _remove_staging(staging)
        finally:
            self._tally()
            if self.result.episodes:
                self._write_run_file()
            manifest.close()
            self.folder.release()
            if not self.result.episodes:  # no recording left behind: a rerun is not refused
                self.folder.forget_if_empty()
            self.result.elapsed = time.perf_counter() - t0
            self.result.episodes.sort(key=lambda r: r["episode"])
        return self.result

    def _start(self, ray: Any, staging: Path, manifest: ManifestWriter) -> _Run:
        """Everything a run needs before its first actor: the token, the blob, the plan, the fleet."""
        from ray import cloudpickle

        run_id = staging.name
        token = write_token(staging)
        scratch = scratch_root(self.scratch, run_id)
        nodes = [(f"{n.get('NodeManagerAddress', '?')}, node {str(n.get('NodeID', '?'))[:8]}",
                  float(n.get("Resources", {}).get("CPU", 0))) for n in ray.nodes() if n.get("Alive")]  # fmt: skip
        sized = size_actors(nodes, self.num_envs, self.num_cpus, self.want_actors, len(self.seeds))
        self.num_envs, self.num_cpus, n_actors = sized.num_envs, sized.num_cpus, sized.actors
        spec = {"env": self.env, "policy": self.policy, "num_envs": self.num_envs,
                "config": self.task_config, "options": self.options}  # fmt: skip
        try:
            blob = cloudpickle.dumps(spec)
        except Exception as exc:  # noqa: BLE001 - whatever cannot be pickled
            raise ConfigError(f"the env or policy cannot be sent to the cluster: {type(exc).__name__}: {exc}") from None
        size = self.task_size or default_task_size(len(self.seeds), n_actors, self.num_envs)
        plan = TaskPlan(self.seeds, size)
        transfers = Transfers(self.chunk, DEFAULT_WINDOW)
        fleet = ActorFleet(ray, run_id, self.num_cpus, n_actors, self.timeout, self.start_timeout)
        collector = EpisodeCollector(
            self.out, plan, KeepPolicy(self.config.keep, self.config.keep_seed), transfers, manifest,
            self.config.name_prefix, self.result.episodes, self.result.events, self.progress, self._files_in,
        )  # fmt: skip
        return _Run(staging, token, scratch, blob, plan, transfers, fleet, collector)

    def _loop(self, run: _Run, t0: float) -> None:
        """Until every seed is settled: hand out tasks and chunks, watch the actors, take answers."""
        fleet, plan = run.fleet, run.plan
        for _ in range(fleet.size):
            fleet.spawn()
        first = True
        while not plan.done:
            self._assign(run)
            if first and plan.running:
                self.result.startup = time.perf_counter() - t0
                first = False
            for copy, offset, length in run.transfers.requests():
                fleet.read(fleet.actors[copy.actor], copy, offset, length)
            for actor, why, retire in fleet.overdue(time.monotonic()):
                self._lost(run, actor, why, retire)
            if not fleet.live():
                raise ProcessDiedError(
                    "every actor of the evaluation died or could not start ("
                    + "; ".join(self.result.events[-3:]) + "); check the cluster with `ray status`",
                    "ray actors",
                )
            if not fleet.calls:  # nothing outstanding (cannot last: a queued task meets an idle actor)
                time.sleep(POLL / 10)
                continue
            for ref in fleet.ready(POLL):
                self._answer(run, ref)
        self.result.storage = "shared" if run.shared else "stream"

    def _assign(self, run: _Run) -> None:
        for actor in run.fleet.idle():
            task = run.plan.take(actor.index)
            if task is None:
                return
            self.result.tasks += 1
            root = str(run.staging.resolve()) if actor.shared else run.scratch
            run.fleet.start(actor, task, root)

    # -- answers ----------------------------------------------------------------------
    def _answer(self, run: _Run, ref: Any) -> None:
        fleet = run.fleet
        call = fleet.pop(ref)
        actor = fleet.actors[call.actor]
        try:
            value = fleet.get(ref)
        except Exception as exc:
            if call.kind is CallKind.CHUNK:
                run.transfers.failed()
            if call.kind is CallKind.REMOVE:
                return  # a failed clean-up changes nothing of the run
            if fleet.gone(exc):
                self._lost(run, actor, exc)
                return
            raise ProcessDiedError(
                f"{actor.name()}: {call.kind.value} failed: {first_line(exc, type(exc).__name__)}", f"actor {actor.index}"
            ) from exc
        if not actor.alive:
            if call.kind is CallKind.CHUNK:
                run.transfers.failed()
            return
        if call.kind is CallKind.HELLO:
            actor.greeted(value)
            self.result.nodes[value.node] = value.ip
            fleet.prepare(actor, run.blob, str(run.staging.resolve()), run.token, run.scratch)
        elif call.kind is CallKind.PREPARE:
            self._prepared(run, actor, value)
        elif call.kind is CallKind.START:
            actor.folder = value
            fleet.poll(actor)
        elif call.kind is CallKind.POLL:
            self._polled(run, actor, value)
        elif call.kind is CallKind.CHUNK:
            assert call.chunk is not None  # a chunk call always says what it reads
            copy, offset, length = call.chunk
            if run.transfers.received(copy, offset, value, length):
                run.collector.file_in(copy)

    def _prepared(self, run: _Run, actor: Actor, reply: Prepared) -> None:
        if reply.error:
            raise EnvError(
                f"{actor.name()} {reply.error}; install the env's package on every node "
                "(or ship it with init_options={'runtime_env': {'py_modules': [...]}})"
            )
        if self.storage == "shared" and not reply.shared:
            raise ConfigError(
                f"storage='shared' but {actor.name()} does not see {self.out} at the same path; "
                "use storage='stream' (or 'auto')"
            )
        if run.shared is None:
            run.shared = reply.shared if self.storage == "auto" else self.storage == "shared"
        elif self.storage == "auto" and run.shared and not reply.shared:
            # A node without the shared folder joined: stream from now on (renames still work for the others).
            self.result.events.append(f"{actor.name()} does not see {self.out}: its files are streamed")
        actor.ready(reply.shared and self.storage != "stream")

    def _polled(self, run: _Run, actor: Actor, reply: Polled) -> None:
        task = actor.task
        assert task is not None  # polled only while it runs a task
        for episode in reply.episodes:
            run.collector.collect(actor, task, reply.folder, episode, salvaged=False)
        if not reply.done:
            run.fleet.poll(actor)
            return
        if reply.error is not None:
            error = reply.error
            exc = rebuild(error)
            message = f"{actor.name()}, task of seeds {_seeds(task.seeds)}: {error.kind}: {error.first_line}"
            if isinstance(exc, _OWN_ERRORS):
                raise type(exc)(message) from exc
            raise ProcessDiedError(message + "\n" + error.traceback, f"actor {actor.index}") from exc
        left = [s for s in run.plan.finish(task.id) if not run.collector.in_flight(s)]
        if left:
            if task.attempt + 1 >= _MAX_ATTEMPTS:
                raise ProcessDiedError(
                    f"seeds {_seeds(left)} ended without an episode {_MAX_ATTEMPTS} times; last on {actor.name()}",
                    f"actor {actor.index}",
                )
            run.plan.retry(left, task.attempt + 1)
            self.result.events.append(f"{actor.name()}: task ended without seeds {_seeds(left)}; they run again")
        self._done_with_folder(run, actor, reply.folder)
        actor.finished()

    def _done_with_folder(self, run: _Run, actor: Actor, folder: str) -> None:
        """A task's folder is no longer needed once none of its files is on its way."""
        if run.collector.holds(folder):
            actor.stale.append(folder)
        elif actor.shared:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            run.fleet.remove(actor, folder)

    def _files_in(self, index: int) -> None:
        """An episode's files from actor ``index`` are all in: its finished tasks' folders may go."""
        run = self._state
        assert run is not None  # the collector calls it only while the run runs
        actor = run.fleet.actors[index]
        for folder in list(actor.stale):
            if not run.collector.holds(folder):
                actor.stale.remove(folder)
                if actor.alive:
                    run.fleet.remove(actor, folder)

    # -- faults -----------------------------------------------------------------------
    def _lost(self, run: _Run, actor: Actor, why: str | BaseException, retire: bool = False) -> None:
        """An actor died or missed its deadline: keep what it finished, queue the rest, replace it."""
        was = run.fleet.kill(actor)
        if was is None:
            return  # already dead
        reason = why if isinstance(why, str) else f"{type(why).__name__}: {first_line(why, type(why).__name__)}"
        kept = rerun = 0
        task = actor.task
        if task is not None:
            if actor.shared and actor.folder:
                kept = run.collector.salvage(actor, task)
            new = run.plan.requeue(task.id)
            rerun = len(new.seeds) if new else 0
        lost = run.collector.drop(actor.index)  # kept episodes whose files went with it
        if lost:
            run.plan.retry(lost, 1)
            rerun += len(lost)
        what = "could not start" if was in (ActorState.STARTING, ActorState.PREPARING) else "died"
        line = f"{actor.name()} {what} ({reason})"
        if task is not None or lost:
            line += f"; {rerun} unfinished episodes went back to the queue with their seeds"
            if kept:
                line += f", {kept} it had finished were kept from its folder"
        self.result.events.append(line)
        if not run.plan.done and not retire:
            run.fleet.replace()

    def _interrupt(self, run: _Run) -> None:
        """Ctrl-C: stop every actor, keep the episodes whose files are whole."""
        run.fleet.kill_all()
        for actor in run.fleet.actors.values():
            if actor.task is not None and actor.shared and actor.folder:
                run.collector.salvage(actor, actor.task)
        run.collector.discard_all()

    # -- the end ----------------------------------------------------------------------
    def _tally(self) -> None:
        run = self._state
        if run is None:
            return
        self.result.actors = len(run.fleet.actors)
        self.result.streamed_bytes = run.transfers.bytes
        self.result.streamed_chunks = run.transfers.chunks
        self.result.streamed_files = run.transfers.files
        if self.result.storage == "" and run.shared is not None:
            self.result.storage = "shared" if run.shared else "stream"

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


def _remove_staging(staging: Path) -> None:
    """The run's staging folder, and the output folder's staging folder if no other run uses it."""
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.parent.rmdir()
    except OSError:
        pass


def _seeds(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    text = ", ".join(map(str, seeds[:8]))
    return text + (f" and {len(seeds) - 8} more" if len(seeds) > 8 else "")


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
        num_envs: Envs per actor (its vector env); None: as many as the smallest node has CPUs.
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
        **kwargs: Other options of :func:`rlcapture.evaluate`; one it would
            refuse is refused here, with its message, before Ray is joined.

    Returns:
        A :class:`ClusterResult`.

    Raises:
        EnvError: A node cannot load the env or the policy (names the node).
        ConfigError: A bad or unknown option (as a local evaluate says it),
            Ray missing, or no cluster at ``address``.
        ProcessDiedError: Every actor died, or an evaluation task failed.
    """
    return RayEvaluation(env, policy, seeds, **kwargs).run()
