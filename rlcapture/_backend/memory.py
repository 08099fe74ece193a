"""Anonymous shared memory that is freed when its last user goes away.

Frames travel between processes through memory that has no name anywhere: on
Linux a ``memfd``, elsewhere a temporary file that is unlinked the moment it is
opened (in ``/dev/shm`` where that exists). Such memory is reached only through
its file descriptor, which the creator hands to the other side over a Unix
socket (``SCM_RIGHTS``), so a crashed or SIGKILLed run cannot leave a segment
behind: the kernel frees it when the last descriptor and mapping close.
"""

from __future__ import annotations

import errno
import mmap
import os
import sys
import tempfile

__all__ = ["SharedBlock"]


def _anonymous_fd(size: int, name: str) -> int:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
    else:  # macOS and other POSIX systems: an unlinked temporary file
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, path = tempfile.mkstemp(prefix="rlcapture-", dir=folder)
        os.unlink(path)
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.EFBIG:
            # A file size limit (ulimit -f) applies to memfds too.
            limit = _fsize_limit()
            raise OSError(
                errno.EFBIG,
                f"cannot make a {size}-byte shared-memory ring: the file size limit "
                f"(ulimit -f) is {limit} bytes; raise it, or record smaller frames or "
                "fewer slots (Recorder(slots=...))",
            ) from exc
        raise
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fsize_limit() -> str:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, AttributeError):
        return "lower than that"
    return "unlimited" if soft == resource.RLIM_INFINITY else str(soft)


class SharedBlock:
    """A block of shared memory mapped into this process.

    The creator and every process that maps it through :meth:`attach` hold their
    own descriptor and mapping; :meth:`close` releases this process's share and
    is idempotent. No unlink is ever needed.

    Args:
        size: Size in bytes (at least 1).
        name: A label that shows in ``/proc/PID/fd`` for debugging.
    """

    def __init__(self, size: int, name: str = "rlcapture") -> None:
        if sys.platform == "win32":  # pragma: no cover - Linux first
            raise OSError("rlcapture needs a POSIX system (Linux, macOS)")
        self.size = max(1, int(size))
        self.fd = -1
        self._mmap: mmap.mmap | None = None
        self.fd = _anonymous_fd(self.size, name)
        self._mmap = mmap.mmap(self.fd, self.size)

    @classmethod
    def attach(cls, fd: int, size: int) -> SharedBlock:
        """Map memory received as a descriptor; the block takes ownership of ``fd``."""
        block = cls.__new__(cls)
        block.size = size
        block.fd = fd
        block._mmap = None
        try:
            block._mmap = mmap.mmap(fd, size)
        except BaseException:
            block.close()
            raise
        return block

    @property
    def buf(self) -> memoryview:
        """The mapped bytes."""
        if self._mmap is None:
            raise ValueError("shared block is closed")
        return memoryview(self._mmap)

    def close(self) -> None:
        """Unmap and close this process's descriptor (idempotent)."""
        mm, self._mmap = self._mmap, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                # A numpy view still points into the mapping; the mapping is
                # released with the last view instead.
                pass
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()
