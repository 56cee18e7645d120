"""Loading and validation of one task's CoIN-format files (train conversations, test questions, images).

``load_task`` stops at the first problem with a one-line :class:`DataError` that names the file,
the row index and the field; ``validate_task`` collects every problem for ``cvqa validate``.
Rows come back as plain JSON-able dicts with ids as strings and image paths made absolute:

- train: ``{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}, ...]}``
- test: ``{"question_id", "image", "text", "answers": [...], **extra}`` (extra: ``answer_bbox``, ``size``)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvqa_bench.config import InstructionRule, TaskSpec
from cvqa_bench.data.answers import apply_answer_lists
from cvqa_bench.data.file_hashes import sha256_of
from cvqa_bench.data.images import ImageChecker, ImagePaths, inside
from cvqa_bench.data.rows import DataError, Problems, check_test_row, check_train_row, read_json_list

IMAGE_TOKEN = "<image>"


@dataclass
class TaskData:
    """One task's validated rows and the instruction strings of its prompts."""

    spec: TaskSpec
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    instructions: tuple[str, ...]
    test_instructions: tuple[str, ...]
    image_root: Path

    def test_hash(self) -> str:
        """:func:`test_items_hash` of the test rows, with image paths relative to the image root."""
        return test_items_hash(self.test, self.image_root)


