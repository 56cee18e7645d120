"""Exact match (``exact``): the GQA / OCR-VQA / single-answer VQAv2 and VizWiz rule of CoIN.

Both sides are lowercased, stripped of surrounding whitespace and of trailing periods, then compared;
the prediction is right if it equals any gold answer. An empty prediction is never right.
"""

from __future__ import annotations

from typing import ClassVar

from cvqa_bench.scoring.base import Scorer


def normalize_exact(text: str) -> str:
    """Lowercase, strip whitespace, strip trailing periods (``"Red. "`` -> ``"red"``)."""
    return text.strip().rstrip(".").strip().lower()


class ExactScorer(Scorer):
    """Case-insensitive exact match against any answer, trailing periods ignored."""

    name: ClassVar[str] = "exact"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        pred = normalize_exact(prediction)
        if not pred:
            return 0.0
        return 1.0 if any(normalize_exact(answer) == pred for answer in answers) else 0.0
