"""The applied EMA alpha over the optimizer steps of one stage (``alpha.png`` of a LLaCA run).

Reads the per-step series that ``methods/alpha_stats.py`` writes into ``method_records.json`` (per task:
``alpha.steps`` with the 5/50/95 % quantiles over the tensors and the fallback fraction per step).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cvqa_bench.report.plots import DPI, _save

ALPHA_PLOT = "alpha.png"


def stage_series(records: dict[str, Any], task: str | None = None) -> tuple[str, dict[str, list[float]]] | None:
    """(task, per-step series) of ``task``, or of the task with the most steps when None; None without any."""
    found = {row["task"]: row["alpha"]["steps"] for row in records.get("tasks", [])
             if isinstance(row.get("alpha"), dict) and row["alpha"].get("steps")}
    if not found:
        return None
    if task is None:
        task = max(found, key=lambda name: len(found[name]["step"]))
    return (task, found[task]) if task in found else None


def plot_alpha_steps(records: dict[str, Any], path: Path, title: str, task: str | None = None) -> Path | None:
    """Median alpha over the tensors per step, its 5-95 % band (log scale) and the fallback fraction."""
    picked = stage_series(records, task)
    if picked is None:
        return None
    from matplotlib.figure import Figure

    name, series = picked
    fig = Figure(figsize=(8, 4), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    steps = series["step"]
    ax.fill_between(steps, series["p5"], series["p95"], alpha=0.25, label="5-95 % over tensors")
    ax.plot(steps, series["p50"], label="median over tensors")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("applied alpha")
    twin = ax.twinx()
    twin.plot(steps, series["fallback_fraction"], color="tab:red", alpha=0.6, linewidth=0.8, label="fallback fraction")
    twin.set_ylim(0, 1.05)
    twin.set_ylabel("fallback fraction")
    ax.set_title(f"{title} while training on task {name!r}")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_run_alpha(run_dir: Path, title: str) -> Path | None:
    """``alpha.png`` in ``run_dir`` from its ``method_records.json`` (nothing for a method without alphas)."""
    records_path = Path(run_dir) / "method_records.json"
    if not records_path.is_file():
        return None
    return plot_alpha_steps(json.loads(records_path.read_text()), Path(run_dir) / ALPHA_PLOT, title)
