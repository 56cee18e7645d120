"""The official rules of MLLM-CL / MCITlib / Prism / UCIT scripts on hand-made tables, and the protocol table.

Every expected value below is worked out by hand from the script's code path (named per test); the same
rules agreed with the scripts themselves, run on 200 random cases each (docs/benchmarks.md).
"""

from __future__ import annotations

import pytest

from cvqa_bench.scoring import get_scorer
from cvqa_bench.scoring import mathvista as mv
from cvqa_bench.scoring.mcit_rules import ai2d_right, anls_prism, finvis_right, ocrbench_right, pvqa_right, sat_right, sci_score
from cvqa_bench.scoring.protocol import scorer_for


@pytest.mark.parametrize(("pred", "gt", "right"), [
    ("Yes", "yes", True),                 # lower-cased, one word against one word: "yes" in "yes"
    ("nothing", "no", True),              # one-word prediction: a plain substring ("no" in "nothing")
    ("not at all", "no", False),          # several words: " no", "no ", "no.", "no," are all absent
    ("it is no.", "no", True),            # " no" present
    ("the answer is c.", "C.", True),     # one-word gold loses its periods: "c", then " c" present
    ("a big harbor", "big harbor", True),  # multi-word gold: plain substring
    ("Unanswerable, no", "no", False),    # skipped by the script, counted in the total
])
def test_ai2d_official(pred: str, gt: str, right: bool) -> None:  # eval_ai2d.py
    assert ai2d_right(pred, gt) is right


@pytest.mark.parametrize(("rule", "pred", "gt", "right"), [
    (pvqa_right, "Not sure", "no", True),       # eval_pvqa.py: "no" in "not sure"
    (pvqa_right, "Unanswerable", "unanswerable", False),
    (finvis_right, "B.", "b", True),            # eval_finvis.py: "b." -> "b"
    (finvis_right, "Yes it is", "yes", False),  # "yesitis" != "yes"
    (finvis_right, "(A)", "A", False),          # parentheses stay: "(a)" != "a"
    (sat_right, "The answer is (C).", "(C)", True),  # eval_sat.py: "(c)" in "theansweris(c)"
    (sat_right, "12", "2", True),               # a substring: 2 in 12
])
def test_mllm_cl_substring_rules(rule, pred: str, gt: str, right: bool) -> None:
    assert rule(pred, gt) is right


def test_sci_official_by_image_source_and_question() -> None:  # eval_sci.py
    assert sci_score("Lungs", "lungs", "images/AI2D_12.png", "What organ?") == 1.0
    assert sci_score("the lungs", "lungs", "images/TQA_3.png", "What organ?") == 0.0   # exact for TQA
    assert sci_score("the lungs", "lungs", "images/MapQA_3.png", "What organ?") == 1.0  # containment else
    # "Which states": the fraction of gold states found among the prediction's comma-separated items,
    # without stripping: " ohio" (with its space) is not "ohio"
    assert sci_score("texas, ohio", "texas,ohio", "images/MapQA_1.png", "Which states are red?") == 0.5
    assert sci_score("texas,ohio,utah", "texas,ohio", "images/MapQA_1.png", "Which states are red?") == 1.0


def test_ocrbench_official_handwritten_math_is_case_sensitive_without_spaces() -> None:  # eval_ocr.py
    hme = "Handwritten Mathematical Expression Recognition"
    assert ocrbench_right("x ^ { 2 } + 1", ["x^{2}+1"], hme)
    assert not ocrbench_right("X^{2}+1", ["x^{2}+1"], hme)
    assert ocrbench_right("it says STOP here", ["stop"], "Regular Text Recognition")
    assert ocrbench_right("exit", ["STOP", "Exit"], "Scene Text-centric VQA")  # any gold of the list


