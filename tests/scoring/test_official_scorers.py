"""The ``official`` protocol: each CoIN evaluation quirk, scored next to the corrected scorer.

Expected values are worked out by hand from the official scripts (zackschen/CoIN
``ETrain/Eval/LLaVA/CoIN/eval_*.py``, the same code as JingyangQiao/CoIN ``llava/eval/CoIN/``).
"""

from __future__ import annotations

import pytest

from cvqa_bench.scoring import get_scorer, scorers
from cvqa_bench.scoring.official_parsers import (
    official_choice,
    official_gold_box,
    official_predicted_box,
)
from cvqa_bench.scoring.protocol import (
    COIN_OFFICIAL_SCORERS,
    OFFICIAL_BY_KIND,
    PROTOCOLS,
    official_scorer,
    scorer_for,
)

OFFICIAL_NAMES = [
    "exact_official", "exact_official_gqa", "exact_official_ocrvqa", "grounding_official",
    "imagenet_official", "scienceqa_official",
]  # fmt: skip


def both(official: str, corrected: str, prediction: str | None, answers) -> tuple[float, float]:
    """(official score, corrected score) of one prediction."""
    return (
        get_scorer(official).score(prediction, answers),
        get_scorer(corrected).score(prediction, answers),
    )


# --- registry -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OFFICIAL_NAMES)
def test_official_scorers_are_registered_lazily_with_a_description(name) -> None:
    assert name in scorers.names()
    assert scorers.descriptions()[name].startswith("CoIN ")
    assert get_scorer(name).name == name


# --- ImageNet: eval_ImagetNet.py --------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "answers", "official", "corrected"),
    [
        ("", "goldfish", 1.0, 0.0),  # "" is in every string: the empty-prediction bug
        (None, "goldfish", 1.0, 0.0),  # None is the empty prediction
        ("Goldfish", "goldfish", 0.0, 1.0),  # official is case-sensitive
        ("a goldfish", "goldfish", 1.0, 1.0),  # gold in prediction
        ("gold", "goldfish", 1.0, 0.0),  # prediction in gold: official only (corrected wants whole words)
        ("c", "circle", 1.0, 0.0),  # a single letter credited by `pred in gold` (issue 31)
        ("shark", ["goldfish", "carp"], 0.0, 0.0),
        ("carp", ["goldfish", "carp"], 1.0, 1.0),
    ],
)
def test_imagenet_official_containment(prediction, answers, official, corrected) -> None:
    assert both("imagenet_official", "contains", prediction, answers) == (official, corrected)


# --- Grounding: eval_grounding.py -------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "box"),
    [
        ("[0.1, 0.1, 0.5, 0.39]", (0.1, 0.1, 0.5, 0.3)),  # last digit of y2 lost
        ("[0.1, 0.1, 0.5, 0.5]", (0.1, 0.1, 0.5, 0.0)),  # one-decimal y2 becomes 0
        ("[0.1, 0.1, 0.5, 0.5].", (0.1, 0.1, 0.5, 0.5)),  # the period is dropped instead
        ("0.12, 0.2, 0.3, 0.45", (0.12, 0.2, 0.3, 0.4)),  # no brackets: same slicing
        ("[1.0, 0.1, 0.5, 0.55]", (0.0, 0.1, 0.5, 0.5)),  # x1 loses its first character
        ("[0, 0, 0.5, 0.5]", None),  # x1 "0" becomes "": not a float
        ("The box is [0.1, 0.1, 0.5, 0.5]", None),
        ("[0.1, 0.1, 0.5]", None),
        ("[0.1, 0.1, 0.5, 0.5, 0.75]", None),
    ],
)
def test_official_box_parser(prediction, box) -> None:
    assert official_predicted_box(prediction) == box


