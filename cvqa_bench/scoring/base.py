"""The scorer interface and the input checks every scorer shares.

A scorer turns one model prediction and its gold answer(s) into a number in [0, 1]. Inputs are
checked here, once, so that bad records fail with a ``ValueError`` that says what is wrong instead
of a ``TypeError`` from deep inside a rule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar


class Scorer(ABC):
    """Base class: subclasses set ``name`` and implement :meth:`_score` on checked inputs."""

    name: ClassVar[str]
    # Test-row fields the rule reads besides the answers (a task's ``score_context``), e.g. ``answer_type``.
    context_fields: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def score(self, prediction: str | None, answers: str | Sequence[str]) -> float:
        """Score one prediction against one gold answer or a list of them; returns a float in [0, 1].

        ``prediction=None`` counts as the empty prediction, which is never right. ``answers`` must be a
        non-empty string or a non-empty sequence of non-empty strings, else ``ValueError``.
        """
        return self._score(check_prediction(prediction), check_answers(answers))

    def score_many(
        self, predictions: Sequence[str | None], answers: Sequence[str | Sequence[str]]
    ) -> list[float]:
        """Score a whole predictions file: ``predictions[i]`` against ``answers[i]``.

        Gives exactly the scores of :meth:`score`; a bad row raises ``ValueError`` naming its index.
        """
        scores = []
        for index, (prediction, gold) in enumerate(check_rows(predictions, answers)):
            try:
                scores.append(self._score(prediction, gold))
            except ValueError as err:  # a malformed gold answer: say which row holds it
                raise ValueError(f"row {index}: {err}") from err
        return scores

    def score_corpus(
        self, predictions: Sequence[str | None], answers: Sequence[str | Sequence[str]],
        contexts: Sequence[dict[str, Any] | None] | None = None,
    ) -> tuple[float, list[float]]:
        """One predictions file: its score in [0, 1] (or above, for CIDEr-like rules) and the per-row scores.

        The mean of :meth:`score_many` by default; corpus-level rules (BLEU, METEOR) override it, as do
        rules that read ``contexts`` (one dict of :attr:`context_fields` per row).
        """
        del contexts  # a per-answer rule reads nothing but the prediction and the answers
        scores = self.score_many(predictions, answers)
        return (sum(scores) / len(scores) if scores else 0.0), scores

    @abstractmethod
    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        """The rule itself, on a string prediction and a non-empty tuple of gold strings."""


def check_prediction(prediction: Any) -> str:
    """The prediction as a string: ``None`` becomes ``""``; anything else but a ``str`` is a ``ValueError``."""
    if prediction is None:
        return ""
    if not isinstance(prediction, str):
        raise ValueError(
            f"prediction must be a string (or None), got {type(prediction).__name__} {prediction!r}"
        )
    return prediction


def check_answers(answers: Any) -> tuple[str, ...]:
    """The gold answers as a non-empty tuple of non-blank strings; a bare string is a list of one.

    Raises ``ValueError`` for ``None``, an empty list, a non-string answer or a blank answer: a gold
    answer that is empty would let an empty prediction score, so it is treated as broken data.
    """
    if isinstance(answers, str):
        answers = (answers,)
    elif isinstance(answers, (list, tuple)) or (
        isinstance(answers, Sequence) and not isinstance(answers, (bytes, bytearray))
    ):
        answers = tuple(answers)
    else:
        raise ValueError(
            "answers must be a string or a list of strings, "
            f"got {type(answers).__name__} {answers!r}"
        )
    # Fast path for the usual well-formed row (this runs once per question of a whole file):
    # str.strip raises TypeError on a non-string, an empty result flags a blank answer.
    try:
        if answers and all(map(str.strip, answers)):
            return answers
    except TypeError:
        pass
    if not answers:
        raise ValueError("answers list is empty: every question needs at least one gold answer")
    for index, answer in enumerate(answers):
        if not isinstance(answer, str):
            raise ValueError(
                f"answer {index} must be a string, got {type(answer).__name__} {answer!r}"
            )
        if not answer.strip():
            raise ValueError(f"answer {index} is blank ({answer!r}); gold answers must not be empty")
    return answers


def check_rows(
    predictions: Sequence[Any], answers: Sequence[Any]
) -> list[tuple[str, tuple[str, ...]]]:
    """Check every (prediction, answers) row; a bad one raises ``ValueError`` naming its index."""
    if isinstance(predictions, str) or isinstance(answers, str):
        raise ValueError("score_many takes sequences of predictions and of answers, not a single string")
    if len(predictions) != len(answers):
        raise ValueError(
            f"score_many got {len(predictions)} predictions but {len(answers)} answer entries; "
            "they must pair up row by row"
        )
    rows = []
    for index, (prediction, gold) in enumerate(zip(predictions, answers)):
        try:
            rows.append((check_prediction(prediction), check_answers(gold)))
        except ValueError as err:
            raise ValueError(f"row {index}: {err}") from err
    return rows
