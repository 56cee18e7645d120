"""VQA accuracy: the official VQAv2 rule (``vqa``) and the EvalAI / TextVQA variant (``vqa_evalai``).

Both score a prediction by leave-one-out agreement with the human answers,
``mean_j min(1, #{k != j : answer_k == prediction} / 3)``; they differ only in how strings are
normalised before comparing (see :mod:`cvqa_bench.scoring.vqa_text`):

* ``vqa`` (GT-Vision-Lab ``vqaEval.py``) normalises the prediction and the answers **only when the
  answers are not all identical**; when they all agree the cleaned prediction must equal them
  verbatim, so ``"Yes"`` against ten ``"yes"`` scores 0;
* ``vqa_evalai`` (EvalAI, TextVQA, LLaVA's ``m4c_evaluator``) always normalises everything.

Two choices of ours, documented because the official code is silent or absurd there:

* one gold answer (CoIN's test files keep one): leave-one-out would give 0 to every prediction, so
  the score is 1.0 when the prediction equals the answer after the same processing, else 0.0; with
  2–9 answers the same leave-one-out formula runs over the answers given;
* an empty (or ``None``) prediction scores 0 even in the freak case where answers normalise to "".
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import ClassVar

from cvqa_bench.scoring.base import Scorer, check_rows
from cvqa_bench.scoring.vqa_text import clean_whitespace, evalai_normalize, vqa_normalize

Normalizer = Callable[[str], str]


def leave_one_out_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """``mean_j min(1, #{k != j : answers[k] == prediction} / 3)``; 1.0/0.0 equality for one answer."""
    if len(answers) == 1:
        return 1.0 if answers[0] == prediction else 0.0
    matches = answers.count(prediction)
    if matches == 0:
        return 0.0
    # Each answer j contributes min(1, matches among the others / 3): `hit` if it is itself a
    # match, `miss` otherwise. Summed in answer order with the official expression, so results
    # agree with vqaEval.py to the last bit (with matches >= 4 both are 1 and the mean is 1.0).
    hit = min(1, float(matches - 1) / 3)
    miss = min(1, float(matches) / 3)
    return sum([hit if answer == prediction else miss for answer in answers]) / len(answers)


class VQAScorer(Scorer):
    """Official VQA accuracy (GT-Vision-Lab vqaEval.py): normalises only when the answers disagree."""

    name: ClassVar[str] = "vqa"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        return self._accuracy(prediction, answers, clean_whitespace, vqa_normalize)

    def score_many(
        self, predictions: Sequence[str | None], answers: Sequence[str | Sequence[str]]
    ) -> list[float]:
        """Score a whole file; identical to :meth:`score` per row, with each distinct string normalised once."""
        rows = check_rows(predictions, answers)
        # Answer strings repeat massively across a file ("yes", "2"...): memoise per call so the
        # cache never outlives the file.
        clean = functools.cache(clean_whitespace)
        normalize = functools.cache(vqa_normalize)
        return [self._accuracy(p, a, clean, normalize) for p, a in rows]

    @staticmethod
    def _accuracy(
        prediction: str, answers: Sequence[str], clean: Normalizer, normalize: Normalizer
    ) -> float:
        prediction = clean(prediction)
        if not prediction:
            return 0.0
        cleaned = [clean(answer) for answer in answers]
        if len(set(cleaned)) > 1:
            cleaned = [normalize(answer) for answer in cleaned]
            prediction = normalize(prediction)
        return leave_one_out_accuracy(prediction, cleaned)


class VQAEvalAIScorer(Scorer):
    """TextVQA / EvalAI VQA accuracy: always normalises prediction and answers (EvalAI processor)."""

    name: ClassVar[str] = "vqa_evalai"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        return self._accuracy(prediction, answers, evalai_normalize)

    def score_many(
        self, predictions: Sequence[str | None], answers: Sequence[str | Sequence[str]]
    ) -> list[float]:
        """Score a whole file; identical to :meth:`score` per row, with each distinct string normalised once."""
        rows = check_rows(predictions, answers)
        normalize = functools.cache(evalai_normalize)
        return [self._accuracy(p, a, normalize) for p, a in rows]

    @staticmethod
    def _accuracy(prediction: str, answers: Sequence[str], normalize: Normalizer) -> float:
        if not prediction.strip():
            return 0.0
        normalized = [normalize(answer) for answer in answers]
        return leave_one_out_accuracy(normalize(prediction), normalized)
