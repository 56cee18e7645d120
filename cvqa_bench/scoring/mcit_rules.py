"""The per-answer rules of the MLLM-CL, MCITlib and Prism scripts, quirks included, and two corrected rules.

Each ``*_right`` function is the decision of one official script for one row, on strings; the scorers
wrap them. Scripts (same text in github bjzhb666/MLLM-CL ``ETrain/Eval/LLaVA/CoIN/`` and Ghy0501/MCITlib
``*/llava/eval/CoIN/``):

==================  =================  ================================================================
scorer              script             rule
==================  =================  ================================================================
``ai2d_official``   ``eval_ai2d.py``   RS, AD (and MLLM-CL's APP predictions): see :func:`ai2d_right`
``pvqa_official``   ``eval_pvqa.py``   Med: ``gt.lower() in pred.lower()``
``finvis_official`` ``eval_finvis.py`` Fin: ``pred.lower()`` without spaces and periods ``== gt.lower()``
``sci_official``    ``eval_sci.py``    Sci: exact for AI2D/TQA/VQA/SciVerse images, MapQA containment or
                                       the fraction of listed states (needs the row's image and text)
``sat_official``    ``eval_sat.py``    VP (CV-Bench): both squashed (lower, no spaces/newlines/periods),
                                       ``gt in pred``
``ocrbench_official`` ``eval_ocr.py``  OCR (OCRBench): any gold contained in the prediction, lower-cased;
                                       handwritten-math rows case-sensitive without spaces (needs
                                       ``answer_type``)
``app_official``    ``convert_result_to_submission.py`` APP: the submitted option is
                                       ``text.strip().upper()``; MMT-Bench's server compares it with the
                                       gold letter, done here locally
``anls_prism``      Prism ``eval_ucit.py`` DocVQA/InfographicVQA: ANLS *without* the 0.5 threshold
==================  =================  ================================================================

Every MLLM-CL/MCITlib script above but ``eval_sat.py`` and ``eval_ocr.py`` skips a prediction containing
``Unanswerable`` while still counting it in the total, i.e. scores it 0. Corrected rules:
``numeric`` (CLEVR-Math: the first number of the prediction equals the gold number).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from cvqa_bench.scoring.base import Scorer, check_rows

UNANSWERABLE = "Unanswerable"
SCI_EXACT_SOURCES = ("AI2D", "TQA", "VQA", "SciVerse")
HANDWRITTEN_MATH = "Handwritten Mathematical Expression Recognition"


def ai2d_right(pred: str, gt: str) -> bool:
    """eval_ai2d.py: a multi-word gold must be a substring; a one-word gold (periods removed) a bounded one."""
    if UNANSWERABLE in pred:
        return False
    pred, gt = pred.lower(), gt.lower()
    if " " in gt:
        return gt in pred
    gt = gt.replace(".", "")
    if " " in pred:
        return any(form in pred for form in (" " + gt, gt + " ", gt + ".", gt + ","))
    return gt in pred


def pvqa_right(pred: str, gt: str) -> bool:
    """eval_pvqa.py: the gold, lower-cased, is a substring of the prediction."""
    return UNANSWERABLE not in pred and gt.lower() in pred.lower()


def finvis_right(pred: str, gt: str) -> bool:
    """eval_finvis.py: the prediction without spaces and periods equals the gold (both lower-cased)."""
    return UNANSWERABLE not in pred and pred.lower().replace(" ", "").replace(".", "") == gt.lower()


def sci_score(pred: str, gt: str, image: str, question: str) -> float:
    """eval_sci.py: exact match for AI2D/TQA/VQA/SciVerse images, else (MapQA) containment or listed states."""
    if UNANSWERABLE in pred:
        return 0.0
    pred, gt = pred.lower(), gt.lower()
    if image.split("/")[-1].split("_")[0] in SCI_EXACT_SOURCES:
        return float(gt == pred)
    if "Which states" in question:  # the fraction of the gold's comma-separated states among the prediction's
        states = gt.split(",")
        listed = pred.split(",")
        return sum(state in listed for state in states) / len(states)
    return float(gt in pred)


def sat_right(pred: str, gt: str) -> bool:
    """eval_sat.py: both lower-cased without spaces, newlines and periods; the gold is a substring."""
    def squash(text: str) -> str:
        return text.lower().strip().replace(" ", "").replace("\n", "").replace(".", "")
    return squash(gt) in squash(pred)


def ocrbench_right(pred: str, golds: Sequence[str], answer_type: str) -> bool:
    """eval_ocr.py: any gold contained in the prediction (case-sensitive without spaces for handwritten math)."""
    if answer_type == HANDWRITTEN_MATH:
        def norm(text: str) -> str:
            return text.strip().replace(" ", "").replace("\n", "")
    else:
        def norm(text: str) -> str:
            return text.lower().strip().replace("\n", "")
    return any(norm(gold) in norm(pred) for gold in golds)


def app_right(pred: str, gt: str) -> bool:
    """The APP submission (convert_result_to_submission.py): option ``text.strip().upper()`` is the gold letter."""
    return pred.strip().upper() == gt.strip().upper()


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls_prism(pred: str, golds: Sequence[str]) -> float:
    """Prism eval_ucit.py ``anls_single``: best ``1 - lev(lower) / max(len)`` over golds, stripped, no threshold."""
    pred = pred.strip()
    best = 0.0
    for gold in golds:
        gold = str(gold).strip()
        if not pred and not gold:
            score = 1.0
        elif not pred or not gold:
            score = 0.0
        else:
            score = 1.0 - _levenshtein(pred.lower(), gold.lower()) / max(len(pred), len(gold))
        best = max(best, score)
    return best


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}


def first_number(text: str) -> float | None:
    """The first number written in ``text`` (digits, or an English number word up to twenty), else None."""
    for token in re.findall(r"-?\d+(?:\.\d+)?|[a-z]+", text.lower().replace(",", "")):
        if _NUMBER.fullmatch(token):
            return float(token)
        if token in _WORDS:
            return float(_WORDS[token])
    return None


class _AnyGold(Scorer):
    """A rule on one gold answer: right when it holds for any of the row's answers."""

    @staticmethod
    def right(pred: str, gt: str) -> bool:
        raise NotImplementedError

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        return float(any(self.right(prediction, gold) for gold in answers))


