"""``grounding``: box parsing (CoIN's dropped-character bug fixed) and IoU > 0.5, worked by hand."""

from __future__ import annotations

import pytest

from cvqa_bench.scoring import get_scorer
from cvqa_bench.scoring.grounding import box_iou, parse_box

GOLD = "[0.1, 0.1, 0.5, 0.5]"  # 0.4 x 0.4, area 0.16


def test_box_iou_by_hand() -> None:
    # inter = 0.4 * 0.3 = 0.12; union = 0.16 + 0.12 - 0.12 = 0.16 -> 0.75
    assert box_iou((0.1, 0.1, 0.5, 0.4), (0.1, 0.1, 0.5, 0.5)) == pytest.approx(0.75)
    # inter = 0.2 * 0.4 = 0.08; union = 0.16 + 0.16 - 0.08 = 0.24 -> 1/3
    assert box_iou((0.3, 0.1, 0.7, 0.5), (0.1, 0.1, 0.5, 0.5)) == pytest.approx(1 / 3)
    assert box_iou((0.0, 0.0, 0.2, 0.2), (0.5, 0.5, 1.0, 1.0)) == 0.0  # disjoint
    assert box_iou((0.3, 0.3, 0.3, 0.3), (0.3, 0.3, 0.3, 0.3)) == 0.0  # empty union


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        (GOLD, 1.0),
        ("[0.1,0.1,0.5,0.5]", 1.0),  # no spaces
        ("The box is [ 0.1 , 0.1, 0.5 , 0.5 ].", 1.0),  # inside text
        ("[0.1, 0.1, 0.5, 0.4]", 1.0),  # IoU 0.75
        ("[0.3, 0.1, 0.7, 0.5]", 0.0),  # IoU 1/3
        ("[0.1, 0.1, 0.5]", 0.0),  # three numbers
        ("[0.1, 0.1, 0.5, 0.5, 0.6]", 0.0),  # five numbers
        ("[a, b, c, d]", 0.0),
        ("[nan, 0.1, 0.5, 0.5]", 0.0),
        ("[0.5, 0.1, 0.1, 0.5]", 0.0),  # x2 < x1
        ("[0.1, 0.5, 0.5, 0.1]", 0.0),  # y2 < y1
        ("[0.1, 0.1, 1.5, 0.5]", 0.0),  # outside [0, 1]
        ("[-0.1, 0.1, 0.5, 0.5]", 0.0),
        ("0.1, 0.1, 0.5, 0.5", 0.0),  # no brackets
        ("", 0.0),
        (None, 0.0),
    ],
)
def test_grounding(prediction, expected) -> None:
    assert get_scorer("grounding").score(prediction, GOLD) == expected


def test_grounding_iou_exactly_half_is_wrong() -> None:
    # inter = 0.5 * 1 = 0.5; union = 0.5 + 1 - 0.5 = 1 -> IoU 0.5, not > 0.5
    assert get_scorer("grounding").score("[0, 0, 0.5, 1]", "[0, 0, 1, 1]") == 0.0


def test_grounding_reads_the_last_coordinate_whole() -> None:
    # CoIN's parser read "0.1]" as "0." -> y2 = 0 -> a flat box with IoU 0; the fixed one gets 1.0.
    assert parse_box("[0.0, 0.0, 0.1, 0.1]") == (0.0, 0.0, 0.1, 0.1)
    assert get_scorer("grounding").score("[0.0, 0.0, 0.1, 0.1]", "[0.0, 0.0, 0.1, 0.1]") == 1.0


def test_grounding_any_gold_box() -> None:
    assert get_scorer("grounding").score(GOLD, ["[0.6, 0.6, 0.9, 0.9]", GOLD]) == 1.0


@pytest.mark.parametrize("gold", ["[0.1, 0.1, 0.5]", "box", "[0.5, 0.5, 0.1, 0.1]"])
def test_grounding_rejects_malformed_gold(gold) -> None:
    with pytest.raises(ValueError, match="grounding answer"):
        get_scorer("grounding").score(GOLD, gold)