@pytest.mark.parametrize(
    ("prediction", "gold", "official", "corrected"),
    [
        # official reads y2 = 0.3: IoU 0.08 / 0.2 = 0.4; corrected 0.116 / 0.2 = 0.58
        ("[0.1, 0.1, 0.5, 0.39]", "[0.1, 0.1, 0.5, 0.6]", 0.0, 1.0),
        # official reads y2 = 0.2, the gold box itself: IoU 1; corrected 0.02 / 0.056 = 0.357
        ("[0.1, 0.15, 0.5, 0.29]", "[0.1, 0.15, 0.5, 0.2]", 1.0, 0.0),
        # official reads y2 = 0.5: IoU 1; corrected 0.16 / 0.18 = 0.889: both right
        ("[0.1, 0.1, 0.5, 0.55]", "[0.1, 0.1, 0.5, 0.5]", 1.0, 1.0),
        # the exact gold box with one decimal: official y2 = 0, an empty box
        ("[0.1, 0.1, 0.5, 0.5]", "[0.1, 0.1, 0.5, 0.5]", 0.0, 1.0),
        ("[0.1, 0.1, 0.5, 0.5].", "[0.1, 0.1, 0.5, 0.5]", 1.0, 1.0),
        # no range check officially: y2 = 1.1 gives IoU 0.32 / 0.4 = 0.8; corrected rejects the box
        ("[0.1, 0.1, 0.5, 1.1].", "[0.1, 0.1, 0.5, 0.9]", 1.0, 0.0),
        # IoU exactly 0.25 / 0.5 = 0.5 in binary floats: not > 0.5 under either
        ("[0.0, 0.0, 0.5, 1.00]", "[0.0, 0.0, 0.5, 0.5]", 0.0, 0.0),
        ("The box is [0.1, 0.1, 0.5, 0.55]", "[0.1, 0.1, 0.5, 0.5]", 0.0, 1.0),
        ("[0.6, 0.6, 0.9, 0.95]", "[0.1, 0.1, 0.5, 0.5]", 0.0, 0.0),
    ],
)
def test_grounding_official_iou(prediction, gold, official, corrected) -> None:
    assert both("grounding_official", "grounding", prediction, gold) == (official, corrected)


def test_grounding_official_gold_is_read_whole_and_must_be_a_box() -> None:
    assert official_gold_box("[0.1, 0.15, 0.5, 0.25]") == (0.1, 0.15, 0.5, 0.25)
    with pytest.raises(ValueError, match="is not a box"):
        get_scorer("grounding_official").score("[0.1, 0.1, 0.5, 0.55]", "[0.1, 0.1, 0.5]")
    with pytest.raises(ValueError, match="is not a box"):
        get_scorer("grounding_official").score("[0.1, 0.1, 0.5, 0.55]", "the dog")


# --- ScienceQA: eval_science_qa.py ------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "letter"),
    [
        ("B", "B"),
        ("B. the cell wall", "B"),
        ("b", "B"),  # first one-character word, uppercased
        ("answer: c", "C"),
        ("The answer is (B).", "B"),
        ("I think B", "I"),
        ("don't know, B", "T"),
        ("2", "2"),
        ("", "FAILED"),
        ("none of them", "FAILED"),
    ],
)
def test_official_choice_extraction(prediction, letter) -> None:
    assert official_choice(prediction) == letter


@pytest.mark.parametrize(
    ("prediction", "gold", "official", "corrected"),
    [
        ("B", "B", 1.0, 1.0),
        ("B. the cell wall", "B. the cell wall", 1.0, 1.0),
        ("I think B", "B", 0.0, 1.0),
        ("don't know, B", "B", 0.0, 1.0),
        ("answer: c", "C", 1.0, 0.0),
        ("A cat", "A", 1.0, 1.0),
        ("2", "B", 0.0, 0.0),
        ("", "B", 0.0, 0.0),  # FAILED is never an option: no random guess
        (None, "B", 0.0, 0.0),
    ],
)
def test_scienceqa_official(prediction, gold, official, corrected) -> None:
    assert both("scienceqa_official", "choice", prediction, gold) == (official, corrected)


# --- VizWiz / VQAv2 (eval_vizwiz.py, eval_vqav2.py), GQA, OCR-VQA --------------------------------


@pytest.mark.parametrize(
    ("prediction", "answers", "official", "corrected"),
    [
        ("yes.", "yes", 0.0, 1.0),  # no period stripping
        ("yes ", "yes", 0.0, 1.0),  # no whitespace stripping
        ("Yes", "yes", 1.0, 1.0),
        ("straße", "STRASSE", 1.0, 0.0),  # upper() folds ß to SS, lower() does not
        ("no", ["yes", "No"], 1.0, 1.0),
        ("", "yes", 0.0, 0.0),
    ],
)
def test_exact_official_vizwiz_vqav2(prediction, answers, official, corrected) -> None:
    assert both("exact_official", "exact", prediction, answers) == (official, corrected)


@pytest.mark.parametrize(
    ("prediction", "answers", "official", "corrected"),
    [
        ("Yes.", "yes", 1.0, 1.0),  # prediction: rstrip('.') then lower()
        ("no...", "no", 1.0, 1.0),
        ("yes. ", "yes", 0.0, 1.0),  # the space comes last, so the period stays
        (" yes", "yes", 0.0, 1.0),
        ("yes", "Yes", 0.0, 1.0),  # the gold answer is not lowercased
        ("left", ["right", "left"], 1.0, 1.0),
    ],
)
def test_exact_official_gqa(prediction, answers, official, corrected) -> None:
    assert both("exact_official_gqa", "exact", prediction, answers) == (official, corrected)


