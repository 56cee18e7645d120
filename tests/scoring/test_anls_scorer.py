"""``anls``: normalised Levenshtein similarity with threshold 0.5, worked by hand."""

from __future__ import annotations

import pytest

from cvqa_bench.scoring import get_scorer
from cvqa_bench.scoring.anls import levenshtein


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "abc", 0), ("flaw", "lawn", 2)],
)
def test_levenshtein(a, b, distance) -> None:
    assert levenshtein(a, b) == distance
    assert levenshtein(b, a) == distance


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("hello", "hello", 1.0),
        (" Hello ", "hello", 1.0),  # lowercase + strip
        ("helo", "hello", 0.8),  # 1 edit / max(4, 5) = 0.2 -> 0.8
        ("abcx", "abcd", 0.75),  # 1 / 4 -> 0.75
        ("abxy", "abcd", 0.0),  # 2 / 4 = 0.5 is not < 0.5 -> 0
        ("abc", "xyz", 0.0),
        ("helo", ["world", "hello"], 0.8),  # best answer
        ("", "hello", 0.0),
        (None, "hello", 0.0),
    ],
)
def test_anls(prediction, answers, expected) -> None:
    assert get_scorer("anls").score(prediction, answers) == pytest.approx(expected)
