"""The CoIN row schema: one train or test row checked field by field, and the problems found.

A problem is one line naming the file, the row index and the field (``<file> row <i>: <field>: ...``);
:class:`Problems` raises the first at once or collects them all for ``cvqa validate``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

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
    if value is not None and "\0" in value:
        raise ValueError(f"image: {value!r} holds a NUL character, which no file name can")
    return value


def _check_unicode(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` itself; raises ``ValueError`` naming the first field whose text is not valid Unicode (a lone
    surrogate such as ``\\ud800``, which JSON escapes allow and UTF-8 cannot encode)."""
    stack: list[tuple[str, Any]] = list(row.items())
    while stack:
        field, value = stack.pop(0)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"{field}: character {exc.start} is a lone surrogate "
                                 f"({value[exc.start]!r}), not valid Unicode") from None
        elif isinstance(value, dict):
            stack[:0] = [(f"{field}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            stack[:0] = [(f"{field}[{i}]", v) for i, v in enumerate(value)]
    return row


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
        or any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in value)
    ):  # NaN and Infinity parse as JSON numbers in Python: refused here
        raise ValueError(f"{key}: must be a list (or a JSON string) of {length} finite numbers, got {item[key]!r}")
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
        return _check_unicode({"id": row_id, "image": _check_image(item),
                               "conversations": _check_conversations(item["conversations"])})
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
        return _check_unicode(row)
    except ValueError as exc:
        problems.add(f"{where}: {exc}")
        return None


def read_json_document(path: Path) -> Any:
    """Read a JSON file.

    Raises:
        DataError: missing/unreadable file or invalid JSON (with line and column).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:  # ValueError: undecodable UTF-8, a NUL character in the path
        raise DataError(f"{path}: cannot read ({exc})") from exc
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except DuplicateKey:
        raise DataError(f"{path}{_where_duplicate(text)}; a JSON object names each key once") from None
    except RecursionError:
        data = TOO_DEEP
    if data is TOO_DEEP or _depth_exceeds(data, MAX_JSON_DEPTH):
        raise DataError(f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels; CoIN files need 4")
    return data


MAX_JSON_DEPTH = 64
TOO_DEEP = object()


class DuplicateKey(ValueError):
    """A JSON object with the same key twice (``json`` would keep the last one silently)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DuplicateKey
    return obj


class _Tagged(dict):  # type: ignore[type-arg]
    duplicate: str | None = None


def _tag_duplicates(pairs: list[tuple[str, Any]]) -> _Tagged:
    obj = _Tagged(pairs)
    keys = [k for k, _ in pairs]
    inner = [v.duplicate for v in obj.values() if isinstance(v, _Tagged) and v.duplicate]
    inner += [x.duplicate for v in obj.values() if isinstance(v, list) for x in v if isinstance(x, _Tagged) and x.duplicate]
    obj.duplicate = next((k for k in keys if keys.count(k) > 1), None) or (inner[0] if inner else None)
    return obj


def _where_duplicate(text: str) -> str:
    """`` row N: duplicate key 'k'`` for the first top-level row holding a duplicate key (parsed again, slowly)."""
    data = json.loads(text, object_pairs_hook=_tag_duplicates)
    rows = data if isinstance(data, list) else [data]
    for index, row in enumerate(rows):
        if isinstance(row, _Tagged) and row.duplicate:
            return f" row {index}: duplicate key {row.duplicate!r}"
    return ": duplicate key"


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether ``data`` nests lists/objects deeper than ``limit`` (iterative: no recursion on hostile input)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def read_json_list(path: Path) -> list[Any]:
    """Read a JSON file whose top level must be a list.

    Raises:
        DataError: missing/unreadable file, invalid JSON (with line and column), or not a list.
    """
    data = read_json_document(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: top level must be a list of rows, got {type(data).__name__}")
    return data
