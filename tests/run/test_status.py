"""`cvqa status`, `cvqa report` and `cvqa score` on a hand-built run folder killed in the middle of stage 3.

The folder: 3 tasks scored with ``exact``, stages 1 and 2 done, stage 3 killed after its step-20 checkpoint
(of 40 steps; a step-30 folder without its completion marker), rows 0-2 predicted, row 3 not. Each cell has
4 questions, so every score is a multiple of 25 and every figure below is worked out by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import small_sequence_dict

from cvqa_bench.run.state.integrity import write_done

TASKS = ("color", "shape", "position")
# Percent correct of each predicted cell (stage → one value per task); stage 3 was never evaluated.
SCORES = {0: (0, 25, 0), 1: (100, 50, 0), 2: (50, 75, 25)}
# The 2 tasks complete so far: acc = [[100, 50], [50, 75]], zero-shot = [0, 25].
EXPECTED_METRICS = {
    "final_avg": (50 + 75) / 2,  # 62.5
    "mft": (100 + 75) / 2,  # 87.5
    "avg_incremental": (100 + (50 + 75) / 2) / 2,  # 81.25
    "bwt": 50 - 100,  # -50
    "forgetting": 100 - 50,
    "forgetting_last": 100 - 50,
    "fwt": 50 - 25,  # A[1][shape] - A[0][shape]
}
UTC = dt.timezone.utc
STARTED = dt.datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)


def write_cell(path: Path, percent: int) -> None:
    """4 questions, ``percent / 25`` of them answered right."""
    right = percent // 25
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"q{j}", "prediction": "red" if j < right else "blue",
                                        "answers": ["red"]}) + "\n" for j in range(4)))


@pytest.fixture
def killed_run(tmp_path: Path) -> Path:
    run = tmp_path / "killed"
    sequence = small_sequence_dict("small3", TASKS)
    for task in sequence["tasks"]:
        task["scorer"] = "exact"
    config = {"sequence": "small3.yaml", "seed": 0, "method": {"name": "finetune"},
              "train": {"max_steps": 40, "checkpoint_every": 10}}
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "sequence.yaml").write_text(yaml.safe_dump(sequence))
    (run / "manifest.json").write_text(json.dumps({"started": STARTED.isoformat(), "finished": None}))
    for k in (1, 2):  # each stage took 2 minutes
        done = {"stage": k, "finished": (STARTED + dt.timedelta(minutes=2 * k)).isoformat()}
        (run / "stages" / f"{k}-{TASKS[k - 1]}").mkdir(parents=True)
        (run / "stages" / f"{k}-{TASKS[k - 1]}" / "weights.safetensors").write_bytes(b"not read here")
        write_done(run / "stages" / f"{k}-{TASKS[k - 1]}", done)  # sealed as a run seals it
    trainer = run / "stages" / "3-position" / "trainer"
    (trainer / "checkpoint-20").mkdir(parents=True)
    (trainer / "checkpoint-20" / "cvqa_complete.json").write_text('{"step": 20}')
    (trainer / "checkpoint-20" / "trainer_state.json").write_text('{"global_step": 20, "max_steps": 40}')
    (trainer / "checkpoint-30").mkdir()  # killed while saving: no completion marker
    for k, row in SCORES.items():
        stage = "0-zero-shot" if k == 0 else f"{k}-{TASKS[k - 1]}"
        for task, percent in zip(TASKS, row):
            write_cell(run / "predictions" / stage / f"{task}.jsonl", percent)
            if k < 2:  # the scores of row 2 were not written yet when it was killed
                (run / "scores" / stage).mkdir(parents=True, exist_ok=True)
                (run / "scores" / stage / f"{task}.json").write_text(json.dumps({"score": percent / 100}))
    from cvqa_bench.scoring.seals import seal_predictions

    seal_predictions(run, sorted(run.glob("predictions/*/*.jsonl")))  # sealed as a run seals them (issue 30)
    return run


def test_status_counts_stages_cells_checkpoint_and_time(killed_run):
    from cvqa_bench.run.state.status import run_status

    status = run_status(killed_run, now=STARTED + dt.timedelta(minutes=5))
    assert status.done == [1, 2] and status.remaining == [3]
    assert (status.predicted, status.scored, status.cells) == (9, 6, 12)
    folder, step, total = status.checkpoint
    assert (folder.name, step, total) == ("checkpoint-20", 20, 40)
    assert status.elapsed_s == 300
    assert status.mean_stage_s == 120
    assert status.holder is None
    assert status.eta_s == 120  # not running: one stage of 2 minutes left to do


def test_status_of_a_held_run_counts_down_from_the_last_stage(killed_run):
    from cvqa_bench.run.state.lock import RunLock
    from cvqa_bench.run.state.status import run_status

    with RunLock(killed_run):
        status = run_status(killed_run, now=STARTED + dt.timedelta(minutes=5))
    assert status.holder == str(os.getpid())
    assert status.eta_s == 60  # stage 3 began at 10:04, a stage takes 2 minutes, it is 10:05


def test_status_command_prints_every_fact(cvqa, killed_run):
    dump = json.loads(json.dumps(yaml.safe_load((killed_run / "config.yaml").read_text())))
    from cvqa_bench.config import RunConfig
    from cvqa_bench.config.run import UNHASHED_FIELDS  # e.g. train.report_to: a tracker changes no number

    full = RunConfig.model_validate(dump).model_dump(mode="json")
    for path in UNHASHED_FIELDS:
        section, _, key = path.partition(".")
        full[section].pop(key)
    assert full["train"].pop("vision_cache") is True  # added later: hashed only when false
    assert full["train"].pop("rows_per_step") == {}  # added later: hashed only when set
    config_hash = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:12]
    result = cvqa("status", killed_run)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(f"config {config_hash})")
    assert lines[1] == "stages: 2 of 3 done (1-color, 2-shape); remaining: 3-position"
    assert lines[2] == "cells: 9 of 12 predicted, 6 scored"
    assert lines[3] == "checkpoint: stages/3-position/trainer/checkpoint-20 (step 20 of 40)"
    assert "left to do (not running) 2.0 min (mean stage 2.0 min)" in lines[4]
    assert lines[5] == "process: none holds the run"


def test_status_on_a_folder_without_a_run_exits_2(cvqa, tmp_path):
    result = cvqa("status", tmp_path)
    assert result.exit_code == 2
    assert f"{tmp_path / 'config.yaml'}: not found" in result.stderr


def report_json(cvqa, run: Path, out: Path) -> dict:
    result = cvqa("report", run, "--format", "json", "--format", "md", "--out", out)
    assert result.exit_code == 0, result.stderr
    return json.loads((out / "report.json").read_text())


def test_report_on_a_killed_run_shows_the_partial_matrix_and_the_defined_metrics(cvqa, killed_run, tmp_path,
                                                                                  digest):
    before = digest(killed_run)
    doc = report_json(cvqa, killed_run, tmp_path / "report")
    rows = doc["tables"]["matrix"]["rows"]
    values = [[row[t] for t in TASKS] for row in rows if row["stage"] != ""]
    assert values == [list(map(float, SCORES[0])), list(map(float, SCORES[1])), list(map(float, SCORES[2])),
                      [None, None, None]]
    metrics = {row["metric"]: row["value"] for row in doc["tables"]["metrics"]["rows"]}
    assert metrics == pytest.approx(EXPECTED_METRICS, abs=1e-9)
    assert doc["warnings"] == ["unfinished run: 3 cells not predicted yet (stage 3-position: all tasks)"]
    assert "partial: 9 of 12 cells" in (tmp_path / "report" / "report.md").read_text()
    assert digest(killed_run) == before  # nothing in the run folder changed


def test_a_missing_cell_in_row_2_leaves_the_metrics_of_task_1_only(cvqa, killed_run, tmp_path):
    (killed_run / "predictions" / "2-shape" / "shape.jsonl").unlink()
    doc = report_json(cvqa, killed_run, tmp_path / "report")
    metrics = {row["metric"]: row["value"] for row in doc["tables"]["metrics"]["rows"]}
    # One task: acc = [[100]]; the metrics that compare tasks are not defined.
    assert metrics == {"final_avg": 100.0, "mft": 100.0, "avg_incremental": 100.0}
    assert "stage 2-shape: shape; stage 3-position: all tasks" in doc["warnings"][0]


def test_score_on_a_killed_run_prints_the_partial_report_and_writes_no_matrix(cvqa, killed_run):
    result = cvqa("score", killed_run)
    assert result.exit_code == 0, result.stderr
    assert "Accuracy matrix (partial)" in result.stdout and "62.50" in result.stdout  # final_avg so far
    assert not (killed_run / "matrix.csv").exists()
