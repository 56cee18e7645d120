"""Deterministic generator of the embedded synthetic continual-VQA sequence, in the exact CoIN formats.

Six skills mirror CoIN's diversity (multiple choice, open VQA with ten human answers,
classification, counting, grounding, OCR) on small flat images that a random frozen tiny CLIP
tower can still tell apart (docs/design.md, "The tiny model": colour easily, shape with effort).
``generate`` writes ``<out>/<task>/train.json``, ``<out>/<task>/test.json`` and
``<out>/images/<task>/<split>_<n>.png``; the same spec always gives byte-identical files.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cvqa_bench.config import GeneratorSpec
from cvqa_bench.data.drawing import LETTERS, PALETTE, SHAPES, Box, blank, draw_letter, draw_shape
from cvqa_bench.io import atomic_write_bytes, atomic_write_json

# Bump when the generator's output changes, so cached materialisations are rebuilt.
GENERATOR_VERSION = 1

SHORT_ANSWER = "Answer the question using a single word or phrase."
MCQ_COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow")
COUNT_WORDS: tuple[str, ...] = ("one", "two", "three")
# The word a human annotator might give instead (one of ten answers, sometimes).
NEIGHBOUR_COLOUR: dict[str, str] = {
    "red": "orange", "green": "blue", "blue": "purple", "yellow": "orange",
    "orange": "red", "purple": "blue", "white": "gray", "black": "gray",
}
N_HUMAN_ANSWERS = 10
P_NEIGHBOUR_ANSWER = 0.25
_SPLIT_CODES = {"train": 0, "test": 1}


@dataclass
class Sample:
    """One rendered example: the image, the training answer and the test-row answer fields."""

    image: Image.Image
    answer: str
    test_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skill:
    """A task the generator can produce: its prompt, its class labels and how a label is drawn."""

    name: str
    prompt: str
    labels: tuple[str, ...]
    answers: tuple[str, ...]
    render: Callable[[np.random.Generator, int, str], Sample]


def _big_box(rng: np.random.Generator, size: int) -> Box:
    """A square box of 55-85% of the image side at a random position inside the image."""
    side = int(round(rng.uniform(0.55, 0.85) * size))
    x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    return (x0, y0, x0 + side - 1, y0 + side - 1)


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return PALETTE[list(PALETTE)[int(rng.integers(len(PALETTE)))]]


def _random_shape(rng: np.random.Generator) -> str:
    return SHAPES[int(rng.integers(len(SHAPES)))]


def _render_mcq(rng: np.random.Generator, size: int, label: str) -> Sample:
    image = blank(size)
    draw_shape(image, _random_shape(rng), _big_box(rng, size), PALETTE[label])
    letter = "ABCD"[MCQ_COLOURS.index(label)]
    return Sample(image, letter, {"answer": letter})


def _render_color(rng: np.random.Generator, size: int, label: str) -> Sample:
    image = blank(size)
    draw_shape(image, _random_shape(rng), _big_box(rng, size), PALETTE[label])
    answers = [label] * N_HUMAN_ANSWERS
    if rng.uniform() < P_NEIGHBOUR_ANSWER:
        answers[int(rng.integers(N_HUMAN_ANSWERS))] = NEIGHBOUR_COLOUR[label]
    return Sample(image, label, {"answers": answers})


def _render_shape(rng: np.random.Generator, size: int, label: str) -> Sample:
    image = blank(size)
    draw_shape(image, label, _big_box(rng, size), _random_colour(rng))
    return Sample(image, label, {"answer": label})


def _render_count(rng: np.random.Generator, size: int, label: str) -> Sample:
    n = COUNT_WORDS.index(label) + 1
    image = blank(size)
    for box in _scatter(rng, size, n):
        draw_shape(image, _random_shape(rng), box, _random_colour(rng))
    return Sample(image, label, {"answer": label})


def _scatter(rng: np.random.Generator, size: int, n: int, gap: int = 2) -> list[Box]:
    """``n`` small square boxes (20-30% of the side) at least ``gap`` px apart (rejection sampling)."""
    boxes: list[Box] = []
    for _ in range(10_000):
        if len(boxes) == n:
            return boxes
        side = int(round(rng.uniform(0.2, 0.3) * size))
        x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        box = (x0, y0, x0 + side - 1, y0 + side - 1)
        if all(_apart(box, other, gap) for other in boxes):
            boxes.append(box)
    raise RuntimeError(f"could not place {n} separate shapes in a {size} px image")  # internal invariant


def _apart(a: Box, b: Box, gap: int) -> bool:
    """True when boxes ``a`` and ``b`` are separated by at least ``gap`` background pixels."""
    return a[2] + gap < b[0] or b[2] + gap < a[0] or a[3] + gap < b[1] or b[3] + gap < a[1]


def quadrant_answer(quadrant: int) -> str:
    """The normalised box string of image quadrant 0-3 (row-major from top-left), CoIN style."""
    qx, qy = quadrant % 2, quadrant // 2
    x0, y0 = qx * 0.5, qy * 0.5
    return f"[{x0:.2f},{y0:.2f},{x0 + 0.5:.2f},{y0 + 0.5:.2f}]"


def _render_position(rng: np.random.Generator, size: int, label: str) -> Sample:
    quadrant = [quadrant_answer(q) for q in range(4)].index(label)
    half = size // 2
    qx, qy = (quadrant % 2) * half, (quadrant // 2) * half
    # The shape fills its quadrant up to a little jitter, so the quadrant box has IoU > 0.5 with it.
    side = int(round(rng.uniform(0.8, 0.95) * half))
    dx, dy = (int(v) for v in rng.integers(0, half - side + 1, size=2))
    image = blank(size)
    draw_shape(image, _random_shape(rng), (qx + dx, qy + dy, qx + dx + side - 1, qy + dy + side - 1),
               _random_colour(rng))
    extra = {"answer": label, "answer_bbox": [qx, qy, qx + half, qy + half], "size": [size, size]}
    return Sample(image, label, extra)


def _render_glyph(rng: np.random.Generator, size: int, label: str) -> Sample:
    image = blank(size)
    draw_letter(image, label, _big_box(rng, size), _random_colour(rng))
    return Sample(image, label, {"answer": label})


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in [
        Skill("mcq", "What color is the shape?\n"
              + "".join(f"{letter}. {c}\n" for letter, c in zip("ABCD", MCQ_COLOURS))
              + "Answer with the option's letter from the given choices directly.",
              MCQ_COLOURS, tuple("ABCD"), _render_mcq),
        Skill("color", f"What color is the shape?\n{SHORT_ANSWER}", tuple(PALETTE),
              tuple(dict.fromkeys([*PALETTE, *NEIGHBOUR_COLOUR.values()])), _render_color),
        Skill("shape", "What is the object in the image?\nName the object category in one word.",
              SHAPES, SHAPES, _render_shape),
        Skill("count", f"How many shapes are in the image?\n{SHORT_ANSWER}", COUNT_WORDS, COUNT_WORDS,
              _render_count),
        Skill("position", "Please provide the bounding box coordinate of the region this sentence "
              "describes: the shape.", tuple(quadrant_answer(q) for q in range(4)),
              tuple(quadrant_answer(q) for q in range(4)), _render_position),
        Skill("glyph", f"What letter is shown in the image?\n{SHORT_ANSWER}", LETTERS, LETTERS,
              _render_glyph),
    ]
}


def corpus() -> list[str]:
    """Every prompt and answer string the generator can produce (for the tiny model's tokenizer)."""
    texts: list[str] = []
    for skill in SKILLS.values():
        texts.extend([skill.prompt, *skill.answers])
    return list(dict.fromkeys(texts))


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _balanced_labels(rng: np.random.Generator, labels: tuple[str, ...], n: int) -> list[str]:
    """``n`` labels, each class as often as possible (counts differ by at most one), shuffled."""
    order = [labels[i % len(labels)] for i in range(n)]
    return [order[i] for i in rng.permutation(n)]


def _rng(seed: int, task: str, split: str) -> np.random.Generator:
    # Keyed by the task *name* (crc32 is stable across runs, unlike hash()), so a task's files do
    # not depend on which other tasks are generated with it or in which order.
    return np.random.default_rng([seed, zlib.crc32(task.encode()), _SPLIT_CODES[split]])


def generate(spec: GeneratorSpec, out_dir: Path, tasks: list[str]) -> None:
    """Write every task's train/test JSON and PNG images under ``out_dir`` (CoIN layout).

    Raises:
        ValueError: a task name that is not one of :data:`SKILLS`, or a negative seed.
    """
    unknown = [t for t in tasks if t not in SKILLS]
    if unknown:
        raise ValueError(
            f"synthetic generator cannot make tasks {unknown}; known skills: {', '.join(SKILLS)}"
        )
    if spec.seed < 0:
        raise ValueError(f"generator seed must be >= 0, got {spec.seed}")
    out_dir = Path(out_dir)
    for task in tasks:
        skill = SKILLS[task]
        for split, n in (("train", spec.n_train), ("test", spec.n_test)):
            rng = _rng(spec.seed, task, split)
            rows = []
            for i, label in enumerate(_balanced_labels(rng, skill.labels, n)):
                sample = skill.render(rng, spec.image_size, label)
                rel = f"{task}/{split}_{i}.png"
                atomic_write_bytes(out_dir / "images" / rel, _png_bytes(sample.image))
                if split == "train":
                    rows.append({"id": f"{task}_{split}_{i}", "image": rel, "conversations": [
                        {"from": "human", "value": f"<image>\n{skill.prompt}"},
                        {"from": "gpt", "value": sample.answer},
                    ]})
                else:
                    rows.append({"question_id": f"{task}_{split}_{i}", "image": rel, "text": skill.prompt,
                                 **sample.test_fields})
            atomic_write_json(out_dir / task / f"{split}.json", rows)
