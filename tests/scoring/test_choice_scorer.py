"""``choice``: the ScienceQA option letter, from the prediction and from the gold answer."""

from __future__ import annotations

import pytest

from cvqa_bench.scoring import get_scorer
from cvqa_bench.scoring.choice import parse_choice


@pytest.mark.parametrize(
    ("prediction", "letter"),
    [
        ("B", "B"),
        (" b ", "B"),  # a bare letter, any case
        ("E.", "E"),
        ("B. the cell wall", "B"),
        ("C) mitochondria", "C"),
        ("(D) chloroplast", "D"),
        ("The answer is C.", "C"),  # first single capital-letter word
        ("Answer: (D)", "D"),
        ("I think A cat", "A"),  # "I" is not an option letter; CoIN also reads the article "A"
        ("F", None),  # not an option
        ("BC", None),
        ("the answer is b", None),  # inside a sentence only capitals count
        ("Because", None),
        ("", None),
    ],
)
def test_parse_choice(prediction, letter) -> None:
    assert parse_choice(prediction) == letter


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("B", "B", 1.0),
        ("B. the cell wall", "B", 1.0),
        ("The answer is C.", "C. mitochondria", 1.0),  # gold written "X. text"
        ("The answer is C.", "B. the cell wall", 0.0),
        ("A", "B) text", 0.0),
        ("D", ["A", "D"], 1.0),
        ("no idea", "A", 0.0),
        (None, "A", 0.0),
        ("", "A", 0.0),
    ],
)
def test_choice(prediction, answers, expected) -> None:
    assert get_scorer("choice").score(prediction, answers) == expected


@pytest.mark.parametrize("gold", ["F", "Cell wall", "1", "b"])
def test_choice_rejects_gold_without_letter(gold) -> None:
    with pytest.raises(ValueError, match="not an option letter"):
        get_scorer("choice").score("B", gold)


def test_choice_score_many_names_the_bad_row() -> None:
    with pytest.raises(ValueError, match=r"row 1: .*not an option letter"):
        get_scorer("choice").score_many(["A", "B"], ["A", "the second"])
