"""The uploader process, from the recorder's side: start, follow, finish, name what was not sent.

The recorder starts one :class:`Uploader` when its configuration names
trackers (``loggers``). The uploader process follows the run's manifest
(:mod:`.loop`), so episodes reach the trackers while the run goes on,
without the workers or the encoder handing anything over. Neither this
module nor the process imports a tracker adapter by an import statement:
the process loads each by the name :mod:`.registry` gives it.

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

from ..procs import describe_exit, get_context, stop_process, wait
from .loop import uploader_main
from .messages import Finish, Follow, Report, UploaderFailed, decode, encode
from .unsent import unsent

__all__ = ["Uploader"]


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
            self.conn.send_bytes(encode(Follow(path, dict(fields or {}))))
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
        report: Report | None = None
        how = ""
        try:
            self.conn.send_bytes(encode(Finish()))
        except OSError:
            pass
        ready = wait([self.conn, self.proc.sentinel], self.timeout + 15.0)
        if self.conn in ready:
            try:
                msg = decode(self.conn.recv_bytes())
            except (EOFError, OSError, ValueError):
                msg = None
            if isinstance(msg, Report):
                report = msg
            elif isinstance(msg, UploaderFailed):
                how = f"the uploader process (pid {self.proc.pid}) failed: {msg.message}"
        if report is None:
            self.proc.join(1.0)
            alive = self.proc.exitcode is None
            stop_process(self.proc, 0.0 if alive else 1.0)
            how = how or (
                f"the uploader process (pid {self.proc.pid}) did not finish within "
                f"{self.timeout + 15:g} s and was stopped"
                if alive
                else f"the uploader process (pid {self.proc.pid}) died: "
                f"{describe_exit(self.proc.exitcode)}"
            )
        else:
            stop_process(self.proc, 5.0)
        self.conn.close()
        self.summary = unsent(self.specs, self.manifests, report, how)
        return self.summary

    def stop(self, timeout: float) -> None:
        """Stop the process without waiting for its uploads (after a failure of the run)."""
        self._done = True
        self.conn.close()  # end of file: it finishes quickly
        stop_process(self.proc, timeout)
