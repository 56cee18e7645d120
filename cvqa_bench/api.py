"""The Python API for notebooks and scripts: ``cvqa_bench.load_run(path)`` and ``cvqa_bench.run(config)``.

``load_run`` reads a run folder into pandas: the accuracy matrix (stage x task, and in long form with each
cell's n, standard error and 95% interval), the metrics, the resolved config and every per-sample
prediction. ``run`` is ``cvqa run`` for a script: it trains and evaluates, then returns what ``load_run``
reads. ``import cvqa_bench`` loads neither torch nor pandas; these functions load what they need.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cvqa_bench.config import RunConfig, load_run_config
from cvqa_bench.io import read_jsonl
from cvqa_bench.report.summary import load_run as load_summary
from cvqa_bench.rundir import RunDir, default_run_folder

LONG_COLUMNS = ["stage", "trained_task", "task", "score", "n", "se", "ci95_low", "ci95_high", "interval"]
CELL_COLUMNS = ["stage", "trained_task", "task"]


@dataclass(eq=False)  # identity equality: it holds data frames
class RunResults:
    """One run folder as data. Scores are percent; stage 0 is the zero-shot (untrained) model."""

    path: Path
    config: dict[str, Any]
    matrix: pd.DataFrame  # rows (stage, trained_task), columns the evaluated tasks
    matrix_long: pd.DataFrame  # one row per cell: LONG_COLUMNS
    metrics: dict[str, float]
    predictions: pd.DataFrame  # one row per question and cell: CELL_COLUMNS, then the record's fields
    results: dict[str, Any] | None  # results.json as written (None for a run scored before it existed)


def load_run(path: str | Path) -> RunResults:
    """Read a scored run folder: config, matrix (wide and long), metrics and per-sample predictions.

    Raises:
        cvqa_bench.report.summary.RunSummaryError: the folder has no readable matrix.csv / metrics.json.
    """
    summary = load_summary(Path(path))
    run = RunDir(summary.path)
    stages = [(k, summary.tasks[k - 1] if k else "zero-shot") for k in range(len(summary.tasks) + 1)]
    matrix = pd.DataFrame(summary.matrix, columns=pd.Index(summary.tasks, name="task"),
                          index=pd.MultiIndex.from_tuples(stages, names=["stage", "trained_task"]))
    results_file = run.root / "results.json"
    results = json.loads(results_file.read_text(encoding="utf-8")) if results_file.is_file() else None
    return RunResults(path=run.root, config=summary.config or {}, matrix=matrix,
                      matrix_long=_long_form(matrix, results), metrics=dict(summary.metrics),
                      predictions=_predictions(run, stages, summary.tasks), results=results)


def _long_form(matrix: pd.DataFrame, results: dict[str, Any] | None) -> pd.DataFrame:
    """One row per cell; n, se and the interval from results.json when the run has one."""
    cells = (results or {}).get("matrix", {}).get("cells")
    rows = []
    for row, (stage, trained) in enumerate(matrix.index):
        for col, task in enumerate(matrix.columns):
            cell = cells[row][col] if cells else {}
            low, high = cell.get("ci95") or (None, None)
            rows.append([stage, trained, task, float(matrix.iat[row, col]), cell.get("n"), cell.get("se"), low, high,
                         cell.get("interval")])
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def _predictions(run: RunDir, stages: list[tuple[int, str]], tasks: list[str]) -> pd.DataFrame:
    """Every stored prediction record, labelled with its cell (cells without a predictions file are absent)."""
    records = []
    for stage, trained in stages:
        for task in tasks:
            path = run.predictions(stage, trained if stage else None, task)
            if path.is_file():
                records += [{"stage": stage, "trained_task": trained, "task": task, **r} for r in read_jsonl(path)]
    return pd.DataFrame.from_records(records, columns=None if records else CELL_COLUMNS)


def run(config: str | Path | RunConfig | dict[str, Any] | None = None, out: str | Path | None = None, *,
        overrides: dict[str, Any] | None = None, resume: bool = False, quiet: bool = True) -> RunResults:
    """Train and evaluate one run, as ``cvqa run`` does, and return :func:`load_run` of its folder.

    ``config``: a run config file or built-in name (``"default"``), a ``RunConfig``, a dict of its fields, or
    None for the default run (LLaCA on the synthetic sequence). ``overrides``: dotted fields as ``--set``
    takes them (``{"eval.limit": 8}``). ``out``: the run folder (default
    ``results/<sequence>-<method>-seed<N>``, relative to the working directory).
    """
    if isinstance(config, dict):
        config = RunConfig.model_validate(config)
    if isinstance(config, RunConfig):
        config = load_run_config(None, {**config.model_dump(mode="json"), **(overrides or {})})
    else:
        config = load_run_config(config, overrides)
    from cvqa_bench.run.loop import execute
    from cvqa_bench.run.prepare import prepare

    folder = Path(out) if out is not None else default_run_folder(config.sequence, config.method.name, config.seed)
    execute(prepare(config), folder, resume=resume, quiet=quiet)
    return load_run(folder)
