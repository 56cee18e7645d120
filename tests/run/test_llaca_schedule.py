"""Issue 27: LLaCA's official schedules pinned in tasks/coin8*.yaml, printed by ``cvqa plan``, and used by a run.

The tables below are typed by hand from the official scripts (github JingyangQiao/CoIN, commit efa9cb4):
per task the ``--dema`` flag and ``--previous_task_model_path`` of scripts/CoIN/Train_<variant>/<k>_<Task>.sh
(ScienceQA: ``--pretrain_mm_mlp_adapter``, the base) and the ``MODELPATH`` of scripts/CoIN/Eval<variant>/
<k>_eval_<task>.sh, each path's task folder under ``Only_Pretrain_1.5_CIA/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import coin_standins as standins
from cvqa_bench.cli import app

# task: (dynamic EMA, starts from, evaluated with)
TRAIN_CIA = {
    "ScienceQA": (False, "base", "ScienceQA"), "TextVQA": (False, "ScienceQA", "OCRVQA"),
    "ImageNet": (False, "TextVQA", "ImageNet"), "GQA": (True, "TextVQA", "OCRVQA"),
    "VizWiz": (True, "GQA", "OCRVQA"), "Grounding": (False, "VizWiz", "Grounding"),
    "VQAv2": (True, "VizWiz", "OCRVQA"), "OCRVQA": (True, "VQAv2", "OCRVQA"),
}
TRAIN_DIVERSE = {
    "ScienceQA": (False, "base", "ScienceQA"), "TextVQA": (False, "ScienceQA", "OCRVQA"),
    "ImageNet": (False, "TextVQA", "ImageNet"), "GQA": (True, "ImageNet", "OCRVQA"),
    "VizWiz": (True, "TextVQA", "OCRVQA"), "Grounding": (False, "VizWiz", "Grounding"),
    "VQAv2": (True, "GQA", "OCRVQA"), "OCRVQA": (True, "VQAv2", "OCRVQA"),
}
TRAIN_10TYPE = dict(TRAIN_CIA)  # Train_10Type/ and Eval_10Type/ hard-code the same paths and flags as Train_CIA/
FOLDERS = {"coin8": "Instructions", "coin8-diverse": "Instructions_Diverse", "coin8-10type": "Instructions_10Type"}


@pytest.fixture(scope="module")
def coin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("coin") / "CoIN"
    for folder in FOLDERS.values():
        standins.build_coin_root(root, folder)
    return root


def plan(cvqa, root: Path, sequence: str, *extra: str) -> dict:
    result = cvqa("plan", sequence, "--data-root", root, "--method", "llaca", "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(("sequence", "official"), [("coin8", TRAIN_CIA), ("coin8-diverse", TRAIN_DIVERSE),
                                                    ("coin8-10type", TRAIN_10TYPE)])
def test_plan_prints_the_official_schedule(cvqa, coin_root, sequence, official):
    out = plan(cvqa, coin_root, sequence)
    assert {r["task"]: (r["ema"], r["start_from"], r["eval_with"]) for r in out["schedule"]} == official
    assert out["schedule_disagreements"] == []
    text = cvqa("plan", sequence, "--data-root", coin_root, "--method", "llaca").stdout
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("schedule"))
    assert lines[header].split() == ["schedule", "group", "EMA", "starts", "from", "evaluated", "with"]
    # the printed table: task, group, EMA on/off, starts from, evaluated with, one line per task
    rows = [line.split() for line in lines[header + 1:header + 9]]
    assert {cols[0]: (cols[2] == "on", cols[3], cols[4]) for cols in rows} == official


def test_computed_schedule_names_each_task_where_tfidf_disagrees(cvqa, coin_root):
    # The stand-in's diverse folder holds CoIN's original prompts, so TF-IDF plans Train_CIA's starts:
    # GQA from TextVQA (official: ImageNet), VizWiz from GQA (TextVQA), VQAv2 from VizWiz (GQA).
    out = plan(cvqa, coin_root, "coin8-diverse", "--set", "method.options.schedule=computed")
    lines = out["schedule_disagreements"]
    assert [line.split(": ")[1] for line in lines] == ["GQA", "VizWiz", "VQAv2"]
    assert "starts from TextVQA (pinned: ImageNet)" in lines[0]
    assert {r["task"]: r["start_from"] for r in out["schedule"]}["GQA"] == "TextVQA"
    assert plan(cvqa, coin_root, "coin8", "--set", "method.options.schedule=computed")["schedule_disagreements"] == []


def test_a_reordered_pinned_sequence_says_to_compute(cvqa, coin_root):
    result = cvqa("plan", "coin8", "--data-root", coin_root, "--method", "llaca", "--set", "task_order=reverse")
    assert result.exit_code == 2 and "schedule: computed" in result.output


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return standins.build_tiny_llava(tmp_path_factory.mktemp("model") / "llava-tiny-hf")


def run_llaca(root: Path, model: Path, out: Path, sequence: str, *extra: str):
    """A short llaca run of ``sequence`` on the stand-in (2 steps per task, 1 test question per task)."""
    from typer.testing import CliRunner

    from conftest import one_torch_thread

    with one_torch_thread():
        return CliRunner().invoke(app, [
            "run", "--sequence", sequence, "--data-root", str(root), "--model", str(model), "--method", "llaca",
            "--set", "train.max_steps=2", "--set", "train.batch_size=16", "--set", "eval.batch_size=4",
            "--set", "eval.max_new_tokens=2", "--set", "eval.limit=1", *extra, "--out", str(out)])


def final_row_weights(out: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(each stage's saved weights fingerprint by task, the weights fingerprint of each last-row cell by task)."""
    from cvqa_bench.config import RunConfig, read_yaml
    from cvqa_bench.methods.base import Trainables
    from cvqa_bench.models.fingerprint import tensors_fingerprint
    from cvqa_bench.models.load import load_model
    from cvqa_bench.run.state.checkpoint import load_tensors

    tasks = list(standins.TASKS)
    # a cell's fingerprint takes the trainable tensors in the model's order (WeightsFingerprint)
    names = Trainables(load_model(RunConfig(**read_yaml(out / "config.yaml")).model).model).names

    def fingerprint(folder: str) -> str:
        saved = load_tensors(out / "stages" / folder / "weights.safetensors")
        return tensors_fingerprint((name, saved[name]) for name in names)

    weights = {task: fingerprint(f"{k}-{task}") for k, task in enumerate(tasks, start=1)}
    cells = json.loads((out / "cells.json").read_text())
    return weights, {task: cells[f"predictions/8-OCRVQA/{task}.jsonl"]["weights"] for task in tasks}


