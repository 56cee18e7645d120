"""Tests of the method and generation benchmarks (cvqa_bench.bench) on the tiny model.

Structure and sanity only, never timing thresholds: the machine is shared. The expected byte counts
are computed by hand from configs/models/tiny.yaml and the default LoRA (r=16 on the LM's q_proj and
v_proj) plus the trainable projector.
"""

from __future__ import annotations

import math

import pytest

from cvqa_bench.bench.common import question_pool
from cvqa_bench.bench.generation import bench_generation
from cvqa_bench.bench.methods import _Arm, _paired_ratio, _split, _variants, bench_methods
from cvqa_bench.config import CONFIGS_DIR, ModelSpec
from cvqa_bench.registry import UnknownNameError

TINY = ModelSpec(tiny=str(CONFIGS_DIR / "models" / "tiny.yaml"))

# 2 LM layers x (q_proj, v_proj) x LoRA A (16 x 64) + B (64 x 16) = 4 x 2048 = 8192;
# projector linear_1 and linear_2, each 64 x 64 + 64 bias = 4160 -> 8320; 16512 in all.
TRAINABLE_PARAMS = 4 * (16 * 64 + 64 * 16) + 2 * (64 * 64 + 64)
TRAINABLE_BYTES = 4 * TRAINABLE_PARAMS  # float32
ALPHA_STATS_BYTES = 5 * 8  # sum, min, max (float64) and count, fallbacks (int64): 0-dim tensors
# the alpha history: one float64 alpha and one int8 cause per tensor (12) and step (1 warm-up + 4 timed)
ALPHA_HISTORY_BYTES = 12 * 5 * (8 + 1)


@pytest.fixture(scope="module")
def methods_result() -> dict:
    return bench_methods(TINY, batch_size=2, steps=4, warmup=1, rounds=3, device="cpu")


def test_methods_covers_each_method_and_the_llaca_loop_variant(methods_result: dict) -> None:
    rows = methods_result["methods"]
    assert list(rows) == ["finetune", "ema", "llaca", "ewc", "lwf", "llaca_loop"]
    assert rows["llaca"]["options"] == {"grouping": False, "fused": True}
    assert rows["llaca_loop"]["options"] == {"grouping": False, "fused": False}
    assert all(row["timed_steps"] == 4 for row in rows.values())


def test_methods_state_bytes_are_the_hand_counted_copies(methods_result: dict) -> None:
    assert methods_result["trainable_params"] == TRAINABLE_PARAMS == 16512
    assert methods_result["trainable_bytes"] == TRAINABLE_BYTES
    rows = methods_result["methods"]
    assert rows["finetune"]["state_bytes"] == 0
    assert rows["ema"]["state_bytes"] == TRAINABLE_BYTES  # one EMA copy
    for label in ("llaca", "llaca_loop"):  # EMA copy + previous gradients + running alpha stats
        assert rows[label]["state_bytes"] == 2 * TRAINABLE_BYTES + ALPHA_STATS_BYTES + ALPHA_HISTORY_BYTES
        assert rows[label]["scalar_state_bytes"] == ALPHA_STATS_BYTES + ALPHA_HISTORY_BYTES
        assert rows[label]["copies_ratio"] == 2.0
    assert rows["ema"]["copies_ratio"] == 1.0 and rows["finetune"]["copies_ratio"] == 0.0
    assert rows["ewc"]["state_bytes"] == 2 * TRAINABLE_BYTES  # the Fisher and the anchors
    assert rows["lwf"]["state_bytes"] == TRAINABLE_BYTES  # the teacher's tensors
    assert methods_result["targets"]["llaca_state_ok"] is True


def test_methods_timings_are_consistent(methods_result: dict) -> None:
    rows = methods_result["methods"]
    assert rows["finetune"]["ratio_vs_finetune"] == 1.0
    tokens = methods_result["tokens_per_step"]
    assert tokens > 2 * 16  # each of the 2 rows holds 16 image tokens plus its text
    for row in rows.values():
        assert 0 < row["min_ms"] <= row["p25_ms"] <= row["median_ms"] <= row["p75_ms"]
        assert row["ratio_vs_finetune"] > 0
        assert row["tokens_per_s"] == pytest.approx(tokens / (row["median_ms"] / 1e3))
        assert row["peak_memory_bytes"] is None  # CPU
    assert methods_result["llaca_fused_vs_loop"] > 0
    assert methods_result["rounds"] == 3


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    def arm(blocks: list[list[float]]) -> _Arm:
        return _Arm("x", None, {}, None, {}, blocks=blocks)  # type: ignore[arg-type]

    # round 1: median(2, 4) / median(1, 1) = 3; round 2: 3 / 2 = 1.5; median of (3, 1.5) = 2.25
    assert _paired_ratio(arm([[2.0, 4.0], [3.0]]), arm([[1.0, 1.0], [2.0]])) == 2.25
    # one round at 2x and two at 1x: the outlier round does not move the median
    assert _paired_ratio(arm([[2.0], [1.0], [1.0]]), arm([[1.0], [1.0], [1.0]])) == 1.0


