"""The actor: one per share of the cluster's CPUs, hosting :func:`rlcapture.evaluate` on its node.

The driver makes it a Ray actor (``ray.remote(num_cpus=...)(EvalActor)``)
with a few threads (``max_concurrency``): one runs the current task, others
answer the driver meanwhile. A task is a list of seeds given to ``evaluate``,
which starts its vector env, workers and encoder(s) in this process's tree,
writes into the task's own folder and appends a manifest line per episode as
it ends. :meth:`EvalActor.poll` tails that manifest, so the driver learns of
each episode when its files are closed, not when the task ends: an actor that
dies mid-task loses only the episodes it had not finished.

The env and the policy arrive as one cloudpickled blob and are unpickled here,
in :meth:`EvalActor.prepare`, so that a node lacking the env's package says so
in one line instead of failing inside Ray's argument decoding.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from .._backend.manifest import ManifestFollower, file_names
from .._backend.remote_error import RemoteError, capture
from .._backend.run_folder import RunFolder
from .replies import Finished, Hello, Polled, Prepared

__all__ = ["EvalActor", "episode_files", "run_evaluate"]


def run_evaluate(env: Any, policy: Any, seeds: list[int], num_envs: int, out: str, config: Any,
                 options: dict[str, Any]) -> Any:
    """One task: :func:`rlcapture.evaluate` on these seeds, into ``out``."""
    from .. import evaluate

    return evaluate(env, policy=policy, seeds=seeds, num_envs=num_envs, out=out, config=config, **options)


def episode_files(out: str, record: dict[str, Any]) -> list[tuple[str, int]]:
    """The files an episode's manifest line names, as (path relative to ``out``, size).

    A PNG sequence's folder is listed file by file.
    """
    files: list[tuple[str, int]] = []
    for name in file_names(record):
        path = os.path.join(out, name)
        if os.path.isdir(path):  # a PNG sequence's folder
            for entry in sorted(os.listdir(path)):
                inner = os.path.join(path, entry)
                if os.path.isfile(inner):
                    files.append((os.path.join(name, entry), os.stat(inner).st_size))
            continue
        try:
            files.append((name, os.stat(path).st_size))
        except OSError:
            pass
    return files


class EvalActor:
    """Runs tasks of an evaluation on this node; see the module docstring.

    Args:
        index: The actor's number in the run (for messages).
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.env: Any = None
        self.policy: Any = None
        self.num_envs = 1
        self.config: Any = None
        self.options: dict[str, Any] = {}
        self.root = ""
        self.scratch = ""  # this run's node-local folder (stream mode)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._task: int | None = None
        self._dir = ""
        self._follower: ManifestFollower | None = None  # the task's manifest, as it grows
        self._error: RemoteError | None = None  # how the task failed, for the driver
        self._done = False

    # -- set-up -----------------------------------------------------------------
    def hello(self) -> Hello:
        """Where this actor runs: Ray node id, address, host name, pid."""
        import ray

        ctx = ray.get_runtime_context()
        return Hello(ctx.get_node_id(), ray.util.get_node_ip_address(), socket.gethostname(), os.getpid())

    def prepare(self, blob: bytes, staging: str, token: str, scratch: str) -> Prepared:
        """Load the env and policy; say whether this node sees the driver's output folder.

        Returns:
            Whether the node sees the folder, and (``error``) one line saying
            what this node lacks.
        """
        from ray import cloudpickle

        from .storage import sees_token

        shared = sees_token(staging, token)
        try:
            spec = cloudpickle.loads(blob)
        except Exception as exc:  # noqa: BLE001 - any failure to rebuild the env is the user's to fix
            return Prepared(shared, f"cannot load the env or policy: {type(exc).__name__}: {exc}")
        self.env, self.policy = spec["env"], spec["policy"]
        self.num_envs, self.config, self.options = spec["num_envs"], spec["config"], spec["options"]
        if isinstance(self.env, str):
            from ..envs import check_env_id
            from ..errors import RLCaptureError

            try:
                check_env_id(self.env)
            except RLCaptureError as exc:
                return Prepared(shared, str(exc))
        self.scratch = scratch
        return Prepared(shared)

    # -- tasks ------------------------------------------------------------------
    def start(self, task: int, seeds: list[int], root: str) -> str:
        """Start a task: ``evaluate`` on ``seeds`` into a new folder under ``root``; returns it."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError(f"actor {self.index} is still running task {self._task}")
            folder = os.path.join(root, f"task{task:05d}-actor{self.index}")
            os.makedirs(root, mode=0o700, exist_ok=True)
            self._task, self._dir = task, folder
            self._follower = ManifestFollower(RunFolder(folder).manifest)
            self._error, self._done = None, False
            self._thread = threading.Thread(
                target=self._run, args=(list(seeds), folder), name=f"rlcapture-task-{task}", daemon=True
            )
            self._thread.start()
        return folder

    def _run(self, seeds: list[int], folder: str) -> None:
        try:
            run_evaluate(self.env, self.policy, seeds, self.num_envs, folder, self.config, self.options)
        except BaseException as exc:  # noqa: BLE001 - reported to the driver by poll
            self._error = capture(exc, traceback.format_exc())
        finally:
            self._done = True

    def poll(self, timeout: float = 1.0) -> Polled:
        """Episodes that ended since the last poll, waiting up to ``timeout`` s for one."""
        deadline = time.monotonic() + timeout
        while True:
            done = self._done  # read before the manifest: no line can follow "done"
            episodes = self._tail()
            if episodes or done or time.monotonic() >= deadline:
                return Polled(self._task, self._dir, episodes, done, self._error if done else None)
            time.sleep(0.05)

    def _tail(self) -> list[Finished]:
        if self._follower is None:
            return []
        return [
            Finished(record, episode_files(self._dir, record))
            for record in self._follower.read()
            if not record.get("update")
        ]

    # -- files ------------------------------------------------------------------
    def read(self, path: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a finished file at ``offset`` (stream mode)."""
        with open(path, "rb") as f:
            return os.pread(f.fileno(), length, offset)

    def remove(self, path: str) -> None:
        """Delete a file or a task's folder on this node."""
        p = Path(path)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)

    def idle(self) -> bool:
        return self._thread is None or not self._thread.is_alive()
