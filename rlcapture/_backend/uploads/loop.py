"""The uploader process: follows manifests and sends each episode to every tracker.

It runs in its own process (started by :class:`~.process.Uploader`),
so nothing here ever runs on the step path or in the encoder's frame loop.
Its input is the run's manifest itself, read as it grows: the manifest is
already the ordered record of every episode of every encoder shard, so the
encoder hands nothing over and waits on nothing, and a dead or stuck uploader
can block no one. One thread per tracker: a tracker that hangs (a server that
does not answer) delays only its own uploads.

Each upload is tried ``attempts`` times with doubling waits; once a tracker
has failed an upload that often it is taken as down, and later uploads get
one try each until one succeeds, so a down tracker costs one try per upload,
not a backlog of waits. At the end the uploader has ``timeout`` seconds to
finish, then reports what each tracker took; what it did not take is named
by the recorder (summary and manifest).

The step of an episode is its ``timestep`` field when the manifest has one
(recorded during training), else its ``step`` (the env steps of the
manifest's episodes up to and including it, in the manifest's order; counted
here for a manifest written before lines had it).

Each tracker's adapter is imported here, by the name :mod:`.registry` gives
it, when its thread first sends something: the engine imports no tracker
package and no module of :mod:`rlcapture.trackers`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from ...errors import first_line
from ..manifest import ManifestFollower
from .adapter import RunInfo, Tracker
from .messages import Finish, Follow, Report, Sent, TrackerReport, UploaderFailed, decode, encode
from .parts import upload_parts
from .spec import TrackerSpec, missing_package, open_tracker, parse_tracker

__all__ = ["uploader_main", "run_uploader", "BACKOFF", "QUEUE_ITEMS"]

#: Seconds before the second try of an upload; each later wait doubles, up to 8 s.
BACKOFF = 0.5
#: Uploads a tracker's thread may have waiting; beyond, they are named as not sent.
QUEUE_ITEMS = 10_000


@dataclass
class _Item:
    manifest: str
    record: dict[str, Any]
    step: int
    parts: list[str]
    video: str | None


class _Source:
    """A manifest being followed (complete lines only), and its running env steps."""

    def __init__(self, path: str, fields: dict[str, Any]) -> None:
        self.path = path
        self.fields = fields
        self.follower = ManifestFollower(path)
        self.steps = 0

    def read(self) -> list[dict[str, Any]]:
        """The complete lines appended since the last read (a line being written waits)."""
        return self.follower.read()


@dataclass
class _Sender:
    """One tracker's thread, its queue, and what it sent."""

    spec: TrackerSpec
    run: RunInfo
    attempts: int
    queue: queue.Queue[_Item | None] = field(default_factory=lambda: queue.Queue(QUEUE_ITEMS))
    sent: list[Sent] = field(default_factory=list)
    error: str | None = None
    down: bool = False
    overflow: int = 0
    open_failures: int = 0  # a tracker that cannot be opened that often is not tried again
    tracker: Tracker | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self._main, name=f"upload-{self.spec.kind}", daemon=True
        )
        self.thread.start()

    def put(self, item: _Item | None) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.overflow += 1
            self.error = f"more than {QUEUE_ITEMS} uploads waiting; later ones were not sent"

    def _main(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # noqa: BLE001 - the report names it; the others go on
            self.error = f"its upload thread failed: {_describe(exc)}"

    def _serve(self) -> None:
        missing = missing_package(self.spec)
        while True:
            item = self.queue.get()
            if item is None:
                break
            if missing:
                self.error = missing
                continue
            for part in item.parts:
                if self._try(item, part):
                    self.sent.append(
                        Sent(item.manifest, item.record["env"], item.record["episode"], part)
                    )
        if self.tracker is not None:
            try:
                self.tracker.close()
            except Exception as exc:  # noqa: BLE001 - named in the report
                self.error = _describe(exc)

    def _send(self, item: _Item, part: str) -> None:
        if self.tracker is None:
            try:
                self.tracker = open_tracker(self.spec, self.run)
            except Exception:
                self.open_failures += 1
                raise
        if part == "stats":
            self.tracker.log_episode(item.record, item.step)
        else:
            assert item.video is not None
            self.tracker.log_video(item.record, item.video, item.step)

    def _try(self, item: _Item, part: str) -> bool:
        if self.tracker is None and self.open_failures >= self.attempts:
            return False  # its run could not be opened: the error says why
        tries = 1 if self.down else self.attempts
        for i in range(tries):
            if self.tracker is None and self.open_failures >= self.attempts:
                break
            try:
                self._send(item, part)
            except FileNotFoundError as exc:
                if part == "video" and item.video and not os.path.exists(item.video):
                    return False  # a keep rule discarded it meanwhile: nothing to send
                self.error = _describe(exc)
                if i + 1 < tries:
                    time.sleep(min(8.0, BACKOFF * 2**i))
                continue
            except ImportError as exc:
                self.error = missing_package(self.spec) or _describe(exc)
                self.down = True
                return False
            except Exception as exc:  # noqa: BLE001 - any tracker failure is retried, then named
                self.error = _describe(exc)
                if i + 1 < tries:
                    time.sleep(min(8.0, BACKOFF * 2**i))
                continue
            self.down = False
            return True
        self.down = True
        return False

    def report(self) -> TrackerReport:
        return TrackerReport(list(self.sent), self.error)


def _describe(exc: BaseException) -> str:
    first = first_line(exc)
    if len(first) > 200:
        first = first[:200] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _items(source: _Source, records: list[dict[str, Any]]) -> list[_Item]:
    folder = os.path.dirname(source.path)
    items = []
    for raw in records:
        if raw.get("update") is True:
            continue  # keep rules' and uploads' own notes
        record = {**raw, **source.fields}
        source.steps += int(record.get("length") or 0)
        parts = upload_parts(record)
        if not parts:
            continue
        timestep, written = record.get("timestep"), record.get("step")
        if isinstance(timestep, (int, float)):
            step = int(timestep)
        elif isinstance(written, int):
            step = written  # the manifest's own count (exact across encoder shards)
        else:
            step = source.steps
        video = os.path.join(folder, record["video"]) if "video" in parts else None
        items.append(_Item(source.path, record, step, parts, video))
    return items


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
    end of file here), then serves the trackers. A failure of its own is
    sent as :class:`~.messages.UploaderFailed` (and printed) before it exits
    with status 1. It leaves with ``os._exit``: a tracker thread still stuck
    on a server that does not answer must not keep the process alive after
    its report is sent.
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
        run = RunInfo(out_dir=out_dir, name=name, timeout=min(30.0, max(1.0, timeout / 2)))
        run_uploader(specs, run, attempts, timeout, control)
    except BaseException as exc:  # noqa: BLE001 - the recorder names it, or the exit status
        traceback.print_exc()
        code = 1
        try:
            control.send_bytes(encode(UploaderFailed(_describe(exc), traceback.format_exc())))
        except (OSError, ValueError):
            pass  # the recorder is gone, or closed its end
    finally:
        try:
            control.close()
        except OSError:
            pass
    os._exit(code)