def test_methods_follow_separate_identical_trajectories(methods_result: dict) -> None:
    # The hooks never touch the live weights during a task, so with its own weights and optimizer
    # every method must reach the very same loss; shared weights would give finetune 4x the steps.
    losses = {label: row["final_loss"] for label, row in methods_result["methods"].items()
              if label not in ("ewc", "lwf")}  # their loss terms change the gradients
    assert all(math.isfinite(loss) for loss in losses.values())
    assert len(set(losses.values())) == 1, losses


def test_split_blocks_sum_to_the_steps() -> None:
    assert _split(10, 3) == [4, 3, 3]
    assert _split(2, 5) == [1, 1]
    assert _split(6, 1) == [6]


def test_variants_add_the_loop_and_reject_bad_names() -> None:
    assert [v[0] for v in _variants(["finetune", "llaca"], True)] == ["finetune", "llaca", "llaca_loop"]
    assert [v[0] for v in _variants(["finetune", "llaca"], False)] == ["finetune", "llaca"]
    with pytest.raises(UnknownNameError, match="Did you mean 'llaca'"):
        _variants(["llaka"], True)
    with pytest.raises(ValueError, match="distinct"):
        _variants(["ema", "ema"], True)


def test_methods_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="steps >= 1"):
        bench_methods(TINY, batch_size=2, steps=0, warmup=0)
    with pytest.raises(ValueError, match="no task 'colour'"):
        bench_methods(TINY, batch_size=2, steps=1, warmup=0, task="colour")


def test_question_pool_takes_tasks_in_turn() -> None:
    ids = [row["question_id"] for row in question_pool("synthetic", 7)]
    assert ids == ["mcq_test_0", "color_test_0", "shape_test_0", "count_test_0", "position_test_0",
                   "glyph_test_0", "mcq_test_1"]
    with pytest.raises(ValueError, match=r"1\.\.384"):  # 6 tasks x 64 test rows
        question_pool("synthetic", 385)


def test_generation_batched_equals_unbatched() -> None:
    result = bench_generation(TINY, batch_sizes=(1, 4), n_questions=8, max_new_tokens=3, repeats=1, device="cpu")
    assert result["reference_batch_size"] == 1
    runs = {run["batch_size"]: run for run in result["runs"]}
    assert list(runs) == [1, 4]
    assert runs[1]["speedup"] == 1.0 and runs[1]["agreement"] == 1.0
    assert runs[4]["agreement"] == 1.0  # docs/design.md, "The tiny model": each batched row equals its unbatched continuation
    for run in runs.values():
        assert run["questions_per_s"] == pytest.approx(8 / run["seconds"])
        assert run["new_tokens_per_s"] == pytest.approx(8 * 3 / run["seconds"])
    assert runs[4]["speedup"] == pytest.approx(runs[1]["seconds"] / runs[4]["seconds"])
    assert result["targets"]["speedup_ok"] is None  # no batch of 32 was run


def test_generation_rejects_bad_batch_sizes() -> None:
    with pytest.raises(ValueError, match="batch sizes >= 1"):
        bench_generation(TINY, batch_sizes=(0, 4))


def test_methods_with_model_surgery_train_their_own_model_and_count_their_set() -> None:
    result = bench_methods(TINY, batch_size=2, steps=2, warmup=0, rounds=2, device="cpu",
                           methods=("finetune", "olora", "moelora", "eproj"), compare_llaca_loop=False)
    rows = result["methods"]
    lora, projector = 4 * (16 * 64 + 64 * 16), 2 * (64 * 64 + 64)
    assert rows["finetune"]["trainable_set_bytes"] == TRAINABLE_BYTES
    assert rows["olora"]["trainable_set_bytes"] == 4 * (2 * lora + projector)  # one LoRA per task (2 tasks)
    # 8 experts of rank 2 (as big as the LoRA together) + a router of 8 x 64 per layer
    assert rows["moelora"]["trainable_set_bytes"] == 4 * (lora + 4 * 8 * 64 + projector)
    assert rows["eproj"]["state_bytes"] == 4 * projector  # the base projector a new task starts from
    assert all(math.isfinite(row["final_loss"]) for row in rows.values())


def test_encode_once_bench_trains_the_three_sources_to_the_same_losses() -> None:
    from cvqa_bench.bench.evaluation import bench_encode_once

    result = bench_encode_once(TINY, steps=2, repeats=1)
    assert set(result["runs"]) == {"per_batch", "encoded_once", "cached_features"}
    assert result["same_losses"] is True  # pixels per batch, pixels encoded once, features computed once
    assert (result["steps"], result["rows"]) == (2, 512)
    assert result["step_seconds"] == result["runs"]["encoded_once"]["step_seconds"]
