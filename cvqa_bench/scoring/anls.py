"""Average normalised Levenshtein similarity (``anls``), the ST-VQA / DocVQA rule, threshold 0.5.

For each gold answer, ``NL = levenshtein(pred, gold) / max(len(pred), len(gold))`` after lowercasing
and stripping both; the answer contributes ``1 - NL`` if ``NL < 0.5`` else 0; the score is the best
answer's. An empty prediction scores 0.
"""

from __future__ import annotations

from typing import ClassVar

from cvqa_bench.scoring.base import Scorer

ANLS_THRESHOLD = 0.5


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each cost 1) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def normalized_similarity(prediction: str, answer: str) -> float:
    """``1 - NL`` when the normalised Levenshtein distance NL is below 0.5, else 0.0."""
    pred, gold = prediction.strip().lower(), answer.strip().lower()
    distance = levenshtein(pred, gold) / max(len(pred), len(gold))
    return 1.0 - distance if distance < ANLS_THRESHOLD else 0.0


class ANLSScorer(Scorer):
    """ANLS: best 1 - normalised Levenshtein distance over the answers, 0 when distance >= 0.5."""

    name: ClassVar[str] = "anls"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        if not prediction.strip():
            return 0.0
        return max(normalized_similarity(prediction, answer) for answer in answers)