def run_uploader(
    specs: list[str], run: RunInfo, attempts: int, timeout: float, control: Any
) -> None:
    """Serve the trackers of ``specs`` until told to finish; then send the report.

    ``control`` carries :class:`~.messages.Follow` (read that manifest,
    adding its fields to its records), :class:`~.messages.Finish` (read what
    is left, then finish within ``timeout`` seconds), and back the
    :class:`~.messages.Report`: per spec, the parts it sent and its last
    error. End of file on ``control`` (the recorder's process died)
    finishes too.
    """
    workers = [_Sender(parse_tracker(s), run, attempts) for s in specs]
    for w in workers:
        w.start()
    sources: list[_Source] = []
    deadline = None
    while deadline is None:
        try:
            ready = control.poll(0.2)
            msg = decode(control.recv_bytes()) if ready else None
        except (EOFError, OSError):
            msg, control = Finish(), None
        if isinstance(msg, Follow):
            sources.append(_Source(msg.path, dict(msg.fields)))
        elif isinstance(msg, Finish):
            deadline = time.monotonic() + (timeout if control is not None else min(timeout, 10.0))
        for source in sources:
            for item in _items(source, source.read()):
                for w in workers:
                    w.put(item)
    for w in workers:
        w.put(None)
    for w in workers:
        assert w.thread is not None
        w.thread.join(max(0.0, deadline - time.monotonic()))
    report = {str(w.spec): w.report() for w in workers}
    for w in workers:
        if w.thread is not None and w.thread.is_alive() and w.error is None:
            w.error = (
                f"no answer within the upload timeout ({timeout:g} s)"
                if w.tracker is None
                else f"still sending after the upload timeout ({timeout:g} s)"
            )
            report[str(w.spec)] = report[str(w.spec)]._replace(error=w.error)
    if control is not None:
        try:
            control.send_bytes(encode(Report(report)))
        except OSError:
            pass
