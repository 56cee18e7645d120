"""A run's summary files (matrix.csv, metrics.json, report.md, heatmap.png) and `cvqa report` over runs.

The run-summary format lives only here: :func:`write_run_summary` writes it and :func:`load_run`
reads it back. :func:`build_report` turns one run into its matrix/metrics tables and heatmap, and
several runs into a methods × metrics comparison plus a seen-average plot; runs whose config.yaml is
identical apart from the seed (and run name / output path) are grouped as mean ± sample std.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cvqa_bench.io import atomic_write_json, atomic_write_text
from cvqa_bench.metrics import METRIC_FORMULAS, compute_metrics, seen_average_curve
from cvqa_bench.plots import Curve
from cvqa_bench.tables import (
    ComparisonRow, ReportTable, Stat, comparison_table, format_cell, latex_document_header, load_published,
    markdown_document, matrix_table, metrics_table, published_tables, to_csv, to_latex, to_records,
)

if TYPE_CHECKING:
    from rich.console import Console

FORMATS = ("md", "csv", "json", "latex")
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
                      meta: dict) -> dict[str, float]:
    """Write matrix.csv, metrics.json, heatmap.png and report.md into ``run_dir``; return the metrics.

    ``matrix`` is (T+1)×T in percent: row 0 = zero-shot, row k = after stage k (trained on task k-1).
    ``meta`` holds at least name, sequence, method and seed.
    """
    from cvqa_bench.plots import plot_heatmap

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
    plot_heatmap(arr, tasks, scorer_list, run_dir / "heatmap.png", title=f"{meta['name']}: accuracy after each stage")
    tables = [matrix_table(arr, tasks, scorer_list, title="Accuracy matrix"), metrics_table(metrics)]
    atomic_write_text(run_dir / "report.md", markdown_document(f"Run {meta['name']}", _meta_lines(meta), tables,
                                                       ["heatmap.png"]))
    return metrics


def _meta_lines(meta: dict[str, Any]) -> list[str]:
    return [f"{k}: `{meta[k]}`" for k in REQUIRED_META[1:] if k in meta]


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


# ---------------------------------------------------------------- several runs

# Top-level config keys that differ between seeds of one experiment without changing what it measures.
GROUP_IGNORED_KEYS = ("seed", "name", "run_name", "out", "out_dir", "output_dir")


@dataclass(eq=False)
class RunGroup:
    """Runs of one config that differ only in seed; numbers are mean ± sample std (ddof=1) over them."""

    label: str
    runs: list[RunSummary]

    @property
    def seeds(self) -> list[Any]:
        """Each run's seed (from meta), in run order."""
        return [r.meta.get("seed") for r in self.runs]

    def metric(self, name: str) -> Stat | None:
        """Mean ± std of one metric over the runs that define it (None if none does)."""
        values = [r.metrics[name] for r in self.runs if name in r.metrics]
        return Stat.of(values) if values else None

    def final(self, task: str) -> Stat | None:
        """Mean ± std of the last-stage accuracy on ``task`` (None if the group has no such task)."""
        tasks = self.runs[0].tasks
        return Stat.of([r.matrix[-1, tasks.index(task)] for r in self.runs]) if task in tasks else None

    def curve(self) -> Curve:
        """The seen-task average after each stage, mean (± std band when n > 1)."""
        curves = np.array([seen_average_curve(r.matrix[1:]) for r in self.runs])
        std = curves.std(axis=0, ddof=1) if len(self.runs) > 1 else None
        return Curve(f"{self.label} (n={len(self.runs)})", curves.mean(axis=0), std)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    if not isinstance(data, dict) or not data:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def group_runs(runs: Sequence[RunSummary]) -> list[RunGroup]:
    """Group runs whose config.yaml is identical apart from :data:`GROUP_IGNORED_KEYS` (and whose tasks match).

    A run without config.yaml forms its own group: it cannot be shown to be a seed of another run.
    """
    keyed: dict[str, list[RunSummary]] = {}
    for run in runs:
        if run.config is None:
            key = f"path:{run.path.resolve()}"
        else:
            kept = {k: v for k, v in run.config.items() if k not in GROUP_IGNORED_KEYS}
            key = json.dumps([kept, run.tasks], sort_keys=True, default=str)
        keyed.setdefault(key, []).append(run)
    members = list(keyed.values())
    bases = [_base_label(g[0]) for g in members]
    labels = []
    for i, group in enumerate(members):
        twins = [members[j][0] for j, b in enumerate(bases) if b == bases[i] and j != i]
        labels.append(bases[i] + _difference(group[0], twins))
    return [RunGroup(label, group) for label, group in zip(labels, members, strict=True)]


def _base_label(run: RunSummary) -> str:
    if run.config is None:
        return run.name
    method = run.config.get("method")
    return str((method.get("name") if isinstance(method, dict) else method) or run.meta.get("method") or run.name)


def _difference(run: RunSummary, others: list[RunSummary]) -> str:
    """`` (key=value, ...)``: the config keys that tell ``run`` apart from same-method groups."""
    if not others or run.config is None:
        return ""
    mine = _flatten({k: v for k, v in run.config.items() if k not in GROUP_IGNORED_KEYS})
    theirs = [_flatten(o.config or {}) for o in others]
    keys = sorted(k for k in mine if any(t.get(k) != mine[k] for t in theirs) and k != "method.name")
    if not keys:
        return f" ({run.name})"
    shown = ", ".join(f"{k}={mine[k]}" for k in keys[:3])
    return f" ({shown}{', …' if len(keys) > 3 else ''})"


