"""CI guard of the committed reference results (results/reference/).

(a) Every metric in the committed reference is recomputed from the committed matrix with the
    metric formulas, and every mean ± std in the committed comparison report from the runs' metrics.
(b) The shortened configuration (configs/regression.yaml: one seed, every method, three short
    tasks) is re-run and its matrix compared with the committed one. Tolerance: every cell within
    one test question (100 / 32 = 3.125 points) of the reference; on the machine that made the
    reference the matrices are identical. Refresh the reference only deliberately: `make reference`.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cvqa_bench.config import PROJECT_ROOT
from cvqa_bench.methods import methods
from cvqa_bench.metrics import compute_metrics

REFERENCE = PROJECT_ROOT / "results" / "reference"
REGRESSION = REFERENCE / "regression"
CELL_TOLERANCE = 100 / 32  # one test question of the regression sequence


def read_matrix(path: Path) -> np.ndarray:
    """The (T+1)×T matrix of a committed matrix.csv (stage 0 = zero-shot)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:2] == ["stage", "trained_task"], path
    return np.array([[float(v) for v in row[2:]] for row in rows[1:]])


def committed_runs() -> list[Path]:
    return sorted(p.parent for p in REFERENCE.rglob("matrix.csv"))


def test_reference_results_are_committed():
    runs = committed_runs()
    assert {p.name for p in runs if p.parent == REGRESSION} == {f"{m}-seed0" for m in methods.descriptions()}
    assert len([p for p in runs if p.parent.name == "reproduce"]) == 12  # 4 methods × 3 seeds


@pytest.mark.parametrize("run", committed_runs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_metrics_recompute_from_committed_matrix(run):
    matrix = read_matrix(run / "matrix.csv")
    stored = json.loads((run / "metrics.json").read_text())["metrics"]
    recomputed = compute_metrics(matrix[1:], matrix[0])
    assert stored.keys() == recomputed.keys()
    for name, value in recomputed.items():
        assert stored[name] == pytest.approx(value, abs=1e-9), name


def test_committed_comparison_means_and_stds_recompute_from_the_runs():
    report = json.loads((REFERENCE / "reproduce" / "report" / "report.json").read_text())
    rows = report["tables"]["comparison"]["rows"]
    assert rows, "empty comparison table"
    for row in rows:
        method = row["method"]
        runs = [REFERENCE / "reproduce" / f"{method}-seed{s}" for s in (0, 1, 2)]
        values = [json.loads((r / "metrics.json").read_text())["metrics"]["final_avg"] for r in runs]
        cell = row["final_avg"]
        assert cell["mean"] == pytest.approx(sum(values) / 3, abs=1e-9)
        mean = sum(values) / 3
        assert cell["std"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values) / 2), abs=1e-9)


def test_shortened_configuration_reproduces_the_committed_matrices(tmp_path, monkeypatch):
    from cvqa_bench.run.experiment import load_experiment, run_experiment

    monkeypatch.setenv("CVQA_CACHE", str(tmp_path / "cache"))
    spec = load_experiment(PROJECT_ROOT / "configs" / "regression.yaml")
    spec = spec.model_copy(update={"out": str(tmp_path / "regression")})
    run_experiment(spec, formats=("md",))
    for name in [f"{m}-seed0" for m in spec.methods]:
        fresh = read_matrix(tmp_path / "regression" / name / "matrix.csv")
        committed = read_matrix(REGRESSION / name / "matrix.csv")
        assert fresh.shape == committed.shape
        worst = float(np.abs(fresh - committed).max())
        assert worst <= CELL_TOLERANCE, f"{name}: a cell moved by {worst:.2f} points\n{fresh}\nvs\n{committed}"
