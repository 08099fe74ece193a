"""What a command-line run writes to its folder's log instead of the terminal.

An env that raises in a worker reaches the Python API as Gymnasium's
``AsyncVectorEnv`` reports it: coloured warnings with the worker's traceback,
then the error. On a terminal that is dozens of lines before the one that
says what went wrong, so ``rlcapture record`` sends every warning and the
error's whole traceback (the worker's included, as its ``__cause__``) to
``OUT/rlcapture.log`` and prints one line that names the file.
"""

from __future__ import annotations

import contextlib
import re
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._backend.run_folder import KeptFilesWarning, RunFolder
from ..errors import RLCaptureError

__all__ = ["logged_to_folder"]

_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


@contextlib.contextmanager
def logged_to_folder(out: Path) -> Iterator[None]:
    """Warnings of the run go to ``OUT/rlcapture.log``; an rlcapture error names the log.

    The error's full traceback is appended to the log and its message gets
    "; traceback in OUT/rlcapture.log", so the terminal shows one line. The
    run folder's own warnings (files kept on overwrite) stay on the terminal.
    """
    log = RunFolder(out).log
    show = warnings.showwarning

    def to_log(message: Any, category: type[Warning], filename: str, lineno: int, *args: Any, **kwargs: Any) -> None:
        if issubclass(category, KeptFilesWarning):
            show(message, category, filename, lineno, *args, **kwargs)
            return
        _append(log, f"{category.__name__} ({filename}:{lineno}): {_COLOUR.sub('', str(message))}\n")

    with warnings.catch_warnings():
        warnings.showwarning = to_log
        try:
            yield
        except RLCaptureError as exc:
            # Only an error with a cause has more to say (a worker's or env's traceback);
            # a refused option is its own whole story.
            if exc.__cause__ is not None and _append(log, "".join(traceback.format_exception(exc))):
                exc.args = (f"{exc}; traceback in {log}", *exc.args[1:])
            raise


def _append(log: Path, text: str) -> bool:
    """Add ``text`` to the log if its folder exists; False when it could not be written."""
    if not log.parent.is_dir():
        return False
    try:
        with open(log, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError:
        return False
    return True