# ---------------------------------------------------------------- cvqa report


@dataclass
class ReportResult:
    """What :func:`build_report` made: the runs, their groups, the tables and the files written."""

    out_dir: Path
    runs: list[RunSummary]
    groups: list[RunGroup]
    tables: list[ReportTable]
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def build_report(run_dirs: Sequence[Path], out_dir: Path, formats: Sequence[str] = ("md",),
                 published: bool = False) -> ReportResult:
    """Tables (``formats`` of md, csv, json, latex) and PNG plots of one or several runs, written into ``out_dir``.

    One run: its accuracy matrix, every metric and a heatmap. Several: a comparison table (seeds of
    one config grouped, mean ± sample std) and the seen-task average after each stage. ``published``
    adds the paper's headline figures as separate, labelled tables.
    """
    from cvqa_bench.plots import plot_heatmap, plot_seen_average

    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"unknown report format(s) {unknown or list(formats)}; choose from {list(FORMATS)}")
    if not run_dirs:
        raise ValueError("build_report needs at least one run directory")
    out_dir = Path(out_dir)
    runs = [load_run(Path(d)) for d in run_dirs]
    groups = group_runs(runs)
    result = ReportResult(out_dir, runs, groups, [])
    if len(runs) == 1:
        run = runs[0]
        scorers = [run.scorers[t] for t in run.tasks]
        result.tables += [matrix_table(run.matrix, run.tasks, scorers, title="Accuracy matrix"),
                          metrics_table(run.metrics)]
        title, lines = f"Run {run.name}", _meta_lines(run.meta)
        result.files.append(plot_heatmap(run.matrix, run.tasks, scorers, out_dir / "heatmap.png",
                                         title=f"{run.name}: accuracy after each stage"))
    else:
        tasks = list(dict.fromkeys(t for r in runs for t in r.tasks))
        scorer_of = {t: s for r in reversed(runs) for t, s in r.scorers.items()}
        rows = [ComparisonRow(g.label, g.seeds, {m: g.metric(m) for m in METRIC_FORMULAS},
                              {t: g.final(t) for t in tasks}) for g in groups]
        result.tables.append(comparison_table(rows, tasks, [scorer_of[t] for t in tasks]))
        same_tasks = all(r.tasks == runs[0].tasks for r in runs)
        result.files.append(plot_seen_average([g.curve() for g in groups], out_dir / "seen_average.png",
                                              stage_labels=runs[0].tasks if same_tasks else None))
        title = f"Comparison of {len(runs)} runs ({len(groups)} groups)"
        lines = [f"{g.label}: " + ", ".join(f"{r.name} (seed {r.meta.get('seed')})" for r in g.runs) for g in groups]
        if not same_tasks:
            result.warnings.append("the runs do not share one task list; per-task columns are blank where absent")
        for g in groups:
            if len(set(map(str, g.seeds))) < len(g.seeds):
                result.warnings.append(f"group {g.label!r} has repeated seeds {g.seeds}: its std is not over seeds")
    if published:
        result.tables += published_tables(load_published())
    images = [p.name for p in result.files]
    _write_formats(result, formats, title, lines, images)
    return result


def _write_formats(result: ReportResult, formats: Sequence[str], title: str, lines: list[str],
                   images: list[str]) -> None:
    out, tables = result.out_dir, result.tables
    lines = lines + [f"warning: {w}" for w in result.warnings]
    if "md" in formats:
        result.files.append(atomic_write_text(out / "report.md", markdown_document(title, lines, tables, images)))
    if "latex" in formats:
        tex = latex_document_header() + "\n".join(to_latex(t) for t in tables)
        result.files.append(atomic_write_text(out / "report.tex", tex))
    if "csv" in formats:
        result.files += [atomic_write_text(out / f"report_{t.key}.csv", to_csv(t)) for t in tables]
    if "json" in formats:
        runs = [{"name": r.name, "path": str(r.path), "tasks": r.tasks, "scorers": r.scorers, "meta": r.meta,
                 "matrix": r.matrix.tolist(), "metrics": r.metrics,
                 "group": next(g.label for g in result.groups if r in g.runs)} for r in result.runs]
        doc = {"title": title, "std": "sample standard deviation (ddof=1)", "warnings": result.warnings,
               "runs": runs, "tables": {t.key: to_records(t) for t in tables}}
        result.files.append(atomic_write_json(out / "report.json", doc))


def print_report(result: ReportResult, console: Console) -> None:
    """Show the report's tables (rich), warnings and written files in a terminal."""
    from rich.markup import escape
    from rich.table import Table

    for table in result.tables:
        caption = " ".join([table.caption, *table.notes]).strip()
        view = Table(title=escape(table.title), caption=escape(caption) or None, caption_justify="left")
        sub = table.subheader or [""] * len(table.columns)
        for c, (name, extra) in enumerate(zip(table.columns, sub, strict=True)):
            numeric = any(isinstance(row[c], float | Stat) for row in table.rows)
            header = escape(name) + (f"\n[dim]{escape(extra)}[/dim]" if extra else "")
            view.add_column(header, justify="right" if numeric else "left", no_wrap=numeric)
        for row in table.rows:
            view.add_row(*(escape(format_cell(cell)) for cell in row))
        console.print(view)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    for path in result.files:
        console.print(f"wrote {escape(str(path))}")
