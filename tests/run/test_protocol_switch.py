"""The scoring protocol of a run (official CoIN scripts vs corrected scorers), the LLaCA threshold by
instruction style, and the per-task training fields (rows per step, image aspect)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from cvqa_bench.config import ConfigError, TaskSpec, TrainSpec
from cvqa_bench.io import read_jsonl
from cvqa_bench.methods.base import TaskInfo
from cvqa_bench.methods.llaca import LLaCA, LLaCAOptions
from cvqa_bench.run.prepare import task_train_spec
from cvqa_bench.scoring import get_scorer
from conftest import SMALL_TASKS

OFFICIAL = {"color": "vqa", "shape": "imagenet_official", "position": "grounding_official"}


@pytest.fixture(scope="module")
def short_run(cvqa, small_sequence, tmp_path_factory):
    out = tmp_path_factory.mktemp("protocol") / "run"
    result = cvqa("run", "--sequence", small_sequence, "--method", "finetune", "--set", "train.max_steps=2",
                  "--set", "train.batch_size=4", "--set", "eval.batch_size=8", "--out", out)
    assert result.exit_code == 0, result.stderr
    return out


def test_a_run_records_its_protocol_in_config_scores_and_metrics(short_run):
    assert "protocol: corrected" in (short_run / "config.yaml").read_text()
    cell = json.loads((short_run / "scores" / "1-color" / "shape.json").read_text())
    assert (cell["scorer"], cell["protocol"]) == ("contains", "corrected")
    assert json.loads((short_run / "metrics.json").read_text())["meta"]["protocol"] == "corrected"


def test_score_under_the_other_protocol_writes_beside_the_run_and_keeps_its_own(cvqa, short_run, tmp_path):
    run = Path(shutil.copytree(short_run, tmp_path / "run"))
    own = (run / "matrix.csv").read_bytes()
    result = cvqa("score", run, "--protocol", "official")
    assert result.exit_code == 0, result.stderr
    assert (run / "matrix.csv").read_bytes() == own
    official = run / "protocols" / "official"
    metrics = json.loads((official / "metrics.json").read_text())
    assert metrics["scorers"] == OFFICIAL and metrics["meta"]["protocol"] == "official"
    rows = [line.split(",") for line in (official / "matrix.csv").read_text().splitlines()]
    for k, row in enumerate(rows[1:]):
        stage = row[0] + "-" + row[1]
        for i, task in enumerate(SMALL_TASKS):
            records = read_jsonl(run / "predictions" / stage / f"{task}.jsonl")
            scorer = get_scorer(OFFICIAL[task])
            by_hand = 100 * sum(scorer.score(r["prediction"], r["answers"]) for r in records) / len(records)
            assert math.isclose(float(row[2 + i]), by_hand, abs_tol=1e-9), (stage, task)
    report = cvqa("report", run)
    assert report.exit_code == 0, report.stderr
    text = (run / "report.md").read_text()
    assert "The same predictions under each scoring protocol" in text and "protocol official" in text


def test_an_unknown_protocol_is_one_line_and_exit_2(cvqa, short_run):
    result = cvqa("score", short_run, "--protocol", "paper")
    assert result.exit_code == 2
    assert "--protocol: unknown 'paper'; choose from official, corrected" in result.stderr


@pytest.mark.parametrize(("style", "explicit", "threshold", "source"), [
    ("original", None, 0.9, "instruction_style original"),
    ("diverse", None, 0.3, "instruction_style diverse"),
    ("diverse", 0.5, 0.5, "explicit"),
])
def test_the_llaca_threshold_follows_the_instruction_style_unless_set(style, explicit, threshold, source):
    method = LLaCA(LLaCAOptions(threshold=explicit))
    method.setup([TaskInfo(0, "a", ("Answer briefly.",), (), style), TaskInfo(1, "b", ("Answer briefly.",), (), style)])
    records = method.records()
    assert (records["threshold"], records["threshold_from"]) == (threshold, source)


def test_rows_per_step_sets_grad_accum_and_refuses_a_remainder():
    task = TaskSpec(name="GQA", train="t.json", test="e.json", scorer="exact", rows_per_step=64)
    spec = task_train_spec(TrainSpec(batch_size=16, grad_accum=8), task, world_size=2)
    assert (spec.batch_size, spec.grad_accum) == (16, 2)  # 16 x 2 x 2 processes = 64 rows
    plain = TaskSpec(name="VQAv2", train="t.json", test="e.json", scorer="exact")
    assert task_train_spec(TrainSpec(grad_accum=8), plain, world_size=1).grad_accum == 8
    with pytest.raises(ConfigError, match=r"rows_per_step 64 is not a multiple of train.batch_size 12 x 1"):
        task_train_spec(TrainSpec(batch_size=12), task, world_size=1)


def test_image_aspect_takes_one_value_for_both_or_one_per_phase():
    both = TaskSpec(name="a", train="t", test="e", scorer="exact", image_aspect="crop")
    assert (both.image_aspect.train, both.image_aspect.eval) == ("crop", "crop")
    split = TaskSpec(name="a", train="t", test="e", scorer="exact", image_aspect={"train": "pad", "eval": "crop"})
    assert (split.image_aspect.train, split.image_aspect.eval) == ("pad", "crop")
    with pytest.raises(ValueError, match="'pad' or 'crop'"):
        TaskSpec(name="a", train="t", test="e", scorer="exact", image_aspect="square")
