"""Integrity of saved stages: ``DONE.json`` seals the SHA-256 of every file of its stage and of itself.

A stage counts as done only when its ``DONE.json`` parses, its own checksum holds, it carries the
expected stage hash, and every file it lists has the recorded SHA-256. Anything else is damage:
``--resume`` names it in one line and redoes the stage; ``cvqa score`` refuses the run. The
in-stage Trainer checkpoints (``trainer/``) are not sealed: they are removed once the stage is done.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cvqa_bench.config import ConfigError
from cvqa_bench.io import atomic_write_json

DONE_FILE = "DONE.json"
UNSEALED = ("trainer",)  # folders of a stage that DONE.json does not cover


class StageDamaged(ConfigError):
    """A saved stage whose files differ from what its DONE.json recorded."""


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def stage_files(stage_dir: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file of a stage (``DONE.json``, temporaries and ``trainer/`` aside)."""
    files = {}
    for path in sorted(Path(stage_dir).rglob("*")):
        rel = path.relative_to(stage_dir)
        if path.is_file() and rel.parts[0] not in UNSEALED and rel.name != DONE_FILE and not rel.name.endswith(".tmp"):
            files[rel.as_posix()] = sha256_file(path)
    return files


def _checksum(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_done(stage_dir: Path, record: dict[str, Any]) -> None:
    """Write ``DONE.json``: ``record`` plus the stage's file hashes and a checksum of the whole (written last)."""
    sealed = {**record, "files": stage_files(stage_dir)}
    atomic_write_json(Path(stage_dir) / DONE_FILE, {**sealed, "checksum": _checksum(sealed)})


def read_done(stage_dir: Path) -> dict[str, Any] | None:
    """The stage's ``DONE.json`` when present, parsed; ``None`` when absent.

    Raises:
        StageDamaged: it does not parse, or its checksum does not match its content.
    """
    path = Path(stage_dir) / DONE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StageDamaged(f"{path}: unreadable ({type(exc).__name__})") from exc
    if not isinstance(record, dict) or record.get("checksum") != _checksum(record):
        raise StageDamaged(f"{path}: damaged (its checksum does not match its content)")
    return record


def verify_stage(stage_dir: Path, record: dict[str, Any]) -> None:
    """Check every file ``record`` lists against its SHA-256.

    Raises:
        StageDamaged: a file is missing or differs, naming it.
    """
    files = record.get("files")
    if not isinstance(files, dict) or not files:
        raise StageDamaged(f"{Path(stage_dir) / DONE_FILE}: lists no files (written by an older version)")
    for rel, expected in sorted(files.items()):
        path = Path(stage_dir) / rel
        if not path.is_file():
            raise StageDamaged(f"{path}: missing (listed in {DONE_FILE})")
        if sha256_file(path) != expected:
            raise StageDamaged(f"{path}: damaged (SHA-256 differs from {DONE_FILE})")


def done_stage(stage_dir: Path, expected_hash: str) -> tuple[bool, str | None]:
    """(usable, problem): usable when sealed, intact and made from the same inputs; problem is one line."""
    try:
        record = read_done(stage_dir)
        if record is None:
            return False, None
        if record.get("stage_hash") != expected_hash:
            return False, f"{Path(stage_dir) / DONE_FILE}: made from other inputs (stage hash differs)"
        verify_stage(stage_dir, record)
    except StageDamaged as exc:
        return False, str(exc)
    return True, None


def discard_done(stage_dir: Path) -> None:
    """Remove a stage's unusable ``DONE.json`` (the stage is redone; a kill meanwhile must not count it)."""
    (Path(stage_dir) / DONE_FILE).unlink(missing_ok=True)


def verify_run(run_root: Path) -> None:
    """Check every sealed stage of a run folder (``cvqa score``).

    Raises:
        StageDamaged: the first damaged stage, naming the file, with what to do.
        RunLocked: a run is writing the folder right now.
    """
    from cvqa_bench.run.state.lock import RunLock

    with RunLock(run_root):  # refuse while a run writes here (its stages would be half-saved)
        pass
    for stage_dir in sorted((Path(run_root) / "stages").glob("*")):
        try:
            record = read_done(stage_dir)
            if record is not None:
                verify_stage(stage_dir, record)
        except StageDamaged as exc:
            raise StageDamaged(f"{exc}; redo the stage with `cvqa run ... --resume`") from exc