@pytest.mark.parametrize(("sequence", "official"), [("coin8-diverse", TRAIN_DIVERSE), ("coin8-10type", TRAIN_10TYPE)])
def test_the_final_row_uses_the_official_evaluation_checkpoint(coin_root, tiny_llava, tmp_path, sequence, official):
    """End to end on the tiny model: every cell of the last row was evaluated with exactly the final weights
    of the task Eval_Diverse/ (Eval_10Type/) names (cells.json's weights fingerprint against each stage's
    saved weights), and every task started from the weights Train_Diverse/ (Train_10Type/) names.
    tasks/coin8.yaml's rows are Train_10Type's (checked by plan above; test_coin8_e2e runs it)."""
    out = tmp_path / "run"
    result = run_llaca(coin_root, tiny_llava, out, sequence)
    assert result.exit_code == 0, result.output
    weights, final = final_row_weights(out)
    assert len(set(weights.values())) == 8  # every stage ends with its own weights
    assert final == {task: weights[row[2]] for task, row in official.items()}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {r["task"]: (r["ema"], r["start_from"], r["eval_with"]) for r in manifest["method"]["schedule"]} \
        == official
    assert manifest["config"]["method"]["options"]["schedule"] == "pinned" and manifest["method"]["notes"] == []
    records = json.loads((out / "method_records.json").read_text())["tasks"]
    # what each stage was really given: the start decision it trained from, and EMA applied where the row says
    assert {r["task"]: (r["ema_applied"], r["start_task"] or "base", r["eval_with"]) for r in records} == official


