"""One run's summary files (matrix.csv, metrics.json, report.md, heatmap.png): written and read back in one place.

The run-summary format lives only here: :func:`write_run_summary` writes it and :func:`load_run`
reads it back.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvqa_bench.io import atomic_write_json, atomic_write_text
from cvqa_bench.metrics import compute_metrics
from cvqa_bench.report.formats import markdown_document
from cvqa_bench.report.tables import matrix_table, metrics_table

REQUIRED_META = ("name", "sequence", "method", "seed")
MATRIX_FILE, METRICS_FILE, CONFIG_FILE = "matrix.csv", "metrics.json", "config.yaml"
ZERO_SHOT = "zero-shot"


class RunSummaryError(ValueError):
    """A run directory whose summary files are missing or malformed; the message names the file."""


@dataclass(eq=False)  # identity equality: a summary holds an ndarray
class RunSummary:
    """What :func:`load_run` reads back: the (T+1)×T matrix (row 0 = zero-shot) and everything about it."""

    name: str
    path: Path
    tasks: list[str]
    scorers: dict[str, str]
    matrix: np.ndarray
    metrics: dict[str, float]
    meta: dict[str, Any]
    config: dict[str, Any] | None = None


def _check_summary_inputs(matrix: Any, tasks: Sequence[str], scorers: dict[str, str], meta: dict) -> np.ndarray:
    try:
        arr = np.array(matrix, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"matrix must be a numeric (T+1)×T array: {exc}") from exc
    n = len(tasks)
    if n == 0 or arr.shape != (n + 1, n):
        raise ValueError(f"matrix must be (T+1)×T = ({n + 1}, {n}) for {n} tasks (row 0 = zero-shot), got {arr.shape}")
    if len(set(tasks)) != n:
        raise ValueError(f"task names must be unique, got {list(tasks)}")
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        k, i = bad[0]
        raise ValueError(f"matrix has a non-finite value at stage {k}, task {tasks[i]!r} (a cell was not scored?)")
    out_of_range = np.argwhere((arr < 0) | (arr > 100))
    if out_of_range.size:
        k, i = out_of_range[0]
        raise ValueError(f"matrix cell at stage {k}, task {tasks[i]!r} is {arr[k, i]:g}; scores are percent, 0-100")
    if set(scorers) != set(tasks):
        raise ValueError(f"scorers must name one scorer per task; tasks {list(tasks)}, scorers for {sorted(scorers)}")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"meta lacks {missing}; it needs at least {list(REQUIRED_META)}")
    try:  # checked before anything is written, so a bad meta never leaves half a summary behind
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta must be JSON-serialisable: {exc}") from exc
    return arr


def write_run_summary(run_dir: Path, matrix: np.ndarray, tasks: list[str], scorers: dict[str, str],
                      meta: dict, plots: bool = True) -> dict[str, float]:
    """Write matrix.csv, metrics.json, heatmap.png and report.md into ``run_dir``; return the metrics.

    ``matrix`` is (T+1)×T in percent: row 0 = zero-shot, row k = after stage k (trained on task k-1).
    ``meta`` holds at least name, sequence, method and seed. ``plots=False``: no PNG now (report.md names
    them all the same); :func:`write_run_plots` draws them later (``cvqa run`` after its final table).
    """
    run_dir = Path(run_dir)
    arr = _check_summary_inputs(matrix, tasks, scorers, meta)
    metrics = compute_metrics(arr[1:], arr[0])
    lines = [["stage", "trained_task", *tasks]]
    lines += [[str(k), ZERO_SHOT if k == 0 else tasks[k - 1], *(repr(float(v)) for v in row)]
              for k, row in enumerate(arr)]
    atomic_write_text(run_dir / MATRIX_FILE, "".join(",".join(cells) + "\n" for cells in lines))
    atomic_write_json(run_dir / METRICS_FILE,
                      {"tasks": list(tasks), "scorers": dict(scorers), "meta": meta, "metrics": metrics})
    scorer_list = [scorers[t] for t in tasks]
    if plots:
        _draw_plots(run_dir, arr, tasks, scorer_list, meta["name"])
    tables = [matrix_table(arr, tasks, scorer_list, title="Accuracy matrix"), metrics_table(metrics)]
    atomic_write_text(run_dir / "report.md", markdown_document(f"Run {meta['name']}", meta_lines(meta), tables,
                                                       ["heatmap.png"]))
    return metrics


def _draw_plots(run_dir: Path, matrix: np.ndarray, tasks: list[str], scorers: list[str], name: str) -> None:
    from cvqa_bench.report.alpha_plot import plot_run_alpha
    from cvqa_bench.report.plots import plot_heatmap

    plot_heatmap(matrix, tasks, scorers, run_dir / "heatmap.png", title=f"{name}: accuracy after each stage")
    plot_run_alpha(run_dir, title=f"{name}: applied EMA alpha")  # LLaCA runs only (report/alpha_plot.py)


def write_run_plots(run_dir: Path) -> None:
    """Draw heatmap.png (and a LLaCA run's alpha.png) of a run whose summary files are written."""
    run = load_run(Path(run_dir))
    _draw_plots(run.path, run.matrix, run.tasks, [run.scorers[t] for t in run.tasks], run.name)


def meta_lines(meta: dict[str, Any]) -> list[str]:
    """The Markdown lines naming a run's sequence, method, seed, scoring protocol and why it was shortened."""
    return [f"{k}: `{meta[k]}`" for k in (*REQUIRED_META[1:], "protocol", "shortened") if k in meta]


def _read_matrix_csv(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise RunSummaryError(f"{path}: cannot read ({exc.strerror}); run `cvqa score` on the run first") from exc
    if not rows or rows[0][:2] != ["stage", "trained_task"] or len(rows[0]) < 3:
        raise RunSummaryError(f"{path}: header must be 'stage,trained_task,<task>,...', got {rows[:1]}")
    tasks = rows[0][2:]
    if len(rows) != len(tasks) + 2:
        raise RunSummaryError(f"{path}: expected {len(tasks) + 1} stage rows (0..{len(tasks)}) for {len(tasks)} "
                              f"tasks, got {len(rows) - 1}")
    matrix = np.empty((len(tasks) + 1, len(tasks)))
    for k, row in enumerate(rows[1:]):
        where = f"{path}:{k + 2}"
        expected = ZERO_SHOT if k == 0 else tasks[k - 1]
        if len(row) != len(tasks) + 2 or row[0] != str(k) or row[1] != expected:
            raise RunSummaryError(f"{where}: expected stage {k} trained on {expected!r} with {len(tasks)} values, "
                                  f"got {row[:2]} with {len(row) - 2}")
        try:
            matrix[k] = [float(v) for v in row[2:]]
        except ValueError as exc:
            raise RunSummaryError(f"{where}: {exc}") from exc
    if not np.isfinite(matrix).all():
        raise RunSummaryError(f"{path}: contains non-finite values")
    out_of_range = np.argwhere((matrix < 0) | (matrix > 100))
    if out_of_range.size:
        k, i = out_of_range[0]
        raise RunSummaryError(f"{path}:{k + 2}: {tasks[i]} is {matrix[k, i]:g}; matrix cells are percent, 0-100")
    return tasks, matrix


def load_run(run_dir: Path) -> RunSummary:
    """Read a run directory's matrix.csv, metrics.json and (if present) config.yaml."""
    from cvqa_bench.config import read_yaml

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunSummaryError(f"{run_dir}: not a directory")
    tasks, matrix = _read_matrix_csv(run_dir / MATRIX_FILE)
    path = run_dir / METRICS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunSummaryError(f"{path}: cannot read ({exc.strerror}); run `cvqa score` on the run first") from exc
    except json.JSONDecodeError as exc:
        raise RunSummaryError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or not all(isinstance(data.get(k), t) for k, t in
                                             [("tasks", list), ("scorers", dict), ("meta", dict), ("metrics", dict)]):
        raise RunSummaryError(f"{path}: must be an object with 'tasks' (list), 'scorers', 'meta', 'metrics' (objects)")
    if data["tasks"] != tasks:
        raise RunSummaryError(f"{path}: tasks {data['tasks']} differ from {MATRIX_FILE}'s columns {tasks}")
    if set(data["scorers"]) != set(tasks):
        raise RunSummaryError(f"{path}: 'scorers' must name one scorer per task {tasks}")
    metrics = compute_metrics(matrix[1:], matrix[0])
    for name, value in data["metrics"].items():
        if name in metrics and not (isinstance(value, int | float) and math.isclose(value, metrics[name],
                                                                                   rel_tol=1e-9, abs_tol=1e-9)):
            raise RunSummaryError(f"{path}: {name} = {value} disagrees with {MATRIX_FILE} ({metrics[name]}); "
                                  f"re-run `cvqa score {run_dir}`")
    config = None
    if (run_dir / CONFIG_FILE).is_file():
        config = read_yaml(run_dir / CONFIG_FILE)
        if config is not None and not isinstance(config, dict):
            raise RunSummaryError(f"{run_dir / CONFIG_FILE}: must be a mapping, got {type(config).__name__}")
    name = str(data["meta"].get("name") or run_dir.name)
    return RunSummary(name, run_dir, tasks, dict(data["scorers"]), matrix, metrics, data["meta"], config)
