"""How the official CoIN evaluation reads a grounding box and a ScienceQA letter, bugs included.

These parsers back the ``official`` scorers (:mod:`cvqa_bench.scoring.official`). Both official
repositories hold the same code: ``ETrain/Eval/LLaVA/CoIN/`` in zackschen/CoIN and
``llava/eval/CoIN/`` in JingyangQiao/CoIN. The corrected parsers are in
:mod:`cvqa_bench.scoring.grounding` and :mod:`cvqa_bench.scoring.choice`.
"""

from __future__ import annotations

import re

from cvqa_bench.scoring.grounding import Box

# The ``--options`` default of eval_science_qa.py.
OFFICIAL_OPTIONS: tuple[str, ...] = ("A", "B", "C", "D", "E")
# What eval_science_qa.py records when it finds no letter; never an option, so always wrong.
FAILED = "FAILED"
_SINGLE_CHARACTER_WORD = re.compile(r"\b(\w)\b")


def official_predicted_box(prediction: str) -> Box | None:
    """The predicted box as ``eval_single`` of ``eval_grounding.py`` reads it; ``None`` if it reads none.

    The official code deletes every ``[`` and ``]`` and *then* slices ``[1:-1]``, so it drops the
    first character of the first coordinate (harmless for ``0.12``, fatal for ``1.0`` -> ``.0``) and
    the last character of the last one (``[0.1, 0.2, 0.6, 0.75]`` is read as ``0.1, 0.2, 0.6, 0.7``;
    a trailing ``.`` after the bracket is what gets dropped instead). Each piece goes to ``float``
    as is, so surrounding spaces, ``nan`` and ``inf`` are accepted; nothing checks the range or the
    order of the coordinates. Anything that is not exactly four floats is a miss.
    """
    unbracketed = prediction.replace("[", "").replace("]", "")
    try:
        coordinates = [float(piece) for piece in unbracketed[1:-1].split(",")]
    except ValueError:  # the official bare ``except: continue`` scores the row as wrong
        return None
    if len(coordinates) != 4:
        return None
    x1, y1, x2, y2 = coordinates
    return (x1, y1, x2, y2)


def official_gold_box(answer: str) -> Box:
    """The gold box as ``eval_single`` of ``eval_grounding.py`` reads ``answer_bbox``.

    Brackets are deleted and the rest split on commas; the gold side is read whole (no slicing).
    A gold answer that is not four numbers crashes the official script; here it is a ``ValueError``.
    """
    unbracketed = answer.replace("[", "").replace("]", "")
    try:
        coordinates = [float(piece) for piece in unbracketed.split(",")]
    except ValueError:
        coordinates = []
    if len(coordinates) != 4:
        raise ValueError(f"grounding answer {answer!r} is not a box '[x1, y1, x2, y2]'")
    x1, y1, x2, y2 = coordinates
    return (x1, y1, x2, y2)


def official_choice(prediction: str) -> str:
    """The option letter the ``__main__`` loop of ``eval_science_qa.py`` reads, or ``"FAILED"``.

    In order: the prediction is exactly one of ``A``-``E``; it starts with ``"X. "`` for such a
    letter; else the first single-character word (regex ``\\b(\\w)\\b``, any letter, digit or ``_``,
    any case), uppercased - so ``"I think B"`` reads ``I`` and ``"don't know, B"`` reads ``T``, both
    wrong. With no such word the answer is ``"FAILED"``. The script's random fallback in
    ``get_pred_idx`` sits after a ``return -1`` and never runs: a non-option is simply wrong.
    """
    if prediction in OFFICIAL_OPTIONS:
        return prediction
    if len(prediction) >= 3 and prediction[0] in OFFICIAL_OPTIONS and prediction[1:3] == ". ":
        return prediction[0]
    words = _SINGLE_CHARACTER_WORD.findall(prediction)
    return words[0].upper() if words else FAILED
