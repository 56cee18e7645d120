"""Report tables: one format-neutral table model and its Markdown, LaTeX (booktabs), CSV and JSON renderings.

A :class:`ReportTable` holds raw cells (text, numbers, :class:`Stat` for mean ± std, ``None`` for
"not defined"); each renderer formats them. Numbers are shown with 2 decimals in Markdown/LaTeX and
written in full precision in CSV/JSON.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


def _is_numeric_column(table: ReportTable, col: int) -> bool:
    return any(isinstance(row[col], float | int | Stat) and not isinstance(row[col], bool) for row in table.rows)


# ---------------------------------------------------------------- Markdown


def _md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def to_markdown(table: ReportTable) -> str:
    """A GitHub-flavoured Markdown table with its title (###), subheader row in italics and caption."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(_md_escape(c) for c in cells) + " |"

    align = ["---:" if _is_numeric_column(table, c) else ":---" for c in range(len(table.columns))]
    out = [f"### {table.title}", "", line(table.columns), "| " + " | ".join(align) + " |"]
    if table.subheader is not None:
        out.append(line([f"*{s}*" if s else "" for s in table.subheader]))
    out.extend(line([format_cell(c) for c in row]) for row in table.rows)
    if table.caption:
        out += ["", f"*{table.caption}*"]
    out += [f"- {note}" for note in table.notes]
    return "\n".join(out) + "\n"


def markdown_document(title: str, lines: Sequence[str], tables: Sequence[ReportTable], images: Sequence[str]) -> str:
    """A Markdown page: ``# title``, a bullet list of ``lines``, the tables, then the images (relative paths)."""
    parts = [f"# {title}\n", *(f"- {line}" for line in lines), ""] if lines else [f"# {title}\n"]
    parts += [to_markdown(t) for t in tables]
    parts += [f"![{Path(img).stem}]({img})\n" for img in images]
    return "\n".join(parts)


# ---------------------------------------------------------------- LaTeX

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "–": "--",
    "±": r"$\pm$",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIALS))
_MINUS_RE = re.compile(r"(?<![\w.])-(?=\d)")


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (one pass, so inserted braces are never re-escaped)."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIALS[m.group(0)], text)


def _latex_cell(cell: Cell) -> str:
    text = latex_escape(format_cell(cell))
    # a typeset minus sign, not a hyphen, in front of negative numbers
    return _MINUS_RE.sub("$-$", text) if isinstance(cell, float | int | Stat) else text


def to_latex(table: ReportTable) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs,graphicx}``)."""
    spec = "".join("r" if _is_numeric_column(table, c) else "l" for c in range(len(table.columns)))
    wide = len(table.columns) > 8

    def line(cells: Sequence[str]) -> str:
        return " & ".join(cells) + r" \\"

    body = [r"\begin{tabular}{" + spec + "}", r"\toprule", line([latex_escape(c) for c in table.columns])]
    if table.subheader is not None:
        body.append(line([r"\textit{" + latex_escape(s) + "}" if s else "" for s in table.subheader]))
    body.append(r"\midrule")
    body.extend(line([_latex_cell(c) for c in row]) for row in table.rows)
    body += [r"\bottomrule", r"\end{tabular}"]
    if wide:  # many task columns: scale to the text width instead of running off the page
        body = [r"\resizebox{\linewidth}{!}{%", *body, "}"]
    caption = table.title + (f". {table.caption}" if table.caption else "")
    caption += "".join(f" {note}" for note in table.notes)
    label = re.sub(r"[^A-Za-z0-9:-]", "-", table.key)
    out = [r"\begin{table}[t]", r"\centering", r"\caption{" + latex_escape(caption) + "}",
           r"\label{tab:cvqa-" + label + "}", *body, r"\end{table}"]
    return "\n".join(out) + "\n"


def latex_document_header() -> str:
    """Comment lines naming the packages the generated tables need."""
    return "% Generated by cvqa-bench. Needs \\usepackage{booktabs} and \\usepackage{graphicx}.\n"


# ---------------------------------------------------------------- CSV / JSON


def to_csv(table: ReportTable) -> str:
    """CSV with full-precision numbers; a :class:`Stat` column becomes ``<col> mean`` and ``<col> std``."""
    stat_cols = {c for c in range(len(table.columns)) if any(isinstance(r[c], Stat) for r in table.rows)}
    header: list[str] = []
    for c, name in enumerate(table.columns):
        header += [f"{name} mean", f"{name} std"] if c in stat_cols else [name]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        out: list[str] = []
        for c, cell in enumerate(row):
            if c in stat_cols:
                stat = cell if isinstance(cell, Stat) else None
                mean = stat.mean if stat else cell if isinstance(cell, float) else None
                out += [_csv_value(mean), _csv_value(stat.std if stat else None)]
            else:
                out.append(_csv_value(cell))
        writer.writerow(out)
    return buf.getvalue()


def _csv_value(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float):
        return repr(cell)  # shortest repr that round-trips exactly
    return str(cell)


def to_records(table: ReportTable) -> dict[str, Any]:
    """A JSON-ready dict: title, caption, columns and one ``{column: value}`` record per row."""
    def value(cell: Cell) -> Any:
        if isinstance(cell, Stat):
            return {"mean": cell.mean, "std": cell.std, "n": cell.n}
        return cell

    return {
        "title": table.title,
        "caption": table.caption,
        "notes": table.notes,
        "columns": table.columns,
        "subheader": table.subheader,
        "rows": [{col: value(cell) for col, cell in zip(table.columns, row, strict=True)} for row in table.rows],
    }


# ---------------------------------------------------------------- builders


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


def metrics_table(metrics: dict[str, float | Stat]) -> ReportTable:
    """Every metric with its name, the paper's name for it, other names, value and formula."""
    rows: list[list[Cell]] = []
    for name, formula in METRIC_FORMULAS.items():
        if name in metrics:
            better = "higher" if HIGHER_IS_BETTER[name] else "lower"
            rows.append([name, PAPER_NAMES.get(name, ""), OTHER_NAMES.get(name, ""), metrics[name], better, formula])
    caption = ("A[t][i] = accuracy on task i after stage t (1-based), A[0] = zero-shot, T tasks; macro averages. "
               "Paper names as printed in LLaCA (arXiv 2410.10868), e.g. Avg.ACC = final_avg.")
    return ReportTable("metrics", "Metrics", ["metric", "paper name", "also called", "value", "better", "formula"],
                       rows, caption)


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


