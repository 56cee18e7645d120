"""alpha.png and the alpha-scale points from method records (the figures computed by hand)."""

from __future__ import annotations

import json

import pytest

from cvqa_bench.report.alpha_plot import plot_run_alpha, stage_series
from cvqa_bench.report.alpha_scale import alpha_scale_points, plot_alpha_scale

CAUSES = {"first_step": 0.25, "alpha_ge_1": 0.5, "non_finite": 0.0}
RECORDS = {"tasks": [
    {"task": "a", "alpha": {"steps": {"step": [1, 2], "p5": [0.01, 0.01], "p50": [0.01, 0.2], "p95": [0.01, 0.5],
                                      "fallback_fraction": [1.0, 0.5]},
                            "tensors": {"w": {"numel": 1024, "quantiles": {"p50": 0.02}, "retained": 0.3,
                                              "fallback_by_cause": CAUSES}}}},
    {"task": "b", "alpha": {"steps": {"step": [1, 2, 3], "p5": [0.01] * 3, "p50": [0.01] * 3, "p95": [0.01] * 3,
                                      "fallback_fraction": [1.0] * 3}}},
    {"task": "c", "alpha": None},
]}


def test_the_stage_with_the_most_steps_is_plotted(tmp_path) -> None:
    assert stage_series(RECORDS)[0] == "b"
    assert stage_series(RECORDS, "a")[1]["p50"] == [0.01, 0.2]
    assert stage_series({"tasks": [{"task": "c", "alpha": None}]}) is None
    (tmp_path / "method_records.json").write_text(json.dumps(RECORDS))
    path = plot_run_alpha(tmp_path, "run")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"


def test_alpha_scale_points_and_plot(tmp_path) -> None:
    run = tmp_path / "w64-seed0"
    run.mkdir()
    (run / "method_records.json").write_text(json.dumps(RECORDS))
    (point,) = alpha_scale_points([run])
    assert (point.run, point.task, point.tensor, point.numel) == ("w64-seed0", "a", "w", 1024)
    assert point.fallback_fraction == pytest.approx(0.75)  # 0.25 first step + 0.5 alpha >= 1
    assert point.median_alpha == 0.02 and point.retained == 0.3
    assert plot_alpha_scale([point], tmp_path / "scale.png").is_file()
