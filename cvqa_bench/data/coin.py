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

from PIL import Image

from cvqa_bench.config import InstructionRule, TaskSpec

IMAGE_TOKEN = "<image>"
ROLES = ("human", "gpt")


class DataError(ValueError):
    """A data file that cannot be used; the message names the file, the row index and the field."""


class Problems:
    """Where validation problems go: raised at once (``fail_fast``) or collected for a report."""

    def __init__(self, fail_fast: bool) -> None:
        self.fail_fast = fail_fast
        self.items: list[str] = []

    def add(self, message: str) -> None:
        """Record one problem (raises :class:`DataError` when failing fast)."""
        if self.fail_fast:
            raise DataError(message)
        self.items.append(message)

    def summary(self, limit: int) -> list[str]:
        """The first ``limit`` problems, plus one line counting the rest."""
        if len(self.items) <= limit:
            return list(self.items)
        return [*self.items[:limit], f"... and {len(self.items) - limit} more problems"]


class ImageChecker:
    """Opens each image path at most once (PIL ``verify``) and remembers what was wrong with it."""

    def __init__(self) -> None:
        self._cache: dict[Path, str | None] = {}

    def problem(self, path: Path) -> str | None:
        """``None`` for a readable image, else a short reason."""
        if path not in self._cache:
            self._cache[path] = self._verify(path)
        return self._cache[path]

    @staticmethod
    def _verify(path: Path) -> str | None:
        if not path.is_file():
            return "not found"
        try:
            with Image.open(path) as image:
                image.verify()
        # PIL reports truncated/corrupt files as OSError, SyntaxError or ValueError depending on format.
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            return f"cannot be read as an image ({exc})"
        return None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_id(item: dict[str, Any], key: str) -> str:
    """The row's id as a string; raises ``ValueError`` with the field's message."""
    if key not in item:
        raise ValueError(f"missing field {key!r}")
    value = item[key]
    # bool is an int subclass; an id of `true` is a data bug, not an id.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{key}: must be a string or integer, got {_type_name(value)}")
    if str(value).strip() == "":
        raise ValueError(f"{key}: is empty")
    return str(value)


def _check_image(item: dict[str, Any]) -> str | None:
    value = item.get("image")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"image: must be a non-empty relative path or null, got {value!r}")
    return value


def _check_conversations(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise ValueError(f"conversations: must be a list of turns, got {_type_name(value)}")
    if len(value) < 2:
        raise ValueError(
            f"conversations: needs at least one human and one gpt turn, got {len(value)} turn(s)"
        )
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict) or not {"from", "value"} <= turn.keys():
            raise ValueError(f"conversations[{i}]: must be an object with 'from' and 'value'")
        expected = ROLES[i % 2]
        if turn["from"] != expected:
            raise ValueError(
                f"conversations[{i}].from: expected {expected!r} (turns start with human and alternate), "
                f"got {turn['from']!r}"
            )
        if not isinstance(turn["value"], str):
            raise ValueError(f"conversations[{i}].value: must be a string, got {_type_name(turn['value'])}")
        turns.append({"from": turn["from"], "value": turn["value"]})
    if turns[-1]["from"] != "gpt":
        raise ValueError("conversations: the last turn must be the gpt answer")
    return turns


def _check_answers(item: dict[str, Any]) -> list[str]:
    if "answers" in item:
        value = item["answers"]
        if not isinstance(value, list) or not value:
            raise ValueError(f"answers: must be a non-empty list of strings, got {value!r}")
        bad = [a for a in value if not isinstance(a, str)]
        if bad:
            raise ValueError(f"answers: every answer must be a string, got {bad[0]!r}")
        return list(value)
    if "answer" in item:
        value = item["answer"]
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"answer: must be a non-empty string, got {value!r}")
        return [value]
    raise ValueError("missing field 'answer' (a string) or 'answers' (a list of strings)")


def _check_numbers(item: dict[str, Any], key: str, length: int) -> list[float] | None:
    if key not in item:
        return None
    value = item[key]
    if isinstance(value, str):  # CoIN's grounding files store the box as a string: "[0.05, 0.2, 0.42, 0.88]"
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if (
        not isinstance(value, list)
        or len(value) != length
        or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)
    ):
        raise ValueError(f"{key}: must be a list (or a JSON string) of {length} numbers, got {item[key]!r}")
    return list(value)


def check_train_row(item: Any, where: str, problems: Problems) -> dict[str, Any] | None:
    """A train row in the harness format, or ``None`` after reporting its first problem."""
    if not isinstance(item, dict):
        problems.add(f"{where}: row must be an object, got {_type_name(item)}")
        return None
    try:
        row_id = _check_id(item, "id")
        if "conversations" not in item:
            raise ValueError("missing field 'conversations'")
        return {"id": row_id, "image": _check_image(item),
                "conversations": _check_conversations(item["conversations"])}
    except ValueError as exc:
        problems.add(f"{where}: {exc}")
        return None


