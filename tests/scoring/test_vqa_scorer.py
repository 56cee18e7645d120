"""Parity of ``vqa`` with the official GT-Vision-Lab vqaEval.py, case by case, numbers worked by hand.

With n = 10 answers of which m equal the (processed) prediction, the leave-one-out score is
``[m * min(1, (m-1)/3) + (10-m) * min(1, m/3)] / 10``:
m=0 -> 0;  m=1 -> (0 + 9/3)/10 = 0.3;  m=2 -> (2/3 + 16/3)/10 = 0.6;  m=3 -> (2 + 7)/10 = 0.9;
m>=4 -> (m + 10 - m)/10 = 1.0.
"""

from __future__ import annotations

import pytest

from cvqa_bench.scoring import get_scorer
from cvqa_bench.scoring.vqa_text import process_digit_article, process_punctuation

OTHERS = ["cat", "dog", "bird", "fish", "cow", "pig", "hen", "fox", "owl"]  # 9 distinct fillers

CASES = [
    # --- all ten answers identical: no normalisation, the cleaned prediction must equal them
    ("identical, exact", "yes", ["yes"] * 10, 1.0),
    ("identical, case differs", "Yes", ["yes"] * 10, 0.0),
    ("identical, trailing period", "yes.", ["yes"] * 10, 0.0),
    ("identical, \\n and \\t stripped", "\n yes\t", ["yes"] * 10, 1.0),
    ("identical after answers are stripped", "Yes", ["yes"] * 9 + ["yes \n"], 0.0),
    ("answers with \\t stripped, all agree", "yes", ["\tyes"] * 10, 1.0),
    # --- answers differ: prediction and answers normalised; leave-one-out partial credit
    ("case differs, answers differ, m=9", "Yes", ["yes"] * 9 + ["no"], 1.0),
    ("m=2 of 10 (issue #1 example)", "no", ["yes"] * 8 + ["no"] * 2, 0.6),
    ("m=8 of 10", "yes", ["yes"] * 8 + ["no"] * 2, 1.0),
    ("m=1 of 10", "cat", OTHERS + ["sun"], 0.3),
    ("m=3 of 10", "red", ["red"] * 3 + ["blue"] * 7, 0.9),
    ("m=0 of 10", "green", ["red"] * 3 + ["blue"] * 7, 0.0),
    ("answers lowercased when normalised, m=3", "yes", ["Yes"] * 3 + ["no"] * 7, 0.9),
    # --- number words
    ("number word two -> 2, m=3", "Two", ["2"] * 3 + ["3"] * 7, 0.9),
    ("none -> 0, m=4", "none", ["0"] * 4 + ["1"] * 6, 1.0),
    ("zero matches answers 'none' (both -> 0), m=2", "zero", ["none"] * 2 + ["1"] * 8, 0.6),
    ("ten -> 10, m=1", "ten", ["10"] + OTHERS, 0.3),
    ("number word inside a phrase", "two  dogs", ["2 dogs"] * 3 + ["dogs"] * 7, 0.9),
    # --- articles
    ("article 'the' dropped, m=5", "the dog", ["dog"] * 5 + ["cat"] * 5, 1.0),
    ("article 'A' dropped after lowercasing", "A Dog", ["dog"] * 5 + ["cat"] * 5, 1.0),
    ("article 'an' dropped, m=2", "an apple", ["apple"] * 2 + ["pear"] * 8, 0.6),
    ("answer that is only an article normalises to ''", "A", ["a"] * 3 + ["b"] * 7, 0.9),
    # --- contractions (the official table, lowercase keys only)
    ("dont -> don't, m=3", "dont", ["don't"] * 3 + ["no"] * 7, 0.9),
    ("whats -> what's, m=4", "whats", ["what's"] * 4 + ["no"] * 6, 1.0),
    ("key 'Im' never matches after lowercasing", "im", ["i'm"] * 4 + ["no"] * 6, 0.0),
    # --- punctuation
    ("digit-comma-digit: punctuation deleted, 1,000 -> 1000", "1,000", ["1000"] * 3 + ["1"] * 7, 0.9),
    ("comma not touching space or digits -> space", "red,blue", ["red blue"] * 4 + ["red"] * 6, 1.0),
    ("comma before a space is deleted", "red, blue", ["red blue"] * 4 + ["red"] * 6, 1.0),
    ("hyphen -> space", "t-shirt", ["t shirt"] * 3 + ["shirt"] * 7, 0.9),
    ("slash -> space", "cat/dog", ["cat dog"] * 4 + ["cat"] * 6, 1.0),
    ("digit-comma-digit elsewhere deletes the slash", "ab/cd 1,2", ["abcd 12"] * 3 + ["x"] * 7, 0.9),
    ("brackets -> spaces, then whitespace collapses", "(yes)", ["yes"] * 4 + ["no"] * 6, 1.0),
    ("question mark after a space is deleted", "yes ?", ["yes"] * 4 + ["no"] * 6, 1.0),
    ("colon is not in the official list", "yes:", ["yes"] * 4 + ["no"] * 6, 0.0),
    # --- periods
    ("trailing period removed when normalising, m=3", "yes.", ["yes"] * 3 + ["no"] * 7, 0.9),
    ("period before a digit is kept", "2.5", ["2.5"] * 3 + ["2"] * 7, 0.9),
    ("32 periods: all removed", "yes" + "." * 32, ["yes"] * 5 + ["no"] * 5, 1.0),
    ("33 periods: one survives the count=32 quirk", "yes" + "." * 33, ["yes"] * 5 + ["no"] * 5, 0.0),
    ("40 periods: 8 survive", "yes" + "." * 40, ["yes"] * 5 + ["no"] * 5, 0.0),
    # answers with 40 periods keep 8 too, so a 40-period prediction matches them (m=3) ...
    ("40 vs 40 periods match", "yes" + "." * 40, ["yes" + "." * 40] * 3 + ["no"] * 7, 0.9),
    # ... and a prediction with 8 periods loses all 8: "yes" != "yes........"
    ("8 vs 40 periods differ", "yes" + "." * 8, ["yes" + "." * 40] * 3 + ["no"] * 7, 0.0),
    # --- fewer than 10 answers: same leave-one-out formula over what is given
    # n=3, m=2: j=yes -> 1 other match -> 1/3 (twice); j=no -> 2 -> 2/3; (1/3+1/3+2/3)/3 = 4/9
    ("3 answers, m=2", "yes", ["yes", "yes", "no"], 4 / 9),
    # n=2, identical, m=2: each j sees 1 other match -> 1/3; mean 1/3
    ("2 identical answers", "yes", ["yes", "yes"], 1 / 3),
    # --- one answer: equality after the same processing (none, since one answer always agrees)
    ("single answer string, equal", "yes", "yes", 1.0),
    ("single answer list, equal after strip", " yes\n", ["yes"], 1.0),
    ("single answer, case differs", "Yes", "yes", 0.0),
    ("single answer, different", "no", "yes", 0.0),
    # --- empty predictions
    ("None prediction", None, ["yes"] * 10, 0.0),
    ("empty prediction", "", ["yes"] * 5 + ["no"] * 5, 0.0),
    ("whitespace-only prediction", " \n\t ", ["yes"] * 10, 0.0),
]


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_vqa_matches_official_rule(prediction, answers, expected) -> None:
    assert get_scorer("vqa").score(prediction, answers) == pytest.approx(expected, abs=1e-12)


