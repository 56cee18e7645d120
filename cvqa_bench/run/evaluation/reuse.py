"""Exact reuse of matrix cells: a cell whose inputs are identical to an earlier cell's is not generated again.

A cell's predictions are determined by four things: the weights it is evaluated with, the test split,
the prompt/generation settings and the image preprocessing (on one frozen base model). The cell key is
a hash of all four; the weights enter as an exact hash of the bytes of every trainable tensor as loaded
for the cell (name, dtype, shape and bytes, in name order). A cell with the key of an earlier cell of
the same run gets a byte copy of that cell's predictions file. ``cells.json`` in the run folder maps
each cell to its key, to the cell it was copied from (null = computed) and to the SHA-256 of its
predictions file (its seal, ``scoring/seals.py``); a damaged ``cells.json`` is set aside, so every cell
is generated again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from cvqa_bench.io import atomic_write_json
from cvqa_bench.models.fingerprint import tensors_fingerprint
from cvqa_bench.scoring.seals import SealBroken, read_cells, seal_problem, sha256_file, update_cells

__all__ = ["CellIndex", "cell_key", "copy_predictions", "tensors_fingerprint"]


def cell_key(weights: str, test_split: str, settings: dict[str, Any]) -> str:
    """SHA-256 of a cell's weights fingerprint, test-split hash and generation/preprocessing settings."""
    payload = json.dumps({"weights": weights, "test": test_split, "settings": settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class CellIndex:
    """``cells.json``: cell name → {key, reused_from}; finds the earlier cell with the same key."""

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.root = root
        self.damage: str | None = None  # why a damaged cells.json was set aside (every cell is then redone)
        try:
            self.cells: dict[str, dict[str, Any]] = read_cells(path)
        except SealBroken as exc:
            self.damage, self.cells = str(exc), {}
            atomic_write_json(path, self.cells)

    def _computed(self) -> dict[str, dict[str, Any]]:
        """The cells indexed by a run (``cvqa score`` may seal a hand-made cell without a key)."""
        return {name: cell for name, cell in self.cells.items() if "key" in cell}

    def name(self, predictions: Path) -> str:
        """A cell's name: its predictions path relative to the run folder's predictions/."""
        return predictions.relative_to(self.root).as_posix()

    def source_for(self, key: str, predictions: Path) -> Path | None:
        """The predictions file of an earlier cell with ``key`` that still exists, other than ``predictions``."""
        own = self.name(predictions)
        for name, cell in self._computed().items():
            if cell["key"] == key and name != own and (self.root / name).is_file() \
                    and seal_problem(self.cells, self.root, self.root / name) is None:  # never copy a changed file
                return self.root / name
        return None

    def record(self, predictions: Path, key: str, reused_from: Path | None, weights: str | None = None) -> None:
        """Store one cell's key, origin and the SHA-256 of its predictions file (its seal), and write the index."""
        origin = self.name(reused_from) if reused_from is not None else None
        entry = {"key": key, "reused_from": origin, "sha256": sha256_file(predictions),
                 "weights": weights}  # the fingerprint of the weights the cell was evaluated with
        self.cells = update_cells(self.root, lambda cells: cells.__setitem__(self.name(predictions), entry))

    def counts(self) -> dict[str, int]:
        """How many indexed cells were computed and how many were copied."""
        cells = self._computed()
        reused = sum(1 for c in cells.values() if c["reused_from"] is not None)
        return {"computed": len(cells) - reused, "reused": reused}


def copy_predictions(source: Path, target: Path) -> None:
    """Byte copy of a predictions file (temporary file + rename, as every write of a run)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
