"""The documented address of the scorer registry: ``cvqa_bench.scorers.get_scorer(name)``.

The scorers live in ``cvqa_bench.scoring`` (the pipeline's score step); this module re-exports them.
"""

from cvqa_bench.scoring import get_scorer, scorers

__all__ = ["get_scorer", "scorers"]
