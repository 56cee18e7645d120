"""A run that has not finished (no matrix.csv yet): the partial matrix, its missing cells, the defined metrics.

Every predictions file already written is scored (read only: no score or predictions file changes). The
metrics are those of the complete square part of the matrix: after stage k every task up to k has a
score at every stage up to k (and at stage 0), so the run so far is a k-task run, and the metrics of
:func:`cvqa_bench.metrics.compute_metrics` over those k tasks are defined; nothing else is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvqa_bench.config import read_yaml
from cvqa_bench.metrics import compute_metrics
from cvqa_bench.report.summary import MATRIX_FILE, meta_lines
from cvqa_bench.report.tables import ReportTable, matrix_table, metrics_table
from cvqa_bench.rundir import RunDir
from cvqa_bench.scoring.cells import load_run_sequence, score_predictions
from cvqa_bench.scoring.seals import is_sealed, read_cells, verify_predictions
from cvqa_bench.scoring.protocol import scorer_for


@dataclass(eq=False)
class PartialRun:
    """The scored part of an unfinished run: (T+1)×T matrix in percent, NaN where a cell has no predictions."""

    path: Path
    tasks: list[str]
    scorers: dict[str, str]
    matrix: np.ndarray
    meta: dict[str, Any]

    @property
    def missing(self) -> list[tuple[int, str]]:
        """(stage, eval task) of every cell without predictions, row by row."""
        return [(int(k), self.tasks[i]) for k, i in np.argwhere(np.isnan(self.matrix))]

    @property
    def complete_stages(self) -> int:
        """The largest k such that rows 0..k hold a score for each of the first k tasks (0: none)."""
        k = 0
        while k < len(self.tasks) and not np.isnan(self.matrix[: k + 2, : k + 1]).any():
            k += 1
        return k

    @property
    def metrics(self) -> dict[str, float]:
        """The metrics of the first :attr:`complete_stages` tasks (empty when none is complete)."""
        k = self.complete_stages
        return compute_metrics(self.matrix[1 : k + 1, :k], self.matrix[0, :k]) if k else {}


def is_partial_run(run_dir: Path) -> bool:
    """A run folder (config.yaml, sequence.yaml) whose summary (matrix.csv) is not written yet."""
    run = RunDir(Path(run_dir))
    return run.config.is_file() and run.sequence.is_file() and not (run.root / MATRIX_FILE).is_file()


def load_partial_run(run_dir: Path) -> PartialRun:
    """Score every predictions file of an unfinished run under its own protocol."""
    run = RunDir(Path(run_dir))
    config = read_yaml(run.config) or {}
    protocol = config.get("protocol", "corrected")
    sequence = load_run_sequence(run)
    tasks = sequence.task_names()
    scorers = {t.name: scorer_for(protocol, t.name, t.scorer) for t in sequence.tasks}
    matrix = np.full((len(tasks) + 1, len(tasks)), np.nan)
    cells = read_cells(run.cells)
    for stage in range(len(tasks) + 1):
        for col, task in enumerate(tasks):
            path = run.predictions(stage, tasks[stage - 1] if stage else None, task)
            if path.is_file() and is_sealed(cells, run.root, path):  # unsealed: a killed run's last cell, redone
                verify_predictions(run.root, [path])
                matrix[stage, col] = 100.0 * float(score_predictions(path, scorers[task], protocol)["score"])
    meta = {"name": run.root.name, "sequence": config.get("sequence"), "method": (config.get("method") or {}).get("name"),
            "seed": config.get("seed"), "protocol": protocol}
    return PartialRun(run.root, tasks, scorers, matrix, meta)


def partial_tables(run: PartialRun) -> list[ReportTable]:
    """The partial matrix (– for a missing cell) and the metrics that are defined."""
    table = matrix_table(np.nan_to_num(run.matrix), run.tasks, [run.scorers[t] for t in run.tasks],
                         title="Accuracy matrix (partial)")
    for k, row in enumerate(table.rows):
        row[2:] = [None if np.isnan(run.matrix[k, i]) else row[2 + i] for i in range(len(run.tasks))]
    table.notes.append("– = not predicted yet.")
    k = run.complete_stages
    if not k:
        table.notes.append("No metric is defined yet: no trained stage is complete.")
        return [table]
    metrics = metrics_table(run.metrics)
    metrics.title = f"Metrics so far (the first {k} of {len(run.tasks)} tasks)"
    metrics.notes.append(f"Over stages 0..{k} and tasks 1..{k}, the complete part of the matrix; the final "
                         "metrics need every stage.")
    return [table, metrics]


def partial_lines(run: PartialRun) -> tuple[str, list[str], list[str]]:
    """The report's title, its header lines and the warning naming the missing cells."""
    done = run.matrix.size - len(run.missing)
    title = f"Run {run.meta['name']} (partial: {done} of {run.matrix.size} cells)"
    by_stage: dict[int, list[str]] = {}
    for stage, task in run.missing:
        by_stage.setdefault(stage, []).append(task)
    names = "; ".join(f"stage {RunDir.stage_name(k, run.tasks[k - 1] if k else None)}: "
                      + ("all tasks" if len(tasks) == len(run.tasks) else ", ".join(tasks))
                      for k, tasks in by_stage.items())
    warning = f"unfinished run: {len(run.missing)} cells not predicted yet ({names})"
    return title, meta_lines(run.meta), [warning]