# ---------------------------------------------------------------- published reference figures


@dataclass(frozen=True)
class PublishedResult:
    """One published headline figure set (package data ``published.yaml``), with its provenance."""

    method: str
    label: str
    backbone: str
    data: str | None
    data_note: str
    metrics: dict[str, float]
    arxiv: str
    version: str
    where: str

    @property
    def source(self) -> str:
        """``arXiv <id> <version> <where>``, e.g. ``arXiv 2410.10868 v1 abstract``."""
        return f"arXiv {self.arxiv} {self.version} {self.where}"


def load_published() -> list[PublishedResult]:
    """The published figures shipped in ``cvqa_bench/published.yaml``."""
    import importlib.resources

    import yaml

    resource = importlib.resources.files("cvqa_bench") / "published.yaml"
    entries = yaml.safe_load(resource.read_text(encoding="utf-8"))
    out = []
    for i, e in enumerate(entries or []):
        try:
            prov = e["provenance"]
            metrics = {str(k): float(v) for k, v in e["metrics"].items()}
            out.append(PublishedResult(str(e["method"]), str(e["label"]), str(e["backbone"]), e.get("data"),
                                       str(e.get("data_note", "")), metrics, str(prov["arxiv"]), str(prov["version"]),
                                       str(prov["where"])))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{resource}: entry {i} is malformed ({exc!r})") from exc
    return out


def published_tables(entries: Sequence[PublishedResult]) -> list[ReportTable]:
    """One clearly labelled table per (backbone, data, source): these numbers are not reproduced here."""
    blocks: dict[tuple[str, str | None, str], list[PublishedResult]] = {}
    for e in entries:
        blocks.setdefault((e.backbone, e.data, e.source), []).append(e)
    tables = []
    for n, ((backbone, data, source), rows) in enumerate(blocks.items()):
        names = [m for m in METRIC_FORMULAS if any(m in r.metrics for r in rows)]
        where = f"{backbone} on {data}" if data else backbone
        notes = sorted({f"Data: {r.data_note}." for r in rows if r.data_note})
        tables.append(ReportTable(
            f"published-{n}", f"Published (not reproduced here): {where}, {source}", ["method", *names],
            [[f"{r.label} [{r.method}]", *(r.metrics.get(m) for m in names)] for r in rows],
            "Headline figures quoted from the paper for context; they were not produced by this harness.",
            subheader=["", *(PAPER_NAMES.get(m, "") for m in names)], notes=notes))
    return tables
