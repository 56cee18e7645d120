"""The scorer registry, ``get_scorer`` and the input checks shared by every scorer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cvqa_bench.registry import UnknownNameError
from cvqa_bench.scoring import get_scorer, scorers

NAMES = ["anls", "choice", "contains", "exact", "grounding", "vqa", "vqa_evalai"]
# The `official` protocol's scorers (tests/scoring/test_official_scorers.py); not in NAMES, because
# imagenet_official scores an empty prediction 1 by design.
OFFICIAL_NAMES = ["exact_official", "exact_official_gqa", "exact_official_ocrvqa", "grounding_official",
                  "imagenet_official", "scienceqa_official"]
# UCIT / MLLM-CL / TriGap scorers (tests/scoring/test_benchmark_rules.py, test_caption_scorers.py, test_judge.py)
BENCHMARK_NAMES = ["ai2d_official", "anls_prism", "app_official", "bleu4", "caption_official", "cider", "finvis_official",
                   "mathvista_judge", "mathvista_rule", "meteor", "numeric", "ocrbench_official", "pvqa_official",
                   "rouge_l", "sat_official", "sci_official"]
# A valid gold answer per scorer, for the malformed-input tests below.
GOLD = {
    "anls": "yes", "choice": "A", "contains": "yes", "exact": "yes",
    "grounding": "[0.1, 0.1, 0.5, 0.5]", "vqa": "yes", "vqa_evalai": "yes",
}  # fmt: skip


def test_names_and_descriptions() -> None:
    assert scorers.names() == sorted(NAMES + OFFICIAL_NAMES + BENCHMARK_NAMES)
    descriptions = scorers.descriptions()
    assert all(descriptions[name] and "\n" not in descriptions[name] for name in NAMES + OFFICIAL_NAMES + BENCHMARK_NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_get_scorer_returns_named_scorer(name) -> None:
    scorer = get_scorer(name)
    assert scorer.name == name
    assert scorer.score(GOLD[name], GOLD[name]) == 1.0


def test_unknown_scorer_suggests_close_name() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'vqa_evalai'"):
        get_scorer("vqa_evalia")


def test_import_is_cheap() -> None:
    code = (
        "import sys; from cvqa_bench.scoring import get_scorer, scorers\n"
        "[get_scorer(n).score('a', 'A') for n in ('vqa', 'vqa_evalai', 'exact', 'contains', 'anls')]\n"
        "print(sorted(m for m in ('torch', 'numpy', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ([], "answers list is empty"),
        ((), "answers list is empty"),
        (None, "answers must be a string or a list of strings"),
        (7, "answers must be a string or a list of strings"),
        (b"yes", "answers must be a string or a list of strings"),
        (["yes", 3], "answer 1 must be a string"),
        ([None], "answer 0 must be a string"),
        (["yes", "  "], "answer 1 is blank"),
        ("", "answer 0 is blank"),
    ],
)
def test_malformed_answers_raise_value_error(name, answers, message) -> None:
    with pytest.raises(ValueError, match=message):
        get_scorer(name).score("yes", answers)


@pytest.mark.parametrize("name", NAMES)
def test_none_prediction_scores_zero_and_non_string_raises(name) -> None:
    scorer = get_scorer(name)
    assert scorer.score(None, GOLD[name]) == 0.0
    with pytest.raises(ValueError, match="prediction must be a string"):
        scorer.score(3, GOLD[name])


@pytest.mark.parametrize("name", NAMES)
def test_score_many_checks_rows(name) -> None:
    scorer = get_scorer(name)
    with pytest.raises(ValueError, match="2 predictions but 1 answer"):
        scorer.score_many(["a", "b"], [GOLD[name]])
    with pytest.raises(ValueError, match="row 1: answers list is empty"):
        scorer.score_many([GOLD[name], GOLD[name]], [GOLD[name], []])
    with pytest.raises(ValueError, match="not a single string"):
        scorer.score_many("abc", ["a", "b", "c"])
    assert scorer.score_many([GOLD[name], None], [GOLD[name], [GOLD[name]]]) == [1.0, 0.0]
    assert scorer.score_many([], []) == []


@pytest.mark.parametrize("name", NAMES)
def test_scorers_do_not_mutate_inputs(name) -> None:
    predictions = [f" {GOLD[name]}.\n", None]
    answers = [[GOLD[name], f"{GOLD[name]} "], [GOLD[name]]]
    before = (list(predictions), [list(a) for a in answers])
    scorer = get_scorer(name)
    scorer.score(predictions[0], answers[0])
    scorer.score_many(predictions, answers)
    assert (predictions, answers) == before
