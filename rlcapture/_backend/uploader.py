"""The uploader process, from the recorder's side: start, follow, finish, name what was not sent.

The recorder starts one :class:`Uploader` when its configuration names
trackers (``loggers``). The uploader process follows the run's manifest
(:mod:`rlcapture.trackers.uploader`), so episodes reach the trackers while the
run goes on, without the workers or the encoder handing anything over. This
module imports no tracker package; the process imports
:mod:`rlcapture.trackers` when it starts.

At the end, :meth:`Uploader.finish` asks the process to finish within the
upload timeout and compares its report with the manifest: every finished
episode's statistics and every kept video should have reached every tracker.
What did not is named in one line per tracker (with the tracker's last error,
or how the uploader process ended) and in the manifest, as an update line per
episode (``"not_uploaded": {"wandb:proj": ["video"]}``), which
:func:`~rlcapture._backend.manifest.read_manifest` folds into the episode's
record.
"""

from __future__ import annotations

import os
from typing import Any

from .manifest import Manifest, read_manifest
from .procs import describe_exit, get_context, stop_process, wait
from .uploads import upload_parts

__all__ = ["Uploader", "uploader_main"]


def uploader_main(
    specs: list[str],
    out_dir: str,
    name: str,
    attempts: int,
    timeout: float,
    control: Any,
    parents: list[Any],
) -> None:
    """Entry point of the uploader process.

    Closes the recorder's ends of its pipes (so the recorder's death is an
    end of file here), then serves the trackers. It leaves with ``os._exit``:
    a tracker thread still stuck on a server that does not answer must not
    keep the process alive after its report is sent.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the recorder's to handle
    try:
        # Background work: on a machine whose cores the envs and the encoder
        # keep busy, importing a tracker (MLflow: seconds of CPU) or its
        # client's threads should take what they leave, not a share of theirs.
        os.nice(10)
    except OSError:
        pass
    for parent in parents:
        parent.close()
    code = 0
    try:
        from ..trackers.base import RunInfo
        from ..trackers.uploader import run_uploader

        run = RunInfo(out_dir=out_dir, name=name, timeout=min(30.0, max(1.0, timeout / 2)))
        run_uploader(specs, run, attempts, timeout, control)
    except BaseException:  # noqa: BLE001 - the recorder names the exit status
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            control.close()
        except OSError:
            pass
    os._exit(code)


class Uploader:
    """One uploader process for a recording (or a training's recording rounds).

    Args:
        specs: Tracker specs (already checked by :class:`~rlcapture.RecordConfig`).
        out_dir: The folder local trackers write into by default.
        name: The run's name in the trackers.
        attempts: Tries per upload.
        timeout: Seconds :meth:`finish` waits for uploads under way.
        context: ``multiprocess`` start method.
        inherited: Pipe ends of this process that the child must close
            (the encoders' control pipes).
    """

    def __init__(
        self,
        specs: tuple[str, ...],
        out_dir: str,
        name: str,
        attempts: int,
        timeout: float,
        context: str | None = None,
        inherited: tuple[Any, ...] = (),
    ) -> None:
        ctx = get_context(context)
        self.specs = tuple(specs)
        self.timeout = timeout
        self.manifests: list[str] = []
        self.summary: dict[str, Any] = {}
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=uploader_main,
            args=(list(specs), out_dir, name, attempts, timeout, child, [self.conn, *inherited]),
            name="rlcapture-uploader",
            daemon=True,
        )
        self.proc.start()
        child.close()
        self._done = False

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def follow(
        self, manifest: str | os.PathLike[str], fields: dict[str, Any] | None = None
    ) -> None:
        """Send the episodes of ``manifest`` (now and as it grows), with ``fields`` added."""
        path = os.path.abspath(manifest)
        self.manifests.append(path)
        try:
            self.conn.send(("follow", path, dict(fields or {})))
        except OSError:
            pass  # the process is gone: finish() says how it ended

    def finish(self) -> dict[str, Any]:
        """Let the uploads finish (within the timeout), then name what was not sent.

        Returns:
            ``{"uploads": {spec: {"sent": n, "not_sent": m, "error": ...}},
            "not_uploaded": [one line per tracker that missed something]}``;
            the manifests get an update line per episode that missed something.
            Never raises for a tracker or the uploader's failure (idempotent).
        """
        if self._done:
            return self.summary
        self._done = True
        report: dict[str, Any] | None = None
        how = ""
        try:
            self.conn.send(("finish",))
        except OSError:
            pass
        ready = wait([self.conn, self.proc.sentinel], self.timeout + 15.0)
        if self.conn in ready:
            try:
                msg = self.conn.recv()
                report = msg[1] if isinstance(msg, tuple) and msg[0] == "report" else None
            except (EOFError, OSError):
                report = None
        if report is None:
            self.proc.join(1.0)
            alive = self.proc.exitcode is None
            stop_process(self.proc, 0.0 if alive else 1.0)
            how = (
                f"the uploader process (pid {self.proc.pid}) did not finish within "
                f"{self.timeout + 15:g} s and was stopped"
                if alive
                else f"the uploader process (pid {self.proc.pid}) died: "
                f"{describe_exit(self.proc.exitcode)}"
            )
        else:
            stop_process(self.proc, 5.0)
        self.conn.close()
        self.summary = self._compare(report or {}, how)
        return self.summary

    def _compare(self, report: dict[str, Any], how: str) -> dict[str, Any]:
        """What each manifest's episodes should have sent, against what was sent."""
        sent = {
            spec: {tuple(k) for k in report.get(spec, {}).get("sent", ())} for spec in self.specs
        }
        missing: dict[str, dict[tuple[str, int, int], list[str]]] = {s: {} for s in self.specs}
        expected = 0
        for path in self.manifests:
            try:
                records = read_manifest(path)
            except FileNotFoundError:
                continue
            for record in records:
                for part in upload_parts(record):
                    expected += 1
                    key = (path, record["env"], record["episode"])
                    for spec in self.specs:
                        if (*key, part) not in sent[spec]:
                            missing[spec].setdefault(key, []).append(part)
        uploads: dict[str, Any] = {}
        lines: list[str] = []
        for spec in self.specs:
            gone = missing[spec]
            parts = [p for ps in gone.values() for p in ps]
            error = how or report.get(spec, {}).get("error")
            uploads[spec] = {"sent": len(sent[spec]), "not_sent": len(parts), "error": error}
            if parts:
                videos, stats = parts.count("video"), parts.count("stats")
                said = []
                if stats:
                    said.append(
                        f"{stats} episode's statistics"
                        if stats == 1
                        else f"{stats} episodes' statistics"
                    )
                if videos:
                    said.append(f"{videos} video" if videos == 1 else f"{videos} videos")
                what = ", ".join(said)
                lines.append(f"{spec}: {what} not sent ({error or 'no reason given'})")
        self._note(missing)
        return {"uploads": uploads, "not_uploaded": lines}

    def _note(self, missing: dict[str, dict[tuple[str, int, int], list[str]]]) -> None:
        """An update line per episode that missed a tracker, in its manifest."""
        per_episode: dict[tuple[str, int, int], dict[str, list[str]]] = {}
        for spec, episodes in missing.items():
            for key, parts in episodes.items():
                per_episode.setdefault(key, {})[spec] = parts
        writers: dict[str, Manifest] = {}
        try:
            for (path, env, episode), specs in sorted(per_episode.items()):
                try:
                    if path not in writers:
                        writers[path] = Manifest(path)
                    writers[path].write(
                        {"env": env, "episode": episode, "not_uploaded": specs}, update=True
                    )
                except OSError:
                    continue  # the summary still names them
        finally:
            for writer in writers.values():
                writer.close()
