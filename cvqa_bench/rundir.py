"""The layout of a run directory (docs/design.md, "The run folder"), in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ZERO_SHOT = "zero-shot"


@dataclass(frozen=True)
class RunDir:
    """Paths inside ``results/<run>/``."""

    root: Path

    @property
    def config(self) -> Path:
        """The resolved run config."""
        return self.root / "config.yaml"

    @property
    def sequence(self) -> Path:
        """The resolved sequence (so ``cvqa score`` works without the original YAML)."""
        return self.root / "sequence.yaml"

    @property
    def manifest(self) -> Path:
        """Seeds, versions, device, data hashes, times."""
        return self.root / "manifest.json"

    @property
    def method_records(self) -> Path:
        """The method's decisions and statistics (grouping, alpha stats, replay ids)."""
        return self.root / "method_records.json"

    @property
    def cells(self) -> Path:
        """Every evaluated cell's key and the cell its predictions were copied from (null = computed)."""
        return self.root / "cells.json"

    @staticmethod
    def stage_name(stage: int, task: str | None) -> str:
        """``"<k>-<task>"``, or ``"0-zero-shot"`` for the base model."""
        return f"{stage}-{task if stage else ZERO_SHOT}"

    def stage_dir(self, stage: int, task: str) -> Path:
        """Weights, method state and DONE marker of a trained stage."""
        return self.root / "stages" / self.stage_name(stage, task)

    def predictions(self, stage: int, stage_task: str | None, eval_task: str) -> Path:
        """Predictions JSONL of one matrix cell."""
        return self.root / "predictions" / self.stage_name(stage, stage_task) / f"{eval_task}.jsonl"

    def scores(self, stage: int, stage_task: str | None, eval_task: str) -> Path:
        """Score JSON (scorer, n, score) of one matrix cell."""
        return self.root / "scores" / self.stage_name(stage, stage_task) / f"{eval_task}.json"

    def protocol_dir(self, protocol: str) -> Path:
        """Scores and summary of the run re-scored under a protocol other than its own."""
        return self.root / "protocols" / protocol


def default_run_folder(sequence: str, method: str, seed: int) -> Path:
    """Where a run goes when no folder is given: ``results/<sequence>-<method>-seed<N>`` in the working directory."""
    return Path("results") / f"{Path(sequence).stem}-{method}-seed{seed}"