def test_a_computed_schedule_names_each_disagreeing_task_in_the_run(coin_root, tiny_llava, tmp_path, cvqa):
    """``schedule: computed`` on coin8-diverse (the stand-in's diverse folder holds CoIN's original prompts,
    so TF-IDF plans Train_CIA's starts): the run prints, logs and records one line for each of GQA, VizWiz
    and VQAv2, trains from the TF-IDF starts, and still evaluates the last row as Eval_Diverse/ does (the
    VQA-style group's latest weights are OCR-VQA's, the others' their own)."""
    expected = [f"llaca schedule computed, differs from the pinned one: {task}: TF-IDF plan starts from {ours} "
                f"(pinned: {pinned})" for task, ours, pinned in (("GQA", "TextVQA", "ImageNet"),
                                                                  ("VizWiz", "GQA", "TextVQA"),
                                                                  ("VQAv2", "VizWiz", "GQA"))]
    plan_text = cvqa("plan", "coin8-diverse", "--data-root", coin_root, "--method", "llaca",
                     "--set", "method.options.schedule=computed")
    assert plan_text.exit_code == 0, plan_text.output
    assert [line for line in plan_text.stdout.splitlines() if "TF-IDF plan" in line] == expected
    out = tmp_path / "run"
    result = run_llaca(coin_root, tiny_llava, out, "coin8-diverse", "--set", "method.options.schedule=computed")
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if "TF-IDF plan" in line] == expected  # the console
    logged = [line.split(" INFO cvqa_bench: ")[1] for line in (out / "run.log").read_text().splitlines()
              if "TF-IDF plan" in line]
    assert logged == expected  # each once: a timestamped INFO line
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"]["notes"] == expected
    assert manifest["config"]["method"]["options"]["schedule"] == "computed"
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["method"]["notes"] == expected
    records = json.loads((out / "method_records.json").read_text())
    assert records["schedule_disagreements"] == [line.split("pinned one: ")[1] for line in expected]
    computed = dict(TRAIN_CIA)  # Train_CIA's starts and EMA flags; the final row as Eval_Diverse
    assert {r["task"]: (r["ema_applied"], r["start_task"] or "base") for r in records["tasks"]} == \
        {task: row[:2] for task, row in computed.items()}
    weights, final = final_row_weights(out)
    assert final == {task: weights[row[2]] for task, row in TRAIN_DIVERSE.items()}


def test_pinned_rows_choose_the_start_and_evaluation_weights_where_groups_would_not():
    """Three tasks with one instruction (one TF-IDF group): pinned, B is evaluated with A's final weights and
    C starts from B's; computed, B gets the group's latest (C's) weights."""
    import torch
    from torch import nn

    from cvqa_bench.methods.base import TaskContext, TaskInfo, Trainables
    from cvqa_bench.methods.llaca import LLaCA

    rows = {"A": (False, "base", "A"), "B": (False, "A", "A"), "C": (False, "A", "C")}
    tasks = [TaskInfo(i, name, ("Answer the question.",), schedule=row) for i, (name, row) in enumerate(rows.items())]
    for schedule, b_evaluated_with, starts in (("pinned", 1.0, [0.0, 1.0, 1.0]), ("computed", 3.0, [0.0, 1.0, 2.0])):
        model = nn.Module()
        model.w = nn.Parameter(torch.zeros(1))
        method = LLaCA(LLaCA.Options(schedule=schedule))
        method.setup(tasks)
        seen = []
        for i, task in enumerate(tasks):
            ctx = TaskContext(i + 1, task, tasks, Trainables(model), model=model)
            method.before_task(ctx)
            seen.append(model.w.item())  # the start weights the task was given
            with torch.no_grad():
                model.w.fill_(i + 1.0)  # "training" ends at A: 1, B: 2, C: 3
            method.after_task(ctx)
        assert seen == starts
        assert method.eval_state(tasks[1])["w"].item() == b_evaluated_with
        assert method.eval_state(tasks[2])["w"].item() == 3.0