def test_process_punctuation_steps() -> None:
    # "," touches a space -> deleted; "-" touches no space and no digit,digit -> space.
    assert process_punctuation("red, t-shirt") == "red t shirt"
    # A digit,digit anywhere deletes every mark, even one that would otherwise become a space.
    assert process_punctuation("t-shirt 1,5") == "tshirt 15"
    # Periods: removed unless followed by a digit.
    assert process_punctuation("3.5 m.") == "3.5 m"
    assert process_punctuation("." * 35) == "..."  # 35 - 32 = 3 survive


def test_process_digit_article_steps() -> None:
    assert process_digit_article("The  Two dogs DONT") == "2 dogs don't"
    assert process_digit_article("an a the") == ""
    # Official quirk: "somebody'd" maps backwards to "somebodyd".
    assert process_digit_article("somebody'd") == "somebodyd"


def test_vqa_does_not_mutate_answers() -> None:
    answers = ["Yes.", "yes", " no\n"]
    before = list(answers)
    get_scorer("vqa").score("Yes", answers)
    get_scorer("vqa").score_many(["Yes"], [answers])
    assert answers == before


def test_vqa_score_many_gives_the_hand_values() -> None:
    rows = [case for case in CASES if case[1] is not None]
    scores = get_scorer("vqa").score_many([r[1] for r in rows], [r[2] for r in rows])
    assert scores == pytest.approx([r[3] for r in rows], abs=1e-12)


def test_vqa_score_many_equals_score_bit_for_bit() -> None:
    scorer = get_scorer("vqa")
    predictions = [case[1] for case in CASES]
    answers = [case[2] for case in CASES]
    assert scorer.score_many(predictions, answers) == [
        scorer.score(p, a) for p, a in zip(predictions, answers)
    ]
