"""``exact`` (GQA / OCR-VQA / single-answer VQAv2) and ``contains`` (ImageNet: whole words of the gold in the prediction)."""

from __future__ import annotations

import pytest

from cvqa_bench.scoring import get_scorer


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("red", "red", 1.0),
        ("Red.", "red", 1.0),  # case and trailing period ignored
        ("  RED...  ", ["red"], 1.0),  # every trailing period and surrounding whitespace
        ("red", "Red.", 1.0),  # the gold side gets the same treatment
        ("blue", ["red", "Blue"], 1.0),  # any of the answers
        ("red car", "red", 0.0),  # no containment
        ("r.ed", "red", 0.0),  # only trailing periods go
        ("", "red", 0.0),
        (None, "red", 0.0),
        ("...", "red", 0.0),
    ],
)
def test_exact(prediction, answers, expected) -> None:
    assert get_scorer("exact").score(prediction, answers) == expected


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("a golden retriever", "golden retriever", 1.0),  # gold in prediction
        ("retriever, golden.", "golden retriever", 1.0),  # the gold's words, in any order
        ("  Golden Retriever ", "golden retriever", 1.0),  # case-folded
        ("tabby cat", ["dog", "cat"], 1.0),  # any answer
        ("retriever", "golden retriever", 0.0),  # a part of the gold is not the gold
        ("c", "circle", 0.0),  # CoIN's `pred in gold` credited this (issue 31)
        ("circ", "circle", 0.0),
        ("circles", "circle", 0.0),  # whole words only
        ("concatenate", "cat", 0.0),  # CoIN's `gold in pred` credited this
        ("it is a circle", "circle", 1.0),
        ("cat", "dog", 0.0),
        ("", "dog", 0.0),  # CoIN counted this as right ("" in gold)
        ("   ", "dog", 0.0),
        (None, "dog", 0.0),
    ],
)
def test_contains(prediction, answers, expected) -> None:
    assert get_scorer("contains").score(prediction, answers) == expected
