"""Referring-expression grounding (``grounding``): IoU of normalised boxes, right when IoU > 0.5.

Boxes are written ``[x1, y1, x2, y2]`` with coordinates in [0, 1] (normalised to the padded square
image, see docs/protocol.md). CoIN's parser dropped the last character of the last coordinate
(``0.75]`` read as ``0.7``); this one reads the first bracketed group whole.

A prediction that holds no well-formed box (wrong count, not numbers, ``x2 < x1`` or ``y2 < y1``,
a coordinate outside [0, 1]) scores 0.0. A gold answer that is not a well-formed box is broken data
and raises ``ValueError``.
"""

from __future__ import annotations

import re
from typing import ClassVar

from cvqa_bench.scoring.base import Scorer

Box = tuple[float, float, float, float]

IOU_THRESHOLD = 0.5
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")
# Plain decimals only: float() would also take "nan", "inf" and "1_0".
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def parse_box(text: str) -> Box | None:
    """The first ``[x1, y1, x2, y2]`` in ``text`` as floats, or ``None`` if absent or malformed."""
    match = _BRACKETED.search(text)
    if match is None:
        return None
    parts = [part.strip() for part in match.group(1).split(",")]
    if len(parts) != 4 or not all(_NUMBER.fullmatch(part) for part in parts):
        return None
    x1, y1, x2, y2 = (float(part) for part in parts)
    if not all(0.0 <= value <= 1.0 for value in (x1, y1, x2, y2)) or x2 < x1 or y2 < y1:
        return None
    return (x1, y1, x2, y2)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes; 0.0 when the union is empty."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, width) * max(0.0, height)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class GroundingScorer(Scorer):
    """Grounding box [x1, y1, x2, y2] in [0, 1]: right if IoU with the gold box > 0.5 (fixed parser)."""

    name: ClassVar[str] = "grounding"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        golds = []
        for answer in answers:
            gold = parse_box(answer)
            if gold is None:
                raise ValueError(
                    f"grounding answer {answer!r} is not a box '[x1, y1, x2, y2]' with "
                    "0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1"
                )
            golds.append(gold)
        box = parse_box(prediction)
        if box is None:
            return 0.0
        return 1.0 if any(box_iou(box, gold) > IOU_THRESHOLD for gold in golds) else 0.0
