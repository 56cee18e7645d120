"""Containment match (``contains``): the ImageNet rule of CoIN, made a whole-word match.

CoIN counts a class name as right when ``gold in pred or pred in gold`` (``imagenet_official``). Both
halves are substring tests: ``pred in gold`` credits any fragment of the class name (the single letter
"c" against "circle", and the empty prediction against every class), and ``gold in pred`` credits
"cat" inside "concatenate". Here a prediction is right when every word of a gold answer is a word of the
prediction: the prediction and the gold are split into words (``\\w+``, case-folded) and the gold's set
of words must be a subset of the prediction's, so "a golden retriever" and "retriever, golden" match
"golden retriever" while "retriever" and "c" do not.
"""

from __future__ import annotations

import re
from typing import ClassVar

from cvqa_bench.scoring.base import Scorer

_WORD = re.compile(r"\w+")


def words(text: str) -> frozenset[str]:
    """The case-folded words (``\\w+`` runs) of ``text``, as a set."""
    return frozenset(_WORD.findall(text.casefold()))


class ContainsScorer(Scorer):
    """ImageNet style: every word of a gold answer is a word of the prediction (case-folded)."""

    name: ClassVar[str] = "contains"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        predicted = words(prediction)
        for answer in answers:
            gold = words(answer)
            if gold and gold <= predicted:
                return 1.0
        return 0.0
