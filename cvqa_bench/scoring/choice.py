"""Multiple-choice letter (``choice``): the ScienceQA rule of CoIN, options A–E.

The predicted letter is read, in this order, from:

1. the whole prediction being one letter (``"B"``, ``"b"``, ``"B."``);
2. a leading ``"B."``, ``"B)"`` or ``"(B)"`` (``"B. the cell wall"``);
3. the first whitespace-separated word that, without surrounding punctuation, is a single capital
   letter A–E (``"The answer is B."``). Like CoIN this also reads the article in ``"A cat"`` as A.

Anything else is wrong. The gold answer is a letter, optionally followed by its text (``"B"``,
``"B. the cell wall"``); a gold answer that names no letter A–E is broken data (``ValueError``).
"""

from __future__ import annotations

import re
from typing import ClassVar

from cvqa_bench.scoring.base import Scorer

LETTERS = "ABCDE"
_LEADING_LETTER = re.compile(r"\(?([A-E])[.)](?:\s|$)")
_GOLD_LETTER = re.compile(r"\s*\(?([A-E])(?:[.):]|\s|$)")
_WORD_PUNCTUATION = ".,:;!?()[]\"'"


def parse_choice(prediction: str) -> str | None:
    """The letter A–E a prediction chooses, or ``None`` when it names none."""
    text = prediction.strip()
    bare = text.rstrip(".").strip()
    if len(bare) == 1 and bare.upper() in LETTERS:
        return bare.upper()
    leading = _LEADING_LETTER.match(text)
    if leading:
        return leading.group(1)
    for word in text.split():
        word = word.strip(_WORD_PUNCTUATION)
        if len(word) == 1 and word in LETTERS:
            return word
    return None


def gold_choice(answer: str) -> str:
    """The gold letter of ``"B"`` or ``"B. text"``; ``ValueError`` if the answer starts with no A–E."""
    match = _GOLD_LETTER.match(answer)
    if match is None:
        raise ValueError(
            f"choice answer {answer!r} is not an option letter A-E (expected 'B' or 'B. text')"
        )
    return match.group(1)


class ChoiceScorer(Scorer):
    """ScienceQA letter A-E: a bare letter, 'X.'/'X)' prefix, or the first single-letter word."""

    name: ClassVar[str] = "choice"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        golds = {gold_choice(answer) for answer in answers}
        return 1.0 if parse_choice(prediction) in golds else 0.0
