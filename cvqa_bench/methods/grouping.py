"""LLaCA instruction grouping: which parameter group a task joins, by TF-IDF similarity of instructions.

The official rule (docs/methods.md, "Instruction grouping"): for every (new instruction, codebook instruction)
pair, a ``TfidfVectorizer(stop_words="english")`` is fitted on just those two strings and their
cosine similarity taken; a group's score is the mean over all pairs of distinct strings; the best
group (highest mean, first on ties) is joined if its score reaches the threshold, else the task
opens a new group. A joined task adds its instructions to that group's codebook.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _analyzer() -> Any:
    # scikit-learn is imported on the first similarity, not with the module: about a second of imports
    # that a run which never compares two instructions does not pay.
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(stop_words="english").build_analyzer()


@lru_cache(maxsize=65536)
def instruction_similarity(first: str, second: str) -> float:
    """Cosine similarity of two strings' TF-IDF vectors, the model fitted on just these two.

    Strings made only of stop words leave TF-IDF with an empty vocabulary: similarity 0.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    analyzer = _analyzer()
    if not analyzer(first) and not analyzer(second):
        return 0.0
    vectors = TfidfVectorizer(stop_words="english").fit_transform([first, second])
    return float(cosine_similarity(vectors[0], vectors[1])[0, 0])


def _distinct(strings: list[str] | tuple[str, ...], what: str) -> list[str]:
    if isinstance(strings, str):
        raise ValueError(f"{what} must be a list of instruction strings, got the string {strings!r}")
    bad = [s for s in strings if not isinstance(s, str)]
    if bad:
        raise ValueError(f"{what} must hold strings only, got {bad[0]!r}")
    return list(dict.fromkeys(strings))


def _check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"grouping threshold must be in [0, 1], got {threshold}")


def group_scores(instructions: list[str] | tuple[str, ...], codebooks: list[list[str]]) -> list[float]:
    """Mean pairwise similarity of ``instructions`` to each codebook (0 where a side is empty)."""
    new = _distinct(instructions, "instructions")
    scores = []
    for index, codebook in enumerate(codebooks):
        known = _distinct(codebook, f"codebook {index}")
        pairs = [instruction_similarity(a, b) for a in new for b in known]
        scores.append(sum(pairs) / len(pairs) if pairs else 0.0)
    return scores


def choose_group(scores: list[float], threshold: float) -> int | None:
    """The best group (highest score, first on ties) if its score is >= ``threshold``, else None."""
    _check_threshold(threshold)
    if not scores:
        return None
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return best if scores[best] >= threshold else None


def route(
    instructions: list[str] | tuple[str, ...], codebooks: list[list[str]], threshold: float
) -> int | None:
    """The group an evaluation task's instructions match (best first), or None if none reaches ``threshold``."""
    return choose_group(group_scores(instructions, codebooks), threshold)


def add_to_codebook(codebook: list[str], instructions: list[str] | tuple[str, ...]) -> None:
    """Append the instructions not yet in ``codebook`` (distinct strings, first-seen order)."""
    for instruction in _distinct(instructions, "instructions"):
        if instruction not in codebook:
            codebook.append(instruction)


def plan_groups_with_scores(
    instructions: list[list[str]], threshold: float
) -> tuple[list[int], list[list[float]]]:
    """``plan_groups`` plus, per task, its score against every group that existed before it."""
    _check_threshold(threshold)
    codebooks: list[list[str]] = []
    groups: list[int] = []
    all_scores: list[list[float]] = []
    for task_instructions in instructions:
        scores = group_scores(task_instructions, codebooks)
        group = choose_group(scores, threshold)
        if group is None:
            group = len(codebooks)
            codebooks.append([])
        add_to_codebook(codebooks[group], task_instructions)
        groups.append(group)
        all_scores.append(scores)
    return groups, all_scores


def plan_groups(instructions: list[list[str]], threshold: float) -> list[int]:
    """The group index (0-based, in creation order) each task joins, by the official TF-IDF rule.

    Args:
        instructions: per task (in sequence order), its distinct instruction strings.
        threshold: the minimum mean similarity to join an existing group (0.90 for the original
            CoIN instructions, 0.30 for the diverse / 10-type variants).

    Returns:
        One group index per task; a task whose best score is below ``threshold`` opens a new group.
    """
    return plan_groups_with_scores(instructions, threshold)[0]