def check_test_row(item: Any, where: str, problems: Problems) -> dict[str, Any] | None:
    """A test row in the harness format, or ``None`` after reporting its first problem."""
    if not isinstance(item, dict):
        problems.add(f"{where}: row must be an object, got {_type_name(item)}")
        return None
    try:
        row: dict[str, Any] = {"question_id": _check_id(item, "question_id"), "image": _check_image(item)}
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("missing field 'text'" if "text" not in item
                             else f"text: must be a non-empty string, got {text!r}")
        row["text"] = text
        row["answers"] = _check_answers(item)
        bbox, size = _check_numbers(item, "answer_bbox", 4), _check_numbers(item, "size", 2)
        if size is not None and min(size) <= 0:
            raise ValueError(f"size: width and height must be positive, got {size!r}")
        row.update({k: v for k, v in (("answer_bbox", bbox), ("size", size)) if v is not None})
        return row
    except ValueError as exc:
        problems.add(f"{where}: {exc}")
        return None


def resolve_image(
    relative: str, image_root: Path, where: str, problems: Problems, images: ImageChecker | None
) -> Path | None:
    """The absolute path of a row's image, or ``None`` after reporting why it cannot be used."""
    parts = Path(relative).parts
    if Path(relative).is_absolute() or relative.startswith(("/", "\\")):
        problems.add(
            f"{where}: {relative!r} is absolute; image paths are relative to the image folder {image_root}"
        )
        return None
    if ".." in parts:
        problems.add(f"{where}: {relative!r} escapes the image folder {image_root} ('..')")
        return None
    path = image_root / relative
    reason = images.problem(path) if images is not None else None
    if reason is not None:
        problems.add(f"{where}: {relative!r} {reason} (looked in {image_root})")
        return None
    return path


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


def read_json_list(path: Path) -> list[Any]:
    """Read a JSON file whose top level must be a list.

    Raises:
        DataError: missing/unreadable file, invalid JSON (with line and column), or not a list.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    if not isinstance(data, list):
        raise DataError(f"{path}: top level must be a list of rows, got {type(data).__name__}")
    return data


def _load_split(
    path: Path, kind: str, rule: InstructionRule, image_root: Path, images: ImageChecker | None,
    problems: Problems,
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """Validated rows of one split file and the distinct instructions of their prompts (first seen first)."""
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
    for index, item in enumerate(raw):
        where = f"{path} row {index}"
        row = check(item, where, problems)
        if row is None:
            continue
        if row[key] in first_seen:
            problems.add(f"{where}: duplicate {key} {row[key]!r} (first at row {first_seen[row[key]]})")
            continue
        first_seen[row[key]] = index
        prompt = row["conversations"][0]["value"] if kind == "train" else row["text"]
        try:
            instructions.setdefault(extract_instruction(prompt, rule), None)
        except ValueError as exc:
            problems.add(f"{where}: {prompt_field}: {exc}")
            continue
        if row["image"] is not None:
            image_path = resolve_image(row["image"], image_root, f"{where}: image", problems, images)
            if image_path is None:
                continue
            row["image"] = str(image_path)
        rows.append(row)
    return rows, tuple(instructions)


def _read_task(
    spec: TaskSpec, data_root: Path, image_root: Path, images: ImageChecker | None, problems: Problems
) -> TaskData:
    data_root, image_root = Path(data_root).absolute(), Path(image_root).absolute()
    train, instructions = _load_split(
        data_root / spec.train, "train", spec.instruction, image_root, images, problems
    )
    test, test_instructions = _load_split(
        data_root / spec.test, "test", spec.instruction, image_root, images, problems
    )
    return TaskData(spec, train, test, instructions, test_instructions, image_root)


def load_task(
    spec: TaskSpec,
    data_root: Path,
    image_root: Path,
    check_images: bool = True,
    images: ImageChecker | None = None,
) -> TaskData:
    """Load and validate one task's train and test files; image paths become absolute.

    ``images`` shares the per-path image cache between tasks (a new one is made when omitted).

    Raises:
        DataError: the first problem found, naming the file, the row index and the field.
    """
    if check_images and images is None:
        images = ImageChecker()
    return _read_task(spec, data_root, image_root, images if check_images else None, Problems(fail_fast=True))


def validate_task(
    spec: TaskSpec,
    data_root: Path,
    image_root: Path,
    check_images: bool = True,
    max_problems: int = 20,
    images: ImageChecker | None = None,
) -> list[str]:
    """Every problem of one task's files as one line each; the first ``max_problems`` and a count line."""
    if check_images and images is None:
        images = ImageChecker()
    problems = Problems(fail_fast=False)
    _read_task(spec, data_root, image_root, images if check_images else None, problems)
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


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
