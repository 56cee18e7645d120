"""Metrics against hand-computed numbers (docs/design.md metrics table, docs/methods.md, "Metrics the paper reports")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cvqa_bench import metrics
from cvqa_bench.metrics import (
    PAPER_NAMES,
    avg_incremental,
    bwt,
    compute_metrics,
    final_avg,
    forgetting,
    forgetting_last,
    fwt,
    mft,
    seen_average_curve,
)

# Row t = after training task t (0-based); column i = task i. Task 0 *improves* after stage 1
# (80 -> 85) so the max-based forgetting differs from the last-based one.
ACC = [
    [80.0, 10.0, 20.0],
    [85.0, 70.0, 30.0],
    [50.0, 65.0, 90.0],
]
ZERO_SHOT = [5.0, 8.0, 12.0]


def test_final_avg_is_mean_of_last_row() -> None:
    # (50 + 65 + 90) / 3 = 205 / 3
    assert final_avg(ACC) == pytest.approx(205 / 3)


def test_mft_is_mean_of_diagonal() -> None:
    # (80 + 70 + 90) / 3 = 80
    assert mft(ACC) == pytest.approx(80.0)


def test_seen_average_curve_and_avg_incremental() -> None:
    # after stage 1: 80; stage 2: (85 + 70) / 2 = 77.5; stage 3: (50 + 65 + 90) / 3 = 205 / 3
    np.testing.assert_allclose(seen_average_curve(ACC), [80.0, 77.5, 205 / 3])
    # (80 + 77.5 + 205/3) / 3 = (472.5 + 205) / 9 = 677.5 / 9 = 75.2777...
    assert avg_incremental(ACC) == pytest.approx(677.5 / 9)


def test_bwt() -> None:
    # ((50 - 80) + (65 - 70)) / 2 = (-30 - 5) / 2 = -17.5
    assert bwt(ACC) == pytest.approx(-17.5)


def test_forgetting_is_max_based() -> None:
    # task 0: max(80, 85) - 50 = 35; task 1: max(70) - 65 = 5; (35 + 5) / 2 = 20
    assert forgetting(ACC) == pytest.approx(20.0)


def test_forgetting_max_excludes_last_row() -> None:
    # T = 2: task 0 best over rows 0..0 is 50, final 70 -> 50 - 70 = -20 (not max(50, 70) - 70 = 0)
    assert forgetting([[50.0, 0.0], [70.0, 40.0]]) == pytest.approx(-20.0)


def test_forgetting_last() -> None:
    # task 0: 80 - 50 = 30; task 1: 70 - 65 = 5; (30 + 5) / 2 = 17.5
    assert forgetting_last(ACC) == pytest.approx(17.5)


def test_fwt() -> None:
    # i = 1: acc[0][1] - zs[1] = 10 - 8 = 2; i = 2: acc[1][2] - zs[2] = 30 - 12 = 18; (2 + 18) / 2 = 10
    assert fwt(ACC, ZERO_SHOT) == pytest.approx(10.0)


def test_compute_metrics_assembles_all_with_zero_shot() -> None:
    got = compute_metrics(ACC, ZERO_SHOT)
    expected = {
        "final_avg": 205 / 3,
        "mft": 80.0,
        "avg_incremental": 677.5 / 9,
        "bwt": -17.5,
        "forgetting": 20.0,
        "forgetting_last": 17.5,
        "fwt": 10.0,
    }
    assert list(got) == list(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value), name
    assert all(type(v) is float for v in got.values())


def test_compute_metrics_without_zero_shot_has_no_fwt() -> None:
    assert "fwt" not in compute_metrics(ACC)


def test_single_task_omits_cross_stage_metrics() -> None:
    got = compute_metrics([[42.0]], [7.0])
    assert got == {"final_avg": 42.0, "mft": 42.0, "avg_incremental": 42.0}
    for fn in (bwt, forgetting, forgetting_last):
        with pytest.raises(ValueError, match="at least 2 tasks"):
            fn([[42.0]])
    with pytest.raises(ValueError, match="at least 2 tasks"):
        fwt([[42.0]], [7.0])


def test_paper_names_follow_reference() -> None:
    assert PAPER_NAMES["final_avg"] == "Avg.ACC"
    assert PAPER_NAMES["forgetting"] == "Forgetting"
    assert PAPER_NAMES["mft"] == "New.ACC"
    assert set(PAPER_NAMES) <= set(metrics.METRIC_FORMULAS)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "square"),
        ([1.0, 2.0], "square"),
        (np.zeros((0, 0)), "empty"),
        ([[1.0, math.nan], [3.0, 4.0]], "non-finite.*row 0, column 1"),
        ([[1.0, 2.0], [math.inf, 4.0]], "non-finite.*row 1, column 0"),
        ([[1.0, 2.0], [3.0]], "numeric"),
        ([["a", "b"], ["c", "d"]], "numeric"),
    ],
)
def test_bad_matrix_is_value_error(bad: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(bad)


@pytest.mark.parametrize(
    ("zero_shot", "match"),
    [
        ([1.0, 2.0], r"one value per task \(3\)"),
        ([1.0, math.nan, 2.0], "non-finite.*task 1"),
        ([[1.0, 2.0, 3.0]], "shape"),
    ],
)
def test_bad_zero_shot_is_value_error(zero_shot: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(ACC, zero_shot)
    with pytest.raises(ValueError, match=match):
        fwt(ACC, zero_shot)


def test_inputs_are_not_mutated() -> None:
    acc = np.array(ACC)
    zs = np.array(ZERO_SHOT)
    acc_before, zs_before = acc.copy(), zs.copy()
    compute_metrics(acc, zs)
    curve = seen_average_curve(acc)
    curve[:] = -1.0
    for fn in (final_avg, mft, avg_incremental, bwt, forgetting, forgetting_last):
        fn(acc)
    np.testing.assert_array_equal(acc, acc_before)
    np.testing.assert_array_equal(zs, zs_before)


def test_integer_input_is_accepted_as_float() -> None:
    assert final_avg(np.array([[1, 0], [2, 3]], dtype=int)) == pytest.approx(2.5)


def test_metrics_module_does_not_import_heavy_libraries() -> None:
    import subprocess
    import sys

    code = ("import sys, cvqa_bench.metrics; "
            "print(sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
