"""Run a command as an unprivileged user, so that folder permissions apply to it.

Root ignores read-only folders, and CI runs as root: a permission test run
as root passes whatever the code does with ``EACCES``. As root, commands go
through ``setpriv`` as ``nobody``; as anyone else they run as they are (the
permissions already apply). :class:`Unprivileged` also gives a folder the
user can reach (pytest's own ``tmp_path`` is under a ``0700`` folder).

When this Python is installed under a folder ``nobody`` cannot enter (pyenv
in ``/root``, ``0700``), the command runs in a private mount namespace in
which that folder is a ``0755`` tmpfs holding bind mounts of only what the
interpreter needs (the blocked folder's own permissions are not changed).
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["Unprivileged", "USER"]

#: The user commands run as when this process is root.
USER = "nobody"
_SETPRIV = ["setpriv", f"--reuid={USER}", "--regid=nogroup", "--clear-groups", "--"]


def _blocked_dirs(paths: list[str]) -> dict[Path, set[str]]:
    """Folders on the way to ``paths`` that others cannot enter, and the entries needed in each."""
    blocked: dict[Path, set[str]] = {}
    for path in paths:
        parts = Path(path).parts
        for i in range(1, len(parts)):
            folder = Path(*parts[:i])
            if not folder.stat().st_mode & stat.S_IXOTH:
                blocked.setdefault(folder, set()).add(parts[i])
                break
    return blocked


def _interpreter_paths() -> list[str]:
    return sorted(
        {os.path.realpath(sys.executable), sys.base_prefix, sys.prefix, str(Path(__file__).parent)}
    )


class Unprivileged:
    """Commands as an unprivileged user, and a folder it can write to.

    Use as a context manager; the folder (``base``) is removed on exit.
    ``reason`` is why the commands cannot run (None when they can).
    """

    def __init__(self) -> None:
        self.root = os.geteuid() == 0
        self.reason: str | None = None
        self._wrap: list[str] = []
        self.base = Path(tempfile.mkdtemp(prefix="rlcapture-user-"))
        self.base.chmod(0o755)  # reachable by the user; what it may write is set per test
        self.home = self.base / "home"
        self.home.mkdir()
        if not self.root:
            return
        missing = [tool for tool in ("setpriv", "unshare", "mount") if shutil.which(tool) is None]
        if missing:
            self.reason = f"running as root without {', '.join(missing)}"
            return
        self.chown(self.home)
        blocked = _blocked_dirs(_interpreter_paths())
        if len(blocked) > 1:
            self.reason = f"the interpreter is behind several folders {USER} cannot enter: {sorted(map(str, blocked))}"
            return
        if blocked:
            ((folder, entries),) = blocked.items()
            stash = self.base / "stash"
            stash.mkdir(mode=0o700)
            lines = [
                "set -e",
                f"mount --bind {shlex.quote(str(folder))} {shlex.quote(str(stash))}",
                f"mount -t tmpfs -o mode=0755,size=1m tmpfs {shlex.quote(str(folder))}",
            ]
            for entry in sorted(entries):
                inside, stashed = shlex.quote(str(folder / entry)), shlex.quote(str(stash / entry))
                lines.append(f"mkdir {inside} && mount --bind {stashed} {inside}")
            lines.append('exec "$@"')
            self._wrap = [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                "\n".join(lines),
                "sh",
            ]
        probe = subprocess.run(
            self.command([sys.executable, "-c", "import os, rlcapture; print(os.geteuid())"]),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if probe.returncode != 0 or probe.stdout.strip() == "0":
            self.reason = f"cannot run Python as {USER}: {probe.stderr.strip()[-500:]}"

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` as the unprivileged user (unchanged when this process is not root)."""
        return [*self._wrap, *_SETPRIV, *argv] if self.root else list(argv)

    def env(self, **extra: str) -> dict[str, str]:
        """The user's environment: this checkout and its tests importable, its own home."""
        repo = Path(__file__).resolve().parent.parent
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(repo), str(repo / "tests"), env.get("PYTHONPATH", "")])
        )
        env.update(HOME=str(self.home), PYTHONDONTWRITEBYTECODE="1", XDG_CACHE_HOME=str(self.home))
        env.update(extra)
        return env

    def chown(self, path: Path) -> None:
        """Give ``path`` to the user (a no-op when this process is not root)."""
        if self.root:
            shutil.chown(path, USER, "nogroup")

    def folder(self, name: str, mode: int = 0o755) -> Path:
        """A folder of ``base``, the user's own, with ``mode``."""
        path = self.base / name
        path.mkdir()
        self.chown(path)
        path.chmod(mode)
        return path

    def close(self) -> None:
        for folder, _, _ in os.walk(self.base):
            try:
                Path(folder).chmod(0o700)
            except OSError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Unprivileged:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