class AI2DOfficialScorer(_AnyGold):
    """MLLM-CL / MCITlib eval_ai2d.py (RS, AD)."""

    name: ClassVar[str] = "ai2d_official"
    right = staticmethod(ai2d_right)


class PVQAOfficialScorer(_AnyGold):
    """MLLM-CL / MCITlib eval_pvqa.py (Med)."""

    name: ClassVar[str] = "pvqa_official"
    right = staticmethod(pvqa_right)


class FinVisOfficialScorer(_AnyGold):
    """MLLM-CL / MCITlib eval_finvis.py (Fin)."""

    name: ClassVar[str] = "finvis_official"
    right = staticmethod(finvis_right)


class SATOfficialScorer(_AnyGold):
    """MLLM-CL eval_sat.py (VP, CV-Bench)."""

    name: ClassVar[str] = "sat_official"
    right = staticmethod(sat_right)


class APPOfficialScorer(_AnyGold):
    """MLLM-CL APP: the submitted option letter against the gold letter."""

    name: ClassVar[str] = "app_official"
    right = staticmethod(app_right)


class ANLSPrismScorer(Scorer):
    """Prism's ANLS for DocVQA / InfographicVQA (no 0.5 threshold)."""

    name: ClassVar[str] = "anls_prism"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        return anls_prism(prediction, answers)


class NumericScorer(Scorer):
    """Corrected CLEVR-Math: the prediction's first number equals a gold number (words up to twenty count)."""

    name: ClassVar[str] = "numeric"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        value = first_number(prediction)
        return float(value is not None and any(first_number(a) == value for a in answers))


class ContextScorer(Scorer):
    """A rule that also reads test-row fields (:attr:`context_fields`, a task's ``score_context``)."""

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        raise ValueError(f"scorer {self.name!r} needs the row's {', '.join(self.context_fields)}: "
                         "score a predictions file (score_corpus) of a task whose score_context names them")

    def score_corpus(self, predictions: Sequence[str | None], answers: Sequence[Any],
                     contexts: Sequence[dict[str, Any] | None] | None = None) -> tuple[float, list[float]]:
        """Mean of :meth:`score_row` over the rows; a row without its context fields is a ``ValueError``."""
        rows = check_rows(predictions, answers)
        contexts = list(contexts) if contexts is not None else [None] * len(rows)
        scores = []
        for index, ((pred, golds), context) in enumerate(zip(rows, contexts)):
            missing = [k for k in self.context_fields if not isinstance(context, dict) or k not in context]
            if missing:
                raise ValueError(f"row {index}: scorer {self.name!r} needs the field {missing[0]!r}; "
                                 f"name it in the task's score_context")
            scores.append(self.score_row(pred, golds, context))
        return (sum(scores) / len(scores) if scores else 0.0), scores

    def score_row(self, prediction: str, answers: tuple[str, ...], context: dict[str, Any]) -> float:
        """One row's score from its prediction, answers and context fields."""
        raise NotImplementedError


class SciOfficialScorer(ContextScorer):
    """MLLM-CL / MCITlib eval_sci.py (Sci): the rule depends on the image's source and the question."""

    name: ClassVar[str] = "sci_official"
    context_fields: ClassVar[tuple[str, ...]] = ("image", "text")

    def score_row(self, prediction: str, answers: tuple[str, ...], context: dict[str, Any]) -> float:
        return sci_score(prediction, answers[0], str(context["image"]), str(context["text"]))


class OCRBenchOfficialScorer(ContextScorer):
    """MLLM-CL eval_ocr.py (OCRBench): containment, handwritten math without spaces (row ``answer_type``)."""

    name: ClassVar[str] = "ocrbench_official"
    context_fields: ClassVar[tuple[str, ...]] = ("answer_type",)

    def score_row(self, prediction: str, answers: tuple[str, ...], context: dict[str, Any]) -> float:
        return float(ocrbench_right(prediction, answers, str(context["answer_type"])))
