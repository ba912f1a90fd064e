"""The single-writer lock of a concept store directory.

Two processes writing one store each keep their own copy of the index in memory and overwrite each
other's index at every write, which silently drops the other's concepts. A writer therefore holds an
exclusive `flock` on `<dir>/.lock` for as long as the store is open. The kernel releases it when the
holding process exits or dies, so a lock left by a crashed process is taken over by the next open with
no stale-lock heuristics; the file only records the holder's pid and host for the error message.
flock locks belong to an open file description, so two opens in one process exclude each other too.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from .errors import StoreLockedError

LOCK_FILE = ".lock"


class DirectoryLock:
    """An exclusive lock on a directory, held until `release()` or the end of the process."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: Path) -> DirectoryLock:
        """Take the lock of `directory` (which must exist) or raise StoreLockedError naming the holder."""
        path = directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreLockedError(
                f"concept store {directory} is in use by {holder} (lock file {path}); only one process may "
                "write a store: stop that process, use another memory directory, or open it read-only"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except OSError:  # the lock holds without the note; only the message of a refused opener suffers
            pass
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (idempotent). The file stays: removing it would race with a new opener."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __del__(self) -> None:  # a store dropped without close() must not keep its directory locked
        try:
            self.release()
        except OSError:
            pass


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
    except OSError:
        text = []
    if len(text) >= 2 and text[0].isdigit():
        return f"process {text[0]} on host {text[1]}"
    return "another process (pid not recorded yet)"
