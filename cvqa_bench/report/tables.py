"""Report tables: one format-neutral table model and the builders of the matrix, metrics and comparison tables.

A :class:`ReportTable` holds raw cells (text, numbers, :class:`Stat` for mean ± std, ``None`` for
"not defined"); ``report.formats`` renders them. Numbers are shown with 2 decimals in Markdown/LaTeX
and written in full precision in CSV/JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvqa_bench.metrics import HIGHER_IS_BETTER, METRIC_FORMULAS, OTHER_NAMES, PAPER_NAMES

DIGITS = 2


@dataclass(frozen=True)
class Stat:
    """A mean over ``n`` runs with its sample standard deviation (``ddof=1``; ``None`` when n == 1)."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        """Mean and sample std (ddof=1) of ``values``."""
        arr = np.asarray(values, dtype=float)
        if arr.size == 0:
            raise ValueError("Stat.of needs at least one value")
        std = float(arr.std(ddof=1)) if arr.size > 1 else None
        return cls(float(arr.mean()), std, int(arr.size))


Cell = str | int | float | Stat | None


@dataclass
class ReportTable:
    """A titled table; ``subheader`` is an optional second header line (e.g. the scorer of each task)."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    subheader: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        width = len(self.columns)
        for i, row in enumerate(self.rows):
            if len(row) != width:
                raise ValueError(f"table {self.key!r}: row {i} has {len(row)} cells, expected {width}")
        if self.subheader is not None and len(self.subheader) != width:
            raise ValueError(f"table {self.key!r}: subheader has {len(self.subheader)} cells, expected {width}")


def format_cell(cell: Cell, *, pm: str = "±", missing: str = "–") -> str:
    """Human text of one cell: 2 decimals for numbers, ``mean ± std`` for a :class:`Stat`."""
    if cell is None:
        return missing
    if isinstance(cell, Stat):
        if cell.std is None:
            return f"{cell.mean:.{DIGITS}f}"
        return f"{cell.mean:.{DIGITS}f} {pm} {cell.std:.{DIGITS}f}"
    if isinstance(cell, bool | int | str):
        return str(cell)
    if isinstance(cell, float):
        return "nan" if math.isnan(cell) else f"{cell:.{DIGITS}f}"
    raise TypeError(f"unsupported table cell {cell!r}")


def matrix_table(matrix: np.ndarray, tasks: Sequence[str], scorers: Sequence[str], *, title: str,
                 std: np.ndarray | None = None, n: int = 1) -> ReportTable:
    """The (T+1)×T accuracy matrix: one row per stage (0 = zero-shot), one column per task (scorer below)."""
    rows: list[list[Cell]] = []
    for k, values in enumerate(np.asarray(matrix, dtype=float)):
        cells: list[Cell] = [float(v) if std is None else Stat(float(v), float(std[k, i]), n)
                             for i, v in enumerate(values)]
        rows.append([k, "zero-shot" if k == 0 else tasks[k - 1], *cells])
    caption = "Accuracy (%) on each task (columns) after each training stage (rows); stage 0 is the untrained model."
    if std is not None:
        caption += f" Mean ± sample std (ddof=1) over n = {n} seeds."
    return ReportTable("matrix", title, ["stage", "trained task", *tasks], rows, caption,
                       subheader=["", "scorer", *scorers])


def metrics_table(metrics: dict[str, float | Stat], benchmark_names: dict[str, str] | None = None,
                  benchmark: str = "") -> ReportTable:
    """Every metric with its name, the paper's name for it, other names, value and formula.

    ``benchmark_names`` (a sequence's ``metric_names``, e.g. UCIT's ``final_avg: Last``) adds a column
    with the names the papers of ``benchmark`` print.
    """
    rows: list[list[Cell]] = []
    for name, formula in METRIC_FORMULAS.items():
        if name in metrics:
            better = "higher" if HIGHER_IS_BETTER[name] else "lower"
            bench = [benchmark_names.get(name, "")] if benchmark_names else []
            rows.append([name, *bench, PAPER_NAMES.get(name, ""), OTHER_NAMES.get(name, ""), metrics[name], better,
                         formula])
    caption = ("A[t][i] = accuracy on task i after stage t (1-based), A[0] = zero-shot, T tasks; macro averages. "
               "Paper names as printed in LLaCA (arXiv 2410.10868), e.g. Avg.ACC = final_avg.")
    header = ["metric", *(["benchmark name"] if benchmark_names else []), "paper name",
              "also called", "value", "better", "formula"]
    if benchmark_names:
        caption += (f" Benchmark name: what the papers of the {benchmark or 'sequence'} benchmark print for the "
                    "metric (docs/benchmarks.md).")
    return ReportTable("metrics", "Metrics", header, rows, caption)


@dataclass(frozen=True)
class ComparisonRow:
    """One row of the comparison table: a run or a group of seeds, its metrics and final per-task scores."""

    label: str
    seeds: list[Any]
    metrics: dict[str, Stat | None]
    final: dict[str, Stat | None]


def comparison_table(rows: Sequence[ComparisonRow], tasks: Sequence[str], scorers: Sequence[str]) -> ReportTable:
    """Methods (rows) × metrics, then the last-stage accuracy per task; cells are mean ± sample std."""
    names = [m for m in METRIC_FORMULAS if any(r.metrics.get(m) is not None for r in rows)]
    body: list[list[Cell]] = [
        [r.label, len(r.seeds), ",".join(str(s) for s in r.seeds), *(r.metrics.get(m) for m in names),
         *(r.final.get(t) for t in tasks)]
        for r in rows
    ]
    grouped = any(len(r.seeds) > 1 for r in rows)
    caption = ("Mean ± sample standard deviation (ddof=1) over the n seeds of each row; runs whose config.yaml is "
               "identical apart from the seed (and run name / output path) are grouped. " if grouped else
               "One run per row (n = 1, no standard deviation). ")
    caption += "Task columns: accuracy (%) after the last stage."
    return ReportTable("comparison", "Comparison", ["method", "n", "seeds", *names, *tasks], body, caption,
                       subheader=["", "", "", *(PAPER_NAMES.get(m, "") for m in names), *scorers])
