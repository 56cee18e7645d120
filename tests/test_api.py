"""Issue 31 (10): the Python API. ``cvqa_bench.load_run`` reads a run folder into pandas (matrix wide and long,
metrics, config, per-sample predictions); ``cvqa_bench.run(config)`` trains one run from a script;
``import cvqa_bench`` imports neither torch nor pandas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import one_torch_thread

import cvqa_bench

# A hand-made 2-task run: stage 0 (zero-shot), 1 (trained on color), 2 (trained on count); 2 questions a cell.
SCORES = {  # (stage, task) -> per-sample scores
    (0, "color"): [0.0, 0.0], (0, "count"): [1.0, 0.0],
    (1, "color"): [1.0, 1.0], (1, "count"): [0.0, 0.0],
    (2, "color"): [1.0, 0.0], (2, "count"): [1.0, 1.0],
}
STAGE_NAMES = {0: "0-zero-shot", 1: "1-color", 2: "2-count"}
# A[k][i] in percent, by hand from SCORES; final_avg = (50 + 100) / 2, bwt = A[2][color] - A[1][color] = -50.
MATRIX = [[0.0, 50.0], [100.0, 0.0], [50.0, 100.0]]


def _hand_run(root: Path, with_results: bool) -> Path:
    root.mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump({"sequence": "hand", "seed": 3, "method": {"name": "ema"}}))
    lines = ["stage,trained_task,color,count"] + [f"{k},{name},{a},{b}" for k, (name, (a, b)) in
                                                  enumerate(zip(["zero-shot", "color", "count"], MATRIX))]
    (root / "matrix.csv").write_text("\n".join(lines) + "\n")
    (root / "metrics.json").write_text(json.dumps({
        "tasks": ["color", "count"], "scorers": {"color": "exact", "count": "exact"},
        "meta": {"name": "hand", "sequence": "hand", "method": "ema", "seed": 3}, "metrics": {"final_avg": 75.0}}))
    for (stage, task), scores in SCORES.items():
        folder = root / "predictions" / STAGE_NAMES[stage]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{task}.jsonl").write_text("".join(
            json.dumps({"id": f"{task}{i}", "prediction": "p", "answers": ["a"], "score": s}) + "\n"
            for i, s in enumerate(scores)))
    if with_results:
        cells = [[{"score": v, "n": 2, "se": 1.0 + j, "ci95": [v / 2, v / 2 + 10], "interval": "wilson"}
                  for j, v in enumerate(row)] for row in MATRIX]
        (root / "results.json").write_text(json.dumps({"matrix": {"cells": cells}}))
    return root


def test_import_is_light_and_the_api_names_load_on_use() -> None:
    code = ("import sys, cvqa_bench; heavy = [m for m in ('torch', 'pandas', 'transformers') if m in sys.modules]; "
            "assert not heavy, heavy; assert callable(cvqa_bench.load_run) and callable(cvqa_bench.run); "
            "import cvqa_bench.run.loop; assert callable(cvqa_bench.run); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("with_results", [True, False])
def test_load_run_reads_the_matrix_wide_and_long_the_metrics_and_every_prediction(tmp_path: Path,
                                                                                  with_results: bool) -> None:
    loaded = cvqa_bench.load_run(_hand_run(tmp_path / "hand", with_results))
    assert loaded.config["method"] == {"name": "ema"}
    assert loaded.metrics["final_avg"] == 75.0 and loaded.metrics["bwt"] == -50.0  # 50 - 100, color
    assert list(loaded.matrix.columns) == ["color", "count"]
    assert list(loaded.matrix.index) == [(0, "zero-shot"), (1, "color"), (2, "count")]
    assert loaded.matrix.to_numpy().tolist() == MATRIX
    assert loaded.matrix.loc[(2, "count"), "color"] == 50.0  # color after the count stage
    long = loaded.matrix_long
    assert len(long) == 6 and long.loc[(long.stage == 1) & (long.task == "color"), "score"].item() == 100.0
    if with_results:
        row = long[(long.stage == 0) & (long.task == "count")].iloc[0]
        assert (row.n, row.se, row.ci95_low, row.ci95_high, row.interval) == (2, 2.0, 25.0, 35.0, "wilson")
    else:
        assert long.n.isna().all() and loaded.results is None
    preds = loaded.predictions
    assert len(preds) == 12 and {"stage", "trained_task", "task", "id", "prediction", "score"} <= set(preds.columns)
    by_cell = preds.groupby(["stage", "task"]).score.mean().mul(100)  # the matrix again, from the samples
    assert {k: by_cell[k] for k in SCORES} == {(k, t): MATRIX[k][["color", "count"].index(t)] for k, t in SCORES}


def test_a_folder_that_is_not_a_run_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="matrix.csv"):
        cvqa_bench.load_run(tmp_path)


def test_run_from_a_script_trains_and_returns_the_loaded_run(tmp_path: Path, small_sequence: Path) -> None:
    overrides = {"sequence": str(small_sequence), "train.max_steps": 2, "train.batch_size": 4, "eval.limit": 2,
                 "eval.batch_size": 8}
    with one_torch_thread():
        loaded = cvqa_bench.run(None, tmp_path / "api-run", overrides=overrides)
    assert loaded.config["method"]["name"] == "llaca"  # the one default (issue 31, item 6)
    assert loaded.matrix.shape == (4, 3) and len(loaded.predictions) == 4 * 3 * 2
    by_cell = loaded.predictions.groupby(["stage", "task"]).score.mean().mul(100)
    for (stage, _), row in loaded.matrix.iterrows():
        assert [by_cell[stage, task] for task in loaded.matrix.columns] == pytest.approx(list(row))
    assert loaded.metrics["final_avg"] == pytest.approx(loaded.matrix.iloc[-1].mean())
    assert isinstance(loaded.matrix_long, pd.DataFrame) and loaded.matrix_long.n.tolist() == [2] * 12
