"""Per-answer scoring rules, looked up by name: ``get_scorer(name).score(prediction, answers)``.

Every scorer returns a float in [0, 1] for one prediction against one gold answer or a list of
them, and offers ``score_many`` for a whole predictions file. Entries are lazy, so importing this
package (and ``cvqa list scorers``) stays pure Python and instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvqa_bench.registry import Registry

if TYPE_CHECKING:
    from cvqa_bench.scoring.base import Scorer

scorers: Registry = Registry("scorer")

_ENTRIES = {
    "vqa": ("vqa:VQAScorer", "official VQA accuracy (vqaEval.py): min(1, matches/3), leave-one-out, normalises only if answers differ"),
    "vqa_evalai": ("vqa:VQAEvalAIScorer", "TextVQA/EvalAI VQA accuracy: always normalises prediction and answers"),
    "exact": ("exact:ExactScorer", "case-insensitive exact match against any answer, trailing periods ignored"),
    "choice": ("choice:ChoiceScorer", "ScienceQA option letter A-E ('B', 'B. text' or first single-letter word)"),
    "contains": ("contains:ContainsScorer", "ImageNet: gold in prediction or prediction in gold; empty prediction is wrong"),
    "grounding": ("grounding:GroundingScorer", "box [x1, y1, x2, y2] in [0, 1], right if IoU > 0.5"),
    "anls": ("anls:ANLSScorer", "average normalised Levenshtein similarity, threshold 0.5"),
}  # fmt: skip
for _name, (_target, _description) in _ENTRIES.items():
    scorers.add_lazy(_name, f"cvqa_bench.scoring.{_target}", _description)


def get_scorer(name: str) -> Scorer:
    """A ready scorer for ``name``; unknown names raise ``UnknownNameError`` with suggestions."""
    scorer = scorers.get(name)()
    assert scorer.name == name, f"scorer registered as {name!r} calls itself {scorer.name!r}"
    return scorer


__all__ = ["get_scorer", "scorers"]
