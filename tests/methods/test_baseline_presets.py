"""The baselines as their references run them: the named presets, per-task rows per step, and stage hashes
that move only when an option leaves its default."""

from __future__ import annotations

import pytest

from cvqa_bench.config import RunConfig, TaskSpec, TrainSpec
from cvqa_bench.methods import methods
from cvqa_bench.run.experiment import load_experiment, planned_runs
from cvqa_bench.run.prepare import task_train_spec

ORDER = ("ScienceQA", "TextVQA", "ImageNet", "GQA", "VizWiz", "Grounding", "VQAv2", "OCRVQA")
# per_device_train_batch_size of 1_Science.sh .. 8_OCRVQA.sh, x 8 GPUs x gradient_accumulation_steps
LLACA_TRAIN_MOE = dict(zip(ORDER, (b * 8 * 1 for b in (12, 12, 16, 6, 12, 6, 6, 8))))  # JingyangQiao/CoIN
COIN_TRAIN_MOE = dict(zip(ORDER, (b * 8 * 8 for b in (14, 14, 16, 6, 14, 6, 8, 10))))  # zackschen/CoIN


def test_the_official_baseline_presets_name_their_references_settings():
    runs = {folder.name: config for folder, config in planned_runs(load_experiment("configs/baselines-official.yaml"))}
    expected = {
        "moelora-llaca-seed0": ("moelora", {"experts": 2}, LLACA_TRAIN_MOE),
        "moelora-coin-seed0": ("moelora", {"experts": 8}, COIN_TRAIN_MOE),
        "olora-original-seed0": ("olora", {"variant": "original"}, {}),
        "olora-mcitlib-seed0": ("olora", {"variant": "mcitlib"}, {}),
        "cumulative-avalanche-seed0": ("cumulative", {"start": "previous"}, {}),
        "replay-avalanche-seed0": ("replay", {"memory": "fixed", "max_buffer": 200}, {}),
    }
    assert {name: (c.method.name, c.method.options, c.train.rows_per_step) for name, c in runs.items()} == expected
    for config in runs.values():  # each method accepts its preset's options
        methods.get(config.method.name).Options.model_validate(config.method.options)
        assert config.model.lora.r == 128  # on the published recipe: 8 tasks split r into 16 each (mcitlib)


def test_train_rows_per_step_overrides_the_sequence_for_its_tasks():
    task = TaskSpec(name="GQA", train="t.json", test="e.json", scorer="exact", rows_per_step=64)
    train = TrainSpec(batch_size=16, rows_per_step={"GQA": 384})
    assert task_train_spec(train, task, world_size=1).grad_accum == 24  # 384 / 16
    assert task_train_spec(TrainSpec(batch_size=16), task, world_size=1).grad_accum == 4  # the sequence's 64
    with pytest.raises(ValueError, match="must be > 0"):
        TrainSpec(rows_per_step={"GQA": 0})


@pytest.mark.parametrize("method, default, other", [
    ("olora", {"variant": "cvqa"}, {"variant": "original"}),
    ("replay", {"memory": "growing"}, {"memory": "fixed", "max_buffer": 8}),
    ("cumulative", {"start": "base"}, {"start": "previous"}),
])
def test_a_new_option_moves_the_stage_hash_only_off_its_default(method, default, other):
    def stage_hash(options: dict) -> str:
        return RunConfig(method={"name": method, "options": options}).stable_hash()

    assert stage_hash(default) == stage_hash({})  # config.yaml names the default: older folders keep their hash
    assert stage_hash(other) != stage_hash({})
    assert RunConfig(train={"rows_per_step": {}}).stable_hash() == RunConfig().stable_hash()
    assert RunConfig(train={"rows_per_step": {"a": 16}}).stable_hash() != RunConfig().stable_hash()


def test_an_unknown_task_in_rows_per_step_stops_the_run(cvqa, small_sequence, tmp_path):
    result = cvqa("run", "--sequence", small_sequence, "--method", "finetune", "--set",
                  "train.rows_per_step={nope: 16}", "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "train.rows_per_step: no task 'nope'" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()
