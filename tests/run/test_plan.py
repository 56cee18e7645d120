"""`cvqa plan`: per-task rows, questions, steps and cells to generate, against counts made by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import coin_standins as standins  # noqa: E402

from cvqa_bench.run.plan import stage_steps  # noqa: E402

TASKS = list(standins.TASKS)


@pytest.fixture(scope="module")
def coin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return standins.build_coin_root(tmp_path_factory.mktemp("coin") / "CoIN")


def plan(cvqa, root: Path, method: str, *extra: str) -> dict:
    result = cvqa("plan", "coin8", "--data-root", root, "--method", method, "--json",
                  "--set", "train.max_steps=null", "--set", "train.epochs=2", "--set", "train.batch_size=8", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_coin8_llaca_counts_equal_the_hand_count(cvqa, coin_root):
    out = plan(cvqa, coin_root, "llaca")
    tasks = {t["task"]: t for t in out["tasks"]}
    assert list(tasks) == TASKS
    # every stand-in task has 4 training rows and 4 test questions; 4 rows fill one batch of 8, and every
    # task's rows_per_step (128/128/160/64/128/64/80/96) is one optimizer step per epoch: 2 epochs = 2 steps
    assert all((t["train_rows"], t["test_questions"], t["steps"], t["cells"]) == (4, 4, 2, 9) for t in tasks.values())
    # Groups (threshold 0.9): ScienceQA g0; TextVQA, GQA, VizWiz, VQAv2, OCRVQA share the VQA instruction: g1;
    # ImageNet g2; Grounding g3. Trained at stages 1..8: g0, g1, g2, g1, g1, g3, g1, g1. A task is evaluated
    # with its group's weights once trained, before that with the group its instruction matches, else the
    # newest group; a cell is new when that group was trained since the task's previous cell.
    #   ScienceQA: base, g0@1 (unchanged after)                                   -> 2
    #   TextVQA, GQA, VizWiz, VQAv2, OCRVQA: base, g0@1, g1@2, g1@4, g1@5, g1@7, g1@8 -> 7 each
    #   ImageNet: base, g0@1, g1@2 (newest group), g2@3                           -> 4
    #   Grounding: base, g0@1, g1@2, g2@3 (newest, stages 3-5), g3@6              -> 5
    hand = {"ScienceQA": 2, "TextVQA": 7, "ImageNet": 4, "GQA": 7, "VizWiz": 7, "Grounding": 5, "VQAv2": 7, "OCRVQA": 7}
    assert {n: t["cells_to_compute"] for n, t in tasks.items()} == hand
    assert (out["cells"], out["cells_to_compute"]) == (72, 46)


def test_finetune_computes_every_cell_and_reuse_off_too(cvqa, coin_root):
    assert plan(cvqa, coin_root, "finetune")["cells_to_compute"] == 72  # new weights at every stage
    assert plan(cvqa, coin_root, "llaca", "--set", "eval.reuse_cells=false")["cells_to_compute"] == 72


def test_projection_from_a_throughput_file(cvqa, coin_root, tmp_path):
    rates = tmp_path / "throughput.json"
    rates.write_text(json.dumps({"questions_per_s": 2.0, "step_seconds": 10.0}))
    out = plan(cvqa, coin_root, "finetune", "--throughput", rates)
    stages = out["projection"]
    # stage 0: 8 cells x 4 questions / 2 q/s = 16 s; stage k: 2 steps x 10 s + 16 s = 36 s
    assert (stages[0]["eval_s"], stages[0]["train_s"]) == (16.0, 0.0)
    assert all(s["wall_s"] == 36.0 for s in stages[1:9])
    assert stages[-1]["wall_s"] == 16.0 + 8 * 36.0
    assert stages[-1]["device_hours"] == pytest.approx((16.0 + 8 * 36.0) / 3600)


def test_bad_throughput_file_is_one_line_exit_2(cvqa, coin_root, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"questions_per_s": 2.0}))
    result = cvqa("plan", "coin8", "--data-root", coin_root, "--throughput", bad)
    assert result.exit_code == 2
    assert str(bad) in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("rows,batch,accum,world,max_steps,epochs,expected", [
    (100, 8, 1, 1, None, 1.0, 13),   # ceil(100 / 8)
    (100, 8, 4, 1, None, 1.0, 4),    # 13 batches, 4 per step -> ceil(13 / 4)
    (100, 8, 1, 2, None, 1.0, 7),    # 16 rows per pass -> ceil(100 / 16)
    (100, 8, 1, 1, None, 1.5, 20),   # ceil(1.5 * 13)
    (100, 8, 1, 1, 50, 3.0, 50),     # max_steps wins
])
def test_stage_steps_as_the_trainer_counts(rows, batch, accum, world, max_steps, epochs, expected):
    assert stage_steps(rows, batch, accum, world, max_steps, epochs) == expected