def extract_instruction(prompt: str, rule: InstructionRule) -> str:
    """The instruction part of a first human turn, after removing the ``<image>`` marker.

    ``last_line``: the last non-empty line; ``last_line_before_colon``: that line cut at its first
    ':'; ``second_line``: line 1 of the raw prompt split on newlines, counting the ``<image>`` line as
    the official CoIN code does (``value.split('\n')[1]``: the question of an ImageNet prompt), or the
    last non-empty line when that line is empty or missing.

    Raises:
        ValueError: the prompt has no text besides ``<image>``, or ``rule`` is unknown.
    """
    lines = [line.strip() for line in prompt.replace(IMAGE_TOKEN, "").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError("prompt has no text besides <image>")
    if rule == "last_line":
        return lines[-1]
    if rule == "last_line_before_colon":
        return lines[-1].split(":", 1)[0].strip()
    if rule == "second_line":
        raw = prompt.split("\n")
        second = raw[1].replace(IMAGE_TOKEN, "").strip() if len(raw) > 1 else ""
        return second or lines[-1]
    raise ValueError(
        f"unknown instruction rule {rule!r}; use last_line, last_line_before_colon or second_line"
    )


def _load_split(
    path: Path, kind: str, rule: InstructionRule, image_root: Path, images: ImageChecker | None,
    problems: Problems, allow_outside: bool = False, context: tuple[str, ...] = (),
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """Validated rows of one split file and the distinct instructions of their prompts (first seen first).

    ``context``: test-row fields kept as ``row["context"]`` for the task's official scorer (``score_context``).
    """
    try:
        raw = read_json_list(path)
    except DataError as exc:
        problems.add(str(exc))
        return [], ()
    if not raw:
        problems.add(f"{path}: empty {kind} split (no rows)")
    check, key, prompt_field = (
        (check_train_row, "id", "conversations[0].value") if kind == "train"
        else (check_test_row, "question_id", "text")
    )
    rows: list[dict[str, Any]] = []
    instructions: dict[str, None] = {}
    first_seen: dict[str, int] = {}
    image_paths = ImagePaths(image_root, images, allow_outside)
    for index, item in enumerate(raw):
        where = f"{path} row {index}"
        row = check(item, where, problems)
        if row is None:
            continue
        if row[key] in first_seen:
            problems.add(f"{where}: duplicate {key} {row[key]!r} (first at row {first_seen[row[key]]})")
            continue
        first_seen[row[key]] = index
        if context:
            missing = [k for k in context if k not in item]
            if missing:
                problems.add(f"{where}: missing field {missing[0]!r} (named in the task's score_context)")
                continue
            row["context"] = {k: item[k] for k in context}
        prompt = row["conversations"][0]["value"] if kind == "train" else row["text"]
        try:
            instructions.setdefault(extract_instruction(prompt, rule), None)
        except ValueError as exc:
            problems.add(f"{where}: {prompt_field}: {exc}")
            continue
        if row["image"] is not None:
            image_path = image_paths.resolve(row["image"], f"{where}: image", problems)
            if image_path is None:
                continue
            row["image"] = str(image_path)
        rows.append(row)
    return rows, tuple(instructions)


def _outside_root(spec: TaskSpec, data_root: Path, image_root: Path) -> str | None:
    """The first of the task's paths that lies outside the data root (symlinks followed), as a message."""
    named = {"train": spec.train, "test": spec.test, "answers_file": spec.answers_file}
    for field, relative in named.items():
        if relative is not None and (Path(relative).is_absolute() or not inside(data_root / relative, data_root)):
            return f"task {spec.name!r}: {field} {relative!r} lies outside the data root {data_root}"
    if not inside(image_root, data_root):
        return f"task {spec.name!r}: image folder {image_root} lies outside the data root {data_root}"
    return None


def _read_task(
    spec: TaskSpec, data_root: Path, image_root: Path, images: ImageChecker | None, problems: Problems,
    allow_outside: bool = False,
) -> TaskData:
    data_root, image_root = Path(data_root).absolute(), Path(image_root).absolute()
    outside = None if allow_outside else _outside_root(spec, data_root, image_root)
    if outside is not None:
        problems.add(f"{outside}; set allow_outside_root: true in the sequence YAML to allow it")
        return TaskData(spec, [], [], (), (), image_root)
    train, instructions = _load_split(
        data_root / spec.train, "train", spec.instruction, image_root, images, problems, allow_outside
    )
    test_root = (data_root / spec.test_image_folder).absolute() if spec.test_image_folder else image_root
    if test_root != image_root and not allow_outside and not inside(test_root, data_root):
        problems.add(f"task {spec.name!r}: test image folder {test_root} lies outside the data root {data_root}; "
                     "set allow_outside_root: true in the sequence YAML to allow it")
        return TaskData(spec, [], [], (), (), image_root)
    test, test_instructions = _load_split(
        data_root / spec.test, "test", spec.instruction, test_root, images, problems, allow_outside,
        tuple(spec.score_context),
    )
    if spec.answers_file is not None:
        apply_answer_lists(test, data_root / spec.answers_file, data_root / spec.test, problems)
    if spec.eval_suffix:
        add_eval_suffix(test, spec.eval_suffix)
    return TaskData(spec, train, test, instructions, test_instructions, image_root)


def add_eval_suffix(test_rows: list[dict[str, Any]], suffixes: dict[str, str]) -> None:
    """Append to each question the suffix its first gold answer selects (``'*'``: any other answer)."""
    for row in test_rows:
        suffix = suffixes.get(row["answers"][0], suffixes.get("*", ""))
        row["text"] = row["text"] + suffix


def load_task(
    spec: TaskSpec,
    data_root: Path,
    image_root: Path,
    check_images: bool = True,
    images: ImageChecker | None = None,
    allow_outside: bool = False,
) -> TaskData:
    """Load and validate one task's train and test files; image paths become absolute.

    ``images`` shares the per-path image cache between tasks (a new one is made when omitted).

    Raises:
        DataError: the first problem found, naming the file, the row index and the field.
    """
    if check_images and images is None:
        images = ImageChecker()
    return _read_task(spec, data_root, image_root, images if check_images else None, Problems(fail_fast=True),
                      allow_outside)


def validate_task(
    spec: TaskSpec,
    data_root: Path,
    image_root: Path,
    check_images: bool = True,
    max_problems: int = 20,
    images: ImageChecker | None = None,
    allow_outside: bool = False,
) -> list[str]:
    """Every problem of one task's files as one line each; the first ``max_problems`` and a count line."""
    if check_images and images is None:
        images = ImageChecker()
    problems = Problems(fail_fast=False)
    _read_task(spec, data_root, image_root, images if check_images else None, problems, allow_outside)
    return problems.summary(max_problems)


def test_items_hash(test_rows: list[dict[str, Any]], image_root: Path | None = None) -> str:
    """SHA-256 of the canonical JSON of the test rows (order included).

    With ``image_root``, image paths are hashed relative to it, so the same data in another folder
    hashes the same.
    """
    items = []
    for row in test_rows:
        item = dict(row)
        if image_root is not None and item.get("image") is not None:
            image = Path(item["image"])
            if image.is_relative_to(image_root):
                item["image"] = image.relative_to(image_root).as_posix()
        items.append(item)
    canonical = json.dumps(items, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


test_items_hash.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


file_sha256 = sha256_of  # SHA-256 hex digest of a file's bytes: one definition, in data/file_hashes.py
