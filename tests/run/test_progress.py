"""The console of a run on a non-TTY (plain lines, no ``\\r``, no raw Trainer dicts), its logs (run.log,
logs/train.jsonl) and the tensorboard tracker (``train.report_to``), on one small 3-task run.

20 steps per task with the Trainer logging every 10 steps (``run/training/train.py``): each stage logs the steps 10
and 20 and one end-of-training summary (``train_loss``), so train.jsonl has 3 × 3 lines.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import pytest
from conftest import SMALL_TASKS

STEPS, LOGGING_STEPS, LIMIT = 20, 10, 4
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


@pytest.fixture(scope="module")
def small_run(cvqa, small_config, small_sequence, tmp_path_factory):
    out = tmp_path_factory.mktemp("progress") / "run"
    extra = ["--set", "train.report_to=[tensorboard]"] if HAS_TENSORBOARD else []
    result = cvqa("run", "--config", small_config, "--sequence", small_sequence, "--out", out,
                  "--set", f"train.max_steps={STEPS}", "--set", f"eval.limit={LIMIT}", *extra)
    assert result.exit_code == 0, result.stderr
    return out, result


def matrix(run: Path) -> list[list[float]]:
    with open(run / "matrix.csv", newline="") as fh:
        return [[float(v) for v in row[2:]] for row in list(csv.reader(fh))[1:]]


def test_console_is_a_few_plain_lines_per_stage(small_run):
    run, result = small_run
    assert "\r" not in result.stdout and "\r" not in result.stderr
    assert "{'loss'" not in result.stdout + result.stderr and "Loading weights" not in result.stderr
    progress = [line for line in result.stderr.splitlines() if re.match(r"(stage \d|  (step|trained|row) )", line)]
    # zero-shot: header + row; each trained stage: header, the half-way step, trained, row.
    assert len(progress) == 2 + 4 * len(SMALL_TASKS), progress
    assert progress[0] == f"stage 0/{len(SMALL_TASKS)}: zero-shot evaluation of {len(SMALL_TASKS)} tasks"
    assert progress[2].startswith(f"stage 1/{len(SMALL_TASKS)}: training on {SMALL_TASKS[0]}")
    assert progress[3].startswith(f"  step {LOGGING_STEPS}/{STEPS} · loss ")


def test_each_row_is_printed_with_the_scores_of_matrix_csv(small_run):
    run, result = small_run
    rows = [line for line in result.stderr.splitlines() if line.startswith("  row ")]
    for k, values in enumerate(matrix(run)):
        cells = " · ".join(f"{task} {value:.2f}" for task, value in zip(SMALL_TASKS, values))
        assert rows[k].startswith(f"  row {k}: {cells} · "), rows[k]


def test_train_jsonl_holds_every_logging_step(small_run):
    run, _ = small_run
    records = [json.loads(line) for line in (run / "logs" / "train.jsonl").read_text().splitlines()]
    steps = [(r["stage"], r["step"]) for r in records if "loss" in r]
    assert steps == [(k, s) for k in (1, 2, 3) for s in (10, 20)]
    assert [r["stage"] for r in records if "train_loss" in r] == [1, 2, 3]
    assert all(r["task"] == SMALL_TASKS[r["stage"] - 1] for r in records)


def test_run_log_has_every_message_with_a_timestamp(small_run):
    run, result = small_run
    log = (run / "run.log").read_text()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    for line in (x for x in result.stderr.splitlines() if x.startswith(("stage ", "  row "))):
        assert re.search(stamp + r"INFO cvqa_bench: " + re.escape(line) + "$", log, re.M), line
    assert re.search(stamp + r"INFO cvqa_bench: finished: final_avg ", log)


def test_tensorboard_event_files_read_back(small_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = small_run
    folder = run / "logs" / "tensorboard"
    for k, task in enumerate(SMALL_TASKS, start=1):
        events = EventAccumulator(str(folder / f"{k}-{task}")).Reload()
        assert [e.step for e in events.Scalars("train/loss")] == [10, 20]
    events = EventAccumulator(str(folder / "matrix")).Reload()
    values = matrix(run)
    for i, task in enumerate(SMALL_TASKS):
        scalars = events.Scalars(f"accuracy/{task}")
        assert [e.step for e in scalars] == [0, 1, 2, 3]
        assert [e.value for e in scalars] == pytest.approx([row[i] for row in values], abs=1e-4)


def test_a_tracker_is_not_part_of_the_stage_hash():
    from cvqa_bench.config import RunConfig

    plain, tracked = RunConfig(), RunConfig(train={"report_to": "tensorboard", "logging_dir": "/tmp/tb"})
    assert tracked.train.report_to == ["tensorboard"]
    assert plain.stable_hash() == tracked.stable_hash()
    assert plain.stable_hash() != RunConfig(train={"max_steps": 7}).stable_hash()


def test_an_unknown_tracker_exits_2_naming_the_field(cvqa, small_sequence):
    result = cvqa("run", "--sequence", small_sequence, "--set", "train.report_to=tensorbord")
    assert result.exit_code == 2
    assert "train.report_to" in result.stderr and "tensorboard" in result.stderr


def test_resuming_without_the_tracker_retrains_nothing(cvqa, small_run, small_config, small_sequence):
    run, _ = small_run  # last in this file: it appends to the run's logs
    before = (run / "matrix.csv").read_text()
    result = cvqa("run", "--config", small_config, "--sequence", small_sequence, "--out", run, "--resume",
                  "--set", f"train.max_steps={STEPS}", "--set", f"eval.limit={LIMIT}", "--set", "train.report_to=none")
    assert result.exit_code == 0, result.stderr
    assert "training on" not in result.stderr
    assert [f"stage {k} ({task}): done earlier, restored" in result.stderr
            for k, task in enumerate(SMALL_TASKS, start=1)] == [True] * len(SMALL_TASKS)
    assert (run / "matrix.csv").read_text() == before


def test_the_trained_line_shows_the_last_window_loss_and_labels_the_stage_mean(small_run):
    """Issue 31: the stage mean (train_loss) shown as "loss" made loss seem to rise at the end of each stage."""
    run, result = small_run
    records = [json.loads(line) for line in (run / "logs" / "train.jsonl").read_text().splitlines()]
    trained = [line for line in result.stderr.splitlines() if line.startswith("  trained ")]
    assert len(trained) == len(SMALL_TASKS)
    for stage, line in enumerate(trained, start=1):
        logged = [r for r in records if r["stage"] == stage]
        last = [r["loss"] for r in logged if "loss" in r][-1]
        mean = next(r["train_loss"] for r in logged if "train_loss" in r)
        assert f"loss {last:.3f} (last {LOGGING_STEPS} steps) · stage mean {mean:.3f} · evaluating" in line, line


def test_a_stage_stopped_by_a_signal_does_not_announce_an_evaluation():
    """After SIGINT the Trainer ends the stage early; the line says so instead of "evaluating N tasks"."""
    from types import SimpleNamespace

    from cvqa_bench.run.watching.progress import StageCallback

    said: list[str] = []
    progress = SimpleNamespace(live=None, tasks=["a"] * 6, steps=0, sec_per_step=None, say=said.append,
                               train_log=SimpleNamespace(write=lambda record: None), eta=lambda *a: ("1 s", "2 s"))
    callback = StageCallback(progress, 1, "a")
    args = SimpleNamespace(logging_steps=10)
    state = SimpleNamespace(global_step=0, max_steps=300, is_world_process_zero=True)
    callback.on_train_begin(args, state, None)
    state.global_step = 150
    callback.on_log(args, state, None, logs={"loss": 0.5, "learning_rate": 1e-3})
    callback.on_train_end(args, state, None)
    assert said[-1].startswith("  training stopped at step 150/300 after ") and "evaluating" not in said[-1]
    assert said[-1].endswith("loss 0.500 (last 10 steps)")
