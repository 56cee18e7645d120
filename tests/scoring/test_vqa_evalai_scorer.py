"""Parity of ``vqa_evalai`` with the EvalAI / TextVQA processor (LLaVA m4c_evaluator), worked by hand.

Leave-one-out with n = 10 and m matching answers: m=0 -> 0, m=1 -> 0.3, m=2 -> 0.6, m=3 -> 0.9,
m>=4 -> 1.0 (see test_vqa_scorer.py for the arithmetic). Unlike ``vqa`` it always normalises.
"""

from __future__ import annotations

import pytest

from cvqa_bench.scoring import get_scorer
from cvqa_bench.scoring.vqa_text import evalai_normalize

OTHERS = ["cat", "dog", "bird", "fish", "cow", "pig", "hen", "fox", "owl"]

CASES = [
    # always normalises, even when all answers agree (vqa gives 0 for these three)
    ("identical answers, case differs", "Yes", ["yes"] * 10, 1.0),
    ("identical answers, trailing period", "yes.", ["yes"] * 10, 1.0),
    ("\\n and \\t stripped", "\n Yes \t", ["yes"] * 10, 1.0),
    ("m=2 of 10", "no", ["yes"] * 8 + ["no"] * 2, 0.6),
    ("m=1 of 10", "cat", OTHERS + ["sun"], 0.3),
    ("m=3 of 10, answers normalised too", "red", ["Red."] * 3 + ["blue"] * 7, 0.9),
    ("m=0", "green", ["red"] * 10, 0.0),
    # every comma is deleted before the punctuation step
    ("1,000 -> 1000", "1,000", ["1000"] * 3 + ["1"] * 7, 0.9),
    ("red,blue -> redblue (vqa gives 1.0 here)", "red,blue", ["red blue"] * 4 + ["red"] * 6, 0.0),
    ("question mark deleted", "red?", ["red"] + OTHERS, 0.3),
    # 's is split off before contractions are looked up
    ("What's -> what 's, answers whats -> what's: no match", "What's", ["whats"] * 3 + ["no"] * 7, 0.0),
    ("What's matches what's (both -> what 's)", "What's", ["what's"] * 3 + ["no"] * 7, 0.9),
    ("dont -> don't, m=2", "dont", ["don't"] * 2 + ["no"] * 8, 0.6),
    ("number word and article", "The Two dogs", ["2 dogs"] * 4 + ["dogs"] * 6, 1.0),
    ("articles dropped", "The Eiffel Tower", ["eiffel tower"] * 3 + ["tower"] * 7, 0.9),
    ("hyphen -> space", "T-Shirt", ["t shirt"] * 3 + ["shirt"] * 7, 0.9),
    ("32 periods removed", "yes" + "." * 32, ["yes"] * 10, 1.0),
    ("40 periods: 8 survive the count=32 quirk", "yes" + "." * 40, ["yes"] * 10, 0.0),
    # n=3, m=2: (1/3 + 1/3 + 2/3) / 3 = 4/9
    ("3 answers, m=2", "YES", ["yes", "Yes", "no"], 4 / 9),
    ("single answer, equal after normalising", "YES.", "yes", 1.0),
    ("single answer, different", "no", ["yes"], 0.0),
    ("None prediction", None, ["yes"] * 10, 0.0),
    ("blank prediction", "  ", ["yes"] * 10, 0.0),
]


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_vqa_evalai_matches_evalai_rule(prediction, answers, expected) -> None:
    assert get_scorer("vqa_evalai").score(prediction, answers) == pytest.approx(expected, abs=1e-12)


def test_evalai_normalize_steps() -> None:
    assert evalai_normalize("  The Two, Dogs?\n") == "2 dogs"
    assert evalai_normalize("Ten (10) apples!") == "10 10 apples"


def test_vqa_evalai_score_many_equals_hand_values_and_score() -> None:
    scorer = get_scorer("vqa_evalai")
    predictions = [case[1] for case in CASES]
    answers = [case[2] for case in CASES]
    many = scorer.score_many(predictions, answers)
    assert many == pytest.approx([case[3] for case in CASES], abs=1e-12)
    assert many == [scorer.score(p, a) for p, a in zip(predictions, answers)]


def test_vqa_evalai_does_not_mutate_answers() -> None:
    answers = ["Yes.", "yes", "no"]
    get_scorer("vqa_evalai").score_many(["yes"], [answers])
    assert answers == ["Yes.", "yes", "no"]
