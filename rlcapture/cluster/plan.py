"""Which seeds run where: an evaluation's episodes cut into tasks, and tasks handed out again.

A task is a list of seeds that one actor passes to :func:`rlcapture.evaluate`.
Episode ``j`` of the evaluation always has seed ``seeds[j]``, so where a task
runs, and how often it is tried, changes nothing in what the episode does:
the plan only has to make sure that every seed ends up settled exactly once.
An actor that dies takes its running task with it; the seeds of that task not
yet settled go back to the queue as a new task (same seeds, the next attempt),
and a seed that comes back twice (a salvaged line and its re-run) is taken
once.

This module knows nothing of Ray: it is bookkeeping, tested on its own.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError

__all__ = ["Task", "TaskPlan", "ActorSizes", "check_cluster_seeds", "default_task_size", "size_actors"]

_MAX_SEED = 2**63 - 1


def check_cluster_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds as a list of distinct ints from 0 to 2**63-1.

    A seed names an episode on the cluster (its files are named after it, a
    re-run is recognised by it), so a seed may not repeat.

    Raises:
        ConfigError: Empty, not integers, out of range, or repeated.
    """
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ConfigError(f"seeds must be a list or range of integers, got {type(seeds).__name__}")
    values: list[int] = []
    for s in seeds:
        if isinstance(s, bool) or not hasattr(s, "__index__") or not 0 <= int(s) <= _MAX_SEED:
            raise ConfigError(f"seeds must hold integers from 0 to 2**63-1, got {s!r}")
        values.append(int(s))
    if not values:
        raise ConfigError("seeds is empty; give at least one seed (or episodes=K)")
    if len(set(values)) != len(values):
        seen: set[int] = set()
        dup = next(s for s in values if s in seen or seen.add(s))  # type: ignore[func-returns-value]
        raise ConfigError(f"seed {dup} appears twice; on a cluster each seed names one episode")
    return values


def default_task_size(episodes: int, actors: int, num_envs: int) -> int:
    """Two tasks per actor, each at least as long as the actor has envs.

    Starting a task costs the actor its vector env and encoder (about a
    second, ``benchmarks/RESULTS.md``), so tasks are few; two per actor let a
    fast actor take over the tail of a slow one. A dying actor costs only its
    unfinished episodes whatever the task size: finished ones are collected
    as they end.
    """
    return max(num_envs, math.ceil(episodes / max(1, 2 * actors)))


@dataclass(frozen=True)
class ActorSizes:
    """How a run is laid over the cluster: envs and CPUs per actor, and how many actors."""

    num_envs: int
    num_cpus: float
    actors: int