def test_anls_prism_has_no_threshold_and_the_corrected_one_has() -> None:  # Prism eval_ucit.py anls_single
    # "INV-001" vs "INV-991": distance 2 over 7 characters -> 1 - 2/7 = 5/7; "abcd" vs "wxcd": 1 - 2/4
    assert anls_prism("INV-991", ["INV-001"]) == pytest.approx(5 / 7)
    assert anls_prism("abcd", ["wxcd"]) == pytest.approx(0.5)
    # "abcde" vs "vwxye": distance 4 of 5 -> 0.2 here; the standard ANLS zeroes a distance >= 0.5
    assert anls_prism("abcde", ["vwxye"]) == pytest.approx(0.2)
    assert get_scorer("anls").score("abcde", ["vwxye"]) == 0.0


def test_numeric_reads_the_first_number() -> None:
    numeric = get_scorer("numeric")
    assert numeric.score("There are 3 objects left.", "3") == 1.0
    assert numeric.score("three", "3") == 1.0
    assert numeric.score("3.0", "3") == 1.0
    assert numeric.score("13", "3") == 0.0
    assert get_scorer("exact_official").score("3.", "3") == 0.0  # UCIT's eval_deepseek_r1.py: upper() equality


MC = {"question_type": "multi_choice", "answer_type": "text", "choices": "['circle', 'square']", "answer_option": "B"}
INT = {"question_type": "free_form", "answer_type": "integer", "choices": "[]", "answer_option": ""}


@pytest.mark.parametrize(("response", "row", "answer", "official", "corrected"), [
    ("B", MC, "square", True, True),
    ("The answer is (B) square.", MC, "square", True, True),
    ("square", MC, "square", True, True),       # can_infer_text: the only option text in the answer
    ("A or B", MC, "square", False, False),     # two letters: nothing inferred
    ("4", INT, "4", True, True),
    ("4.0", INT, "4", False, True),             # int('4.0') fails officially
    ("The shape has 4 sides", INT, "4", False, False),
    ("square", {**INT, "answer_type": "text"}, "square", False, True),  # official text rows: str(None)
])
def test_mathvista_checks(response: str, row: dict, answer: str, official: bool, corrected: bool) -> None:
    assert mv.official_right(response, row, answer) is official   # eval_math.py post_check
    assert mv.rule_right(response, row, answer) is corrected


def test_judge_prompt_is_the_official_one() -> None:
    # SHA-256 of build_mathvista_gpt4_prompt({'question': 'Q?', 'prediction': 'P'}) computed with
    # eval_math.py's own function (github bjzhb666/MLLM-CL); the prompt keeps its "respone" typo.
    import hashlib

    prompt = mv.judge_prompt("Q?", "P")
    assert prompt.endswith("Q?\nModel respone: PExtracted answer:")
    assert hashlib.sha256(prompt.encode()).hexdigest() == \
        "bf874974a276b6bb49ceb817b646ef2eed7919111258a67d7c41675c1c782953"


@pytest.mark.parametrize(("task", "corrected", "official"), [
    ("ImageNet-R", "exact", "exact_official"), ("CLEVR-Math", "numeric", "exact_official"),
    ("VizWiz-Caption", "cider", "caption_official"), ("Flickr30k", "cider", "caption_official"),
    ("RS", "contains", "ai2d_official"), ("Med", "contains", "pvqa_official"), ("Sci", "sci_official", "sci_official"),
    ("Fin", "exact", "finvis_official"), ("OCR", "ocrbench_official", "ocrbench_official"),
    ("Math", "mathvista_rule", "mathvista_judge"), ("VP", "contains", "sat_official"), ("APP", "choice", "app_official"),
    ("DocVQA", "anls", "anls_prism"), ("PMCVQA", "exact", "exact_official"),
])
def test_protocol_table_of_the_other_benchmarks(task: str, corrected: str, official: str) -> None:
    assert scorer_for("corrected", task, corrected) == corrected
    assert scorer_for("official", task, corrected) == official


def test_context_scorer_names_the_missing_field() -> None:
    with pytest.raises(ValueError, match="row 0: scorer 'ocrbench_official' needs the field 'answer_type'"):
        get_scorer("ocrbench_official").score_corpus(["stop"], [["stop"]], [None])
