"""SHA-256 of file contents with a stat-keyed cache, as git's index does: each file is read once.

An entry maps a file's absolute path to its SHA-256 together with the ``stat`` it had when hashed (size,
mtime_ns, ctime_ns, inode). While the stat is the same the cached digest is used; any change (a file
rewritten in place, replaced by another, touched) hashes it again. ctime cannot be set back by a user,
so a rewrite that restores mtime is still seen. A file changed less than :data:`RACY_SECONDS` ago is
hashed but not cached ("racily clean" in git's words: a second write in the same timestamp tick would
keep its stat). The cache is one SQLite file under the user cache folder (``<cache>/file-hashes.sqlite``);
a damaged or unwritable cache only costs time: every file is then hashed.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

RACY_SECONDS = 2.0
SCHEMA = "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, stat TEXT NOT NULL, sha256 TEXT NOT NULL)"


def sha256_of(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def default_cache_file() -> Path:
    """``<cache root>/file-hashes.sqlite`` (the cache root of ``config.base``)."""
    from cvqa_bench.config.base import cache_root

    return cache_root() / "file-hashes.sqlite"


class FileHashes:
    """Content hashes of files, remembered by stat across processes (``digests``)."""

    def __init__(self, cache_file: Path | None = None, racy_seconds: float = RACY_SECONDS) -> None:
        self.cache_file = Path(cache_file) if cache_file is not None else default_cache_file()
        self.racy_ns = racy_seconds * 1e9
        self.hashed = 0  # files read in full by this object (the rest came from the cache)

    def _connect(self) -> sqlite3.Connection | None:
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.cache_file, timeout=60)
            db.execute(SCHEMA)
            return db
        except (OSError, sqlite3.Error):
            try:  # a damaged cache file: start a new one (it only ever saves time)
                self.cache_file.unlink(missing_ok=True)
                db = sqlite3.connect(self.cache_file, timeout=60)
                db.execute(SCHEMA)
                return db
            except (OSError, sqlite3.Error):
                return None

    def digests(self, paths: Iterable[str | Path]) -> dict[str, str]:
        """Path (as given) → SHA-256 of its bytes, for every distinct path.

        Raises:
            OSError: a file cannot be read (named by the exception).
        """
        wanted = {str(p): os.path.abspath(p) for p in paths}  # no resolve(): a syscall per path component
        db = self._connect()
        try:
            known = self._lookup(db, sorted(set(wanted.values()))) if db is not None else {}
            out: dict[str, str] = {}
            fresh: list[tuple[str, str, str]] = []
            now = time.time_ns()
            for given, real in wanted.items():
                st = os.stat(real)
                key = _stat_key(st)
                cached = known.get(real)
                if cached is not None and cached[0] == key:
                    out[given] = cached[1]
                    continue
                out[given] = digest = sha256_of(real)
                self.hashed += 1
                if now - max(st.st_mtime_ns, st.st_ctime_ns) >= self.racy_ns:
                    fresh.append((real, key, digest))
            if db is not None and fresh:
                self._store(db, fresh)
            return out
        finally:
            if db is not None:
                db.close()

    @staticmethod
    def _lookup(db: sqlite3.Connection, paths: list[str]) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        try:
            if len(paths) > 10_000:  # one scan beats many lookups at dataset scale
                wanted = set(paths)
                return {path: (stat, sha) for path, stat, sha in db.execute("SELECT path, stat, sha256 FROM hashes")
                        if path in wanted}
            for start in range(0, len(paths), 900):  # SQLite's bound-parameter limit
                chunk = paths[start:start + 900]
                marks = ",".join("?" * len(chunk))
                for path, stat, sha in db.execute(f"SELECT path, stat, sha256 FROM hashes WHERE path IN ({marks})", chunk):
                    found[path] = (stat, sha)
        except sqlite3.Error:
            return {}
        return found

    @staticmethod
    def _store(db: sqlite3.Connection, rows: list[tuple[str, str, str]]) -> None:
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO hashes (path, stat, sha256) VALUES (?, ?, ?)", rows)
        except sqlite3.Error:
            pass  # read-only or busy cache: the digests are right, only not remembered
