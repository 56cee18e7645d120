"""`cvqa report` over one or several runs: tables in every format, plots, and the console view.

:func:`build_report` turns one run into its matrix/metrics tables and heatmap, and several runs into
a methods × metrics comparison plus a seen-average plot; runs whose config.yaml is identical apart
from the seed (and run name / output path), scored the same way, on the same data and base model are
grouped as mean ± sample std (``report.groups``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from cvqa_bench.io import atomic_write_json, atomic_write_text
from cvqa_bench.metrics import METRIC_FORMULAS
from cvqa_bench.rundir import RunDir
from cvqa_bench.report.groups import RunGroup, group_runs
from cvqa_bench.report.summary import RunSummary, load_run, meta_lines
from cvqa_bench.report.formats import latex_document_header, markdown_document, to_csv, to_latex, to_records
from cvqa_bench.report.published import load_published, published_tables
from cvqa_bench.report.partial import is_partial_run, load_partial_run, partial_lines, partial_tables
from cvqa_bench.scoring.seals import verify_run_files
from cvqa_bench.report.tables import ComparisonRow, ReportTable, Stat, comparison_table, format_cell, matrix_table, metrics_table

if TYPE_CHECKING:
    from rich.console import Console

FORMATS = ("md", "csv", "json", "latex")
BRIEF_COLUMNS = {"metrics": ("metric", "benchmark name", "paper name", "value")}  # print_report(brief=True)


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
                 published: bool = False, force_group: bool = False, plots: bool = True) -> ReportResult:
    """Tables (``formats`` of md, csv, json, latex) and PNG plots of one or several runs, written into ``out_dir``.

    One run: its accuracy matrix, every metric and a heatmap. Several: a comparison table (seeds of
    one config grouped, mean ± sample std) and the seen-task average after each stage. ``published``
    adds the paper's headline figures as separate, labelled tables. Runs are averaged only when they are
    comparable (``report.groups``); ``force_group`` averages runs of one config anyway, and says so.
    ``plots=False`` (one run): its heatmap is named in the tables' files but drawn by the caller.
    """
    from cvqa_bench.report.plots import plot_heatmap, plot_seen_average

    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"unknown report format(s) {unknown or list(formats)}; choose from {list(FORMATS)}")
    if not run_dirs:
        raise ValueError("build_report needs at least one run directory")
    out_dir = Path(out_dir)
    if len(run_dirs) == 1 and is_partial_run(Path(run_dirs[0])):
        return _partial_report(Path(run_dirs[0]), out_dir, formats)
    for run_dir in run_dirs:
        verify_run_files(Path(run_dir))  # a predictions or scores file changed by hand is never shown
    runs = [load_run(Path(d)) for d in run_dirs]
    groups, notes = group_runs(runs, force=force_group)
    result = ReportResult(out_dir, runs, groups, [], warnings=notes)
    result.warnings += [f"{r.name} is a shortened run: {r.meta['shortened']}" for r in runs if r.meta.get("shortened")]
    if len(runs) == 1:
        run = runs[0]
        scorers = [run.scorers[t] for t in run.tasks]
        result.tables += [matrix_table(run.matrix, run.tasks, scorers, title="Accuracy matrix"),
                          metrics_table(run.metrics, *_benchmark_names(run))]
        result.tables += _other_protocol_tables(run)
        title, lines = f"Run {run.name}", meta_lines(run.meta)
        heatmap = out_dir / "heatmap.png"
        result.files.append(plot_heatmap(run.matrix, run.tasks, scorers, heatmap,
                                         title=f"{run.name}: accuracy after each stage") if plots else heatmap)
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


def _benchmark_names(run: RunSummary) -> tuple[dict[str, str], str]:
    """The run's sequence ``metric_names`` (its benchmark's names for the metrics) and the sequence name."""
    path = RunDir(run.path).sequence
    try:
        seq = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return {}, ""
    names = seq.get("metric_names") if isinstance(seq, dict) else None
    if not isinstance(names, dict):
        return {}, ""
    return {str(k): str(v) for k, v in names.items()}, str(seq.get("name", ""))


def _partial_report(run_dir: Path, out_dir: Path, formats: Sequence[str]) -> ReportResult:
    """An unfinished run: the partial matrix, the metrics defined so far, the missing cells as a warning."""
    run = load_partial_run(run_dir)
    title, lines, warnings = partial_lines(run)
    result = ReportResult(out_dir, [], [], partial_tables(run), warnings=warnings)
    _write_formats(result, formats, title, lines, [])
    return result


def _other_protocol_tables(run: RunSummary) -> list[ReportTable]:
    """The run re-scored under other protocols (``protocols/<name>/``): metrics side by side, then each matrix."""
    others = [load_run(p.parent) for p in sorted((run.path / "protocols").glob("*/matrix.csv"))]
    if not others:
        return []
    rows = [[s.meta.get("protocol", "corrected"), str(s.path.relative_to(run.path)), *(s.metrics.get(m) for m in METRIC_FORMULAS)]
            for s in [run, *others]]
    tables = [ReportTable("protocols", "The same predictions under each scoring protocol",
                          ["protocol", "folder", *METRIC_FORMULAS], rows,
                          "First row: the run's own protocol; then each re-scoring (`cvqa score --protocol`).")]
    for other in others:
        table = matrix_table(other.matrix, other.tasks, [other.scorers[t] for t in other.tasks],
                             title=f"Accuracy matrix, protocol {other.meta.get('protocol', other.path.name)}")
        table.key = f"matrix_{other.path.name}"
        tables.append(table)
    return tables


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


def print_report(result: ReportResult, console: Console, brief: bool = False) -> None:
    """Show the report's tables (rich), warnings and written files in a terminal.

    ``brief`` (the end of ``cvqa run``): no captions, no file list, and only the key columns of the tables
    named in ``BRIEF_COLUMNS``; the full tables are in report.md.
    """
    from rich.markup import escape
    from rich.table import Table

    for table in result.tables:
        caption = "" if brief else " ".join([table.caption, *table.notes]).strip()
        sub = table.subheader or [""] * len(table.columns)
        keep = [c for c, name in enumerate(table.columns)
                if not brief or name in BRIEF_COLUMNS.get(table.key, table.columns)]
        text = [[format_cell(row[c]) for row in table.rows] for c in range(len(table.columns))]
        widths = {c: max(len(s) for s in [table.columns[c], sub[c], *text[c]]) for c in keep}
        labels = [c for c in keep if all(isinstance(row[c], str) for row in table.rows)]
        parts = column_parts(widths, labels, console.width)
        for part, columns in enumerate(parts):  # a table wider than the console: in parts, labels in each
            last = part == len(parts) - 1
            view = Table(title=escape(table.title + (f" ({part + 1}/{len(parts)})" if len(parts) > 1 else "")),
                         caption=(escape(caption) or None) if last else None, caption_justify="left")
            for c in columns:
                header = escape(table.columns[c]) + (f"\n[dim]{escape(sub[c])}[/dim]" if sub[c] else "")
                view.add_column(header, justify="left" if c in labels else "right", no_wrap=True,
                                min_width=widths[c])
            for r in range(len(table.rows)):
                view.add_row(*(escape(text[c][r]) for c in columns))
            console.print(view)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    for path in [] if brief else result.files:
        console.print(f"wrote {escape(str(path))}")


def column_parts(widths: dict[int, int], labels: list[int], room: int) -> list[list[int]]:
    """The columns of each part of a table printed in ``room`` characters: the label columns in every part,
    the others in order, as many per part as fit (rich draws a column as its width + 3, plus 1 border)."""
    base = 1 + sum(widths[c] + 3 for c in labels)
    parts: list[list[int]] = [[]]
    used = base
    for c in widths:
        if c in labels:
            continue
        if parts[-1] and used + widths[c] + 3 > room:
            parts.append([])
            used = base
        parts[-1].append(c)
        used += widths[c] + 3
    return [sorted(labels + part) for part in parts]
