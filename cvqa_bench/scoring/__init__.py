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
    # The `official` protocol (scoring/protocol.py): CoIN's eval scripts reproduced, bugs included.
    "imagenet_official": ("official:ImageNetOfficialScorer", "CoIN eval_ImagetNet.py: gold in pred or pred in gold, case-sensitive; empty prediction is right"),
    "grounding_official": ("official:GroundingOfficialScorer", "CoIN eval_grounding.py: IoU > 0.5, parser drops the last character of the last coordinate"),
    "scienceqa_official": ("official:ScienceQAOfficialScorer", "CoIN eval_science_qa.py: letter, 'X. ', else first one-character word uppercased"),
    "exact_official": ("official:ExactOfficialScorer", "CoIN eval_vizwiz.py / eval_vqav2.py: pred.upper() == answer.upper(), nothing stripped"),
    "exact_official_gqa": ("official:GQAOfficialScorer", "CoIN convert_gqa_for_eval.py + eval_gqa.py: pred.rstrip('.').lower() == answer"),
    "exact_official_ocrvqa": ("official:OCRVQAOfficialScorer", "CoIN eval_ocrvqa.py: 'Unanswerable' in pred is wrong, else pred.lower() == answer.lower()"),
}  # fmt: skip
for _name, (_target, _description) in _ENTRIES.items():
    scorers.add_lazy(_name, f"cvqa_bench.scoring.{_target}", _description)


def get_scorer(name: str) -> Scorer:
    """A ready scorer for ``name``; unknown names raise ``UnknownNameError`` with suggestions."""
    scorer = scorers.get(name)()
    assert scorer.name == name, f"scorer registered as {name!r} calls itself {scorer.name!r}"
    return scorer


__all__ = ["get_scorer", "scorers"]