def size_actors(
    node_cpus: Sequence[tuple[str, float]],
    num_envs: int | None,
    num_cpus: float | None,
    actors: int | None,
    episodes: int,
) -> ActorSizes:
    """Envs per actor and actors from the cluster's alive nodes, not the driver's machine.

    An actor's CPUs must fit on ONE node, so a cluster's total is not enough: a
    run of 2-CPU actors on 1-CPU nodes would wait for a node that never comes.
    Without ``num_envs`` an actor gets as many envs as the smallest node has
    CPUs (every node can host one); without ``actors`` the fleet is what the
    nodes hold, never more than the episodes need.

    Args:
        node_cpus: Each alive node's name and CPUs (``ray.nodes()``; several may share an address).
        num_envs: Envs per actor, or None to fit the nodes.
        num_cpus: CPUs an actor reserves, or None for ``num_envs``.
        actors: How many actors, or None for as many as the nodes hold.
        episodes: Seeds to run.

    Raises:
        ConfigError: No node has CPUs, or one actor needs more than the largest node has.
    """
    sizes = [(node, cpus) for node, cpus in node_cpus if cpus >= 1]
    if not sizes:
        raise ConfigError("the Ray cluster has no alive node with a CPU; start one with `ray start`")
    largest_node, largest = max(sizes, key=lambda item: (item[1], item[0]))
    if num_envs is None:
        num_envs = max(1, min(1024, int(min(cpus for _, cpus in sizes)), episodes))
    each = float(num_envs) if num_cpus is None else float(num_cpus)
    if each > largest:
        what = f"--num-envs {num_envs}" if num_cpus is None else f"num_cpus {each:g}"
        raise ConfigError(
            f"{what} needs {each:g} CPUs per actor but the largest node of the cluster "
            f"({largest_node}) has {largest:g}; ask for {int(largest)} or fewer, or add a larger node"
        )
    hold = sum(int(cpus // each) for _, cpus in sizes)
    return ActorSizes(num_envs, each, max(1, min(actors or hold, math.ceil(episodes / num_envs))))


@dataclass
class Task:
    """Seeds for one :func:`rlcapture.evaluate` call on one actor.

    Attributes:
        id: The task's number; a re-run of its seeds gets a new one.
        seeds: The seeds, in evaluation order.
        attempt: 0 for the first run of these seeds, 1 after one actor died, ...
        actor: The actor it runs on (None while queued).
    """

    id: int
    seeds: list[int]
    attempt: int = 0
    actor: int | None = None
    settled: set[int] = field(default_factory=set)

    def unsettled(self) -> list[int]:
        return [s for s in self.seeds if s not in self.settled]


class TaskPlan:
    """The queue of tasks and which seed is settled.

    Args:
        seeds: The evaluation's seeds (episode ``j`` has ``seeds[j]``).
        task_size: Seeds per task.
    """

    def __init__(self, seeds: Sequence[int], task_size: int) -> None:
        if task_size < 1:
            raise ConfigError(f"task size must be at least 1, got {task_size}")
        self.seeds = list(seeds)
        self.index = {s: j for j, s in enumerate(self.seeds)}
        self._next_id = 0
        self.queue: deque[Task] = deque()
        self.running: dict[int, Task] = {}
        self.settled: set[int] = set()
        for lo in range(0, len(self.seeds), task_size):
            self._push(self.seeds[lo : lo + task_size], 0)

    def _push(self, seeds: list[int], attempt: int) -> Task:
        task = Task(self._next_id, seeds, attempt)
        self._next_id += 1
        self.queue.append(task)
        return task

    @property
    def done(self) -> bool:
        return len(self.settled) == len(self.seeds)

    def take(self, actor: int) -> Task | None:
        """The next queued task for ``actor`` (None: nothing queued)."""
        while self.queue:
            task = self.queue.popleft()
            task.seeds = [s for s in task.seeds if s not in self.settled]
            if not task.seeds:
                continue
            task.actor = actor
            self.running[task.id] = task
            return task
        return None

    def settle(self, seed: int) -> bool:
        """Mark ``seed``'s episode as written; False if it already was (a duplicate)."""
        if seed in self.settled:
            return False
        self.settled.add(seed)
        for task in self.running.values():
            if seed in task.seeds:
                task.settled.add(seed)
        return True

    def finish(self, task_id: int) -> list[int]:
        """The task's actor says it ended; returns its seeds that are still not settled."""
        task = self.running.pop(task_id)
        return task.unsettled()

    def retry(self, seeds: Sequence[int], attempt: int) -> Task | None:
        """Queue ``seeds`` again, first in line (episodes lost with their actor's files)."""
        left = [s for s in seeds if s not in self.settled]
        if not left:
            return None
        task = self._push(left, attempt)
        self.queue.remove(task)
        self.queue.appendleft(task)
        return task

    def requeue(self, task_id: int, seeds: Sequence[int] | None = None) -> Task | None:
        """Queue again the unsettled seeds of a task whose actor died (or ``seeds`` of it).

        The new task goes to the front: its seeds were due first.
        """
        task = self.running.pop(task_id, None)
        if task is None:
            return None
        return self.retry(task.seeds if seeds is None else seeds, task.attempt + 1)
