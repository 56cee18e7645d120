"""An exclusive lock on a run folder for the life of a run: a second writer fails at once, naming the holder.

``fcntl.flock`` on ``<run>/.lock``: the kernel drops it when the holder exits, even on SIGKILL, so a
killed run never leaves a stale lock. The file holds the holder's PID and is removed on release; it
is not part of the run (``config.yaml`` is what says a run exists).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from cvqa_bench.config import ConfigError

LOCK_FILE = ".lock"


class RunLocked(ConfigError):
    """Another process holds the run folder's lock."""


class RunLock:
    """``with RunLock(folder):`` holds the folder's lock (creating the folder) until the block ends."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting.

        Raises:
            RunLocked: another process holds it (its PID in the message).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise RunLocked(f"{self.root}: another run is writing here (process {self._holder()}, lock "
                                f"{self.path}); wait for it to end or choose another --out") from None
            # The holder before us may have removed the file after we opened it: then retry on the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        """Remove the lock file and drop the lock (removal first, while it is still held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
