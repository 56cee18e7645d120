"""What a reader sees (issue 31, item 9): ``cvqa report`` piped at 80 columns, the heatmap's cell labels
and the title of alpha.png."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke

from cvqa_bench.report import alpha_plot, plots

REFERENCE = Path(__file__).parents[2] / "results" / "reference" / "reproduce"


def test_a_piped_comparison_at_80_columns_keeps_whole_headers_and_the_method_column(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = invoke("report", REFERENCE / "llaca-seed0", REFERENCE / "finetune-seed0", "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout
    for header in ("final_avg", "Avg.ACC", "forgetting_last", "avg_incremental", "position", "grounding"):
        assert header in result.stdout, header
    for method in ("llaca", "finetune"):  # each part of the table starts with the method column, filled
        rows = [line for line in lines if line.startswith(f"│ {method} ")]
        assert len(rows) >= 2, result.stdout


def captured(monkeypatch: pytest.MonkeyPatch, module) -> list:
    """The figures ``module`` saves, instead of their PNG files."""
    figures: list = []
    monkeypatch.setattr(module, "_save", lambda fig, path: figures.append(fig) or Path(path))
    return figures


def test_heatmap_cells_carry_the_decimals_that_tell_values_apart(tmp_path, monkeypatch):
    figures = captured(monkeypatch, plots)
    matrix = np.array([[6.25, 4.6875], [100.0, 67.1875], [6.2, 0.0]])  # n = 64: 4/64, 3/64, 43/64 (and 6.2)
    plots.plot_heatmap(matrix, ["shape", "count"], ["contains", "exact"], tmp_path / "h.png")
    texts = [t.get_text() for t in figures[0].axes[0].texts]
    assert texts == ["6.25", "4.69", "100.00", "67.19", "6.20", "0.00"]  # 6.25 and 6.2 no longer print alike


def test_alpha_plot_title_names_the_task_not_a_stage_count(tmp_path, monkeypatch):
    figures = captured(monkeypatch, alpha_plot)
    steps = {"step": [1, 2], "p5": [0.01, 0.01], "p50": [0.02, 0.03], "p95": [0.05, 0.05],
             "fallback_fraction": [1.0, 0.5]}
    (tmp_path / "method_records.json").write_text(json.dumps({"tasks": [{"task": "count", "alpha": {"steps": steps}}]}))
    alpha_plot.plot_run_alpha(tmp_path, "llaca-seed0: applied EMA alpha")
    title = figures[0].axes[0].get_title()
    assert title == "llaca-seed0: applied EMA alpha while training on task 'count'"
