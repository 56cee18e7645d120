"""Seals of what evaluation and scoring write: the SHA-256 of every predictions and scores file, in ``cells.json``.

``cells.json`` maps each cell (its predictions path relative to the run folder) to ``key`` and
``reused_from`` (``run/evaluation/reuse.py``), ``sha256``, the digest of the predictions file as last written by
the run or by ``cvqa score``, and ``scores``: each scores file made from it (relative path, one per
protocol folder) → its SHA-256. ``cvqa score`` and ``cvqa report`` refuse a file that is unsealed or differs; ``--resume``
names it and generates the cell again. A file changed by hand is therefore never scored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cvqa_bench.config import ConfigError
from cvqa_bench.data.file_hashes import sha256_of as sha256_file  # one SHA-256 of a file's bytes
from cvqa_bench.io import atomic_write_json

CELLS_FILE = "cells.json"
REDO_HINT = "generate it again with `cvqa run ... --resume`"


class SealBroken(ConfigError):
    """A predictions or scores file that differs from its seal in cells.json, or a damaged cells.json."""


def read_cells(path: Path) -> dict[str, Any]:
    """``cells.json`` parsed (empty when absent).

    Raises:
        SealBroken: it does not parse, or is not an object of objects.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SealBroken(f"{path}: damaged ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise SealBroken(f"{path}: damaged (not an object of cell records)")
    return data


def _name(root: Path, path: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def is_sealed(cells: dict[str, Any], root: Path, predictions: Path) -> bool:
    """Whether ``cells`` holds a seal for ``predictions`` (a file written by a killed run may have none yet)."""
    return "sha256" in cells.get(_name(root, predictions), {})


def seal_problem(cells: dict[str, Any], root: Path, predictions: Path) -> str | None:
    """Why ``predictions`` cannot be trusted (``None`` when its SHA-256 is the one sealed in ``cells``)."""
    expected = cells.get(_name(root, predictions), {}).get("sha256")
    if expected is None:
        return f"{predictions}: not sealed in {root / CELLS_FILE} (written by an older version or a killed run)"
    if sha256_file(predictions) != expected:
        return f"{predictions}: changed since the run wrote it (SHA-256 differs from {root / CELLS_FILE})"
    return None


def update_cells(root: Path, change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    """Read cells.json, apply ``change`` to it in place, write it back and return it (the run folder's one
    writer is its main process, or ``cvqa score`` under the run lock)."""
    path = Path(root) / CELLS_FILE
    cells = read_cells(path)
    change(cells)
    atomic_write_json(path, cells)
    return cells


def seal_predictions(root: Path, paths: Iterable[Path]) -> None:
    """Record the SHA-256 of predictions files a run or ``cvqa score`` just wrote."""
    digests = {_name(root, p): sha256_file(p) for p in paths}
    if digests:
        update_cells(root, lambda cells: [cells.setdefault(n, {}).update(sha256=d) for n, d in digests.items()])


def seal_scores(root: Path, pairs: Iterable[tuple[Path, Path]]) -> None:
    """Record the SHA-256 of scores files just written: (predictions file, scores file made from it) pairs."""
    digests = [(_name(root, p), _name(root, s), sha256_file(s)) for p, s in pairs]
    if digests:
        update_cells(root, lambda cells: [cells.setdefault(p, {}).setdefault("scores", {}).update({s: d})
                                          for p, s, d in digests])


def verify_predictions(root: Path, paths: Iterable[Path]) -> None:
    """Check each predictions file against its seal.

    Raises:
        SealBroken: the first unsealed or changed file, in one line with what to do.
    """
    cells = read_cells(Path(root) / CELLS_FILE)
    for path in paths:
        problem = seal_problem(cells, Path(root), path)
        if problem is not None:
            raise SealBroken(f"{problem}; {REDO_HINT}")


def verify_scores(root: Path, paths: Iterable[Path]) -> None:
    """Check each scores file against its seal (``cvqa report``).

    Raises:
        SealBroken: the first unsealed or changed scores file, with what to do.
    """
    root = Path(root)
    sealed = {name: sha for cell in read_cells(root / CELLS_FILE).values()
              for name, sha in (cell.get("scores") or {}).items()}
    for path in paths:
        expected = sealed.get(_name(root, path))
        if expected is None:
            raise SealBroken(f"{path}: not sealed in {root / CELLS_FILE}; score the run again with `cvqa score {root}`")
        if sha256_file(path) != expected:
            raise SealBroken(f"{path}: changed since it was scored (SHA-256 differs from {root / CELLS_FILE}); "
                             f"score the run again with `cvqa score {root}`")


def verify_run_files(root: Path) -> None:
    """Check every predictions and scores file of a finished run folder against its seal (``cvqa report``).

    A folder without predictions (a committed reference: summary files only) has nothing to check.

    Raises:
        SealBroken: the first unsealed or changed file.
    """
    root = Path(root)
    if not (root / CELLS_FILE).is_file() and not (root / "predictions").is_dir():
        return  # summary files only: a committed reference, or a run's protocols/<name>/ (checked from the run)
    verify_predictions(root, sorted(root.glob("predictions/*/*.jsonl")))
    verify_scores(root, sorted([*root.glob("scores/*/*.json"), *root.glob("protocols/*/scores/*/*.json")]))