@pytest.mark.parametrize(
    ("prediction", "answers", "official", "corrected"),
    [
        ("Unanswerable", "Unanswerable", 0.0, 1.0),  # skipped, yet counted in the total
        ("The Unanswerable Question", "the unanswerable question", 0.0, 1.0),
        ("unanswerable", "unanswerable", 1.0, 1.0),  # the rule is case-sensitive
        ("Harry Potter", "harry potter", 1.0, 1.0),
        ("Harry Potter.", "harry potter", 0.0, 1.0),
        ("straße", "STRASSE", 0.0, 0.0),  # lower(), unlike VQAv2's upper()
    ],
)
def test_exact_official_ocrvqa(prediction, answers, official, corrected) -> None:
    assert both("exact_official_ocrvqa", "exact", prediction, answers) == (official, corrected)


def test_textvqa_official_is_vqa_evalai() -> None:
    # m4c TextVQAAccuracyEvaluator: "Coca-Cola." normalises to "coca cola", which 2 of 10
    # answers give: (2 * 1/3 + 8 * 2/3) / 10 = 0.6.
    name = scorer_for("official", "TextVQA", "vqa_evalai")
    answers = ["coca cola", "Coca Cola"] + ["pepsi"] * 8
    assert name == "vqa_evalai"
    assert get_scorer(name).score("Coca-Cola.", answers) == pytest.approx(0.6)


@pytest.mark.parametrize("name", OFFICIAL_NAMES)
def test_score_many_matches_score(name) -> None:
    golds = {"grounding_official": "[0.1, 0.1, 0.5, 0.5]", "scienceqa_official": "B"}
    gold = golds.get(name, "yes")
    predictions = ["[0.1, 0.1, 0.5, 0.55]", "B", "yes", "yes.", "", None]
    expected = [get_scorer(name).score(p, gold) for p in predictions]
    assert get_scorer(name).score_many(predictions, [gold] * len(predictions)) == expected


# --- scorer_for ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "corrected", "expected"),
    [
        ("ScienceQA", "choice", "scienceqa_official"),
        ("TextVQA", "vqa_evalai", "vqa_evalai"),
        ("ImageNet", "contains", "imagenet_official"),
        ("GQA", "exact", "exact_official_gqa"),
        ("VizWiz", "exact", "exact_official"),
        ("VizWiz", "vqa", "exact_official"),  # a CoIN task gets its script's rule, whatever the YAML
        ("Grounding", "grounding", "grounding_official"),
        ("VQAv2", "exact", "exact_official"),
        ("OCRVQA", "exact", "exact_official_ocrvqa"),
        ("OCR-VQA", "exact", "exact_official_ocrvqa"),
        ("mcq", "choice", "scienceqa_official"),
        ("color", "vqa", "vqa"),
        ("shape", "contains", "imagenet_official"),
        ("count", "exact", "exact_official"),
        ("position", "grounding", "grounding_official"),
        ("glyph", "exact", "exact_official"),
        ("docs", "anls", "anls"),
        ("signs", "vqa_evalai", "vqa_evalai"),
        ("mine", "exact_official_gqa", "exact_official_gqa"),
    ],
)
def test_scorer_for_official(task, corrected, expected) -> None:
    assert scorer_for("official", task, corrected) == expected
    assert official_scorer(task, corrected) == expected
    assert expected in scorers


@pytest.mark.parametrize(
    ("task", "corrected"), [("ImageNet", "contains"), ("VizWiz", "vqa"), ("mcq", "choice")]
)
def test_scorer_for_corrected_returns_the_yaml_scorer(task, corrected) -> None:
    assert scorer_for("corrected", task, corrected) == corrected


def test_every_mapped_scorer_is_registered() -> None:
    assert PROTOCOLS == ("official", "corrected")
    mapped = set(COIN_OFFICIAL_SCORERS.values()) | set(OFFICIAL_BY_KIND.values())
    assert mapped <= set(scorers.names())


def test_scorer_for_errors() -> None:
    expected = r"unknown scoring protocol 'paper'; expected one of: official, corrected"
    with pytest.raises(ValueError, match=expected):
        scorer_for("paper", "ImageNet", "contains")
    with pytest.raises(ValueError, match=r"task 'mine': scorer 'bleu' has no official version"):
        scorer_for("official", "mine", "bleu")
