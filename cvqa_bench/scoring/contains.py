"""Containment match (``contains``): the ImageNet rule of CoIN, with its empty-prediction bug fixed.

CoIN counts a class name as right when ``gold in pred or pred in gold``; since ``"" in gold`` is
always true, an empty prediction scored as right. Here an empty prediction is wrong.
"""

from __future__ import annotations

from typing import ClassVar

from cvqa_bench.scoring.base import Scorer


class ContainsScorer(Scorer):
    """ImageNet style: gold in prediction or prediction in gold (lowercased); empty prediction is wrong."""

    name: ClassVar[str] = "contains"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        pred = prediction.strip().lower()
        if not pred:
            return 0.0
        for answer in answers:
            gold = answer.strip().lower()
            if gold in pred or pred in gold:
                return 1.0
        return 0.0
