"""Official answer lists from an annotation file, keyed by question id (a task's ``answers_file``).

CoIN's TextVQA evaluation scores ``val.json``'s questions against the ten human answers of the
official ``TextVQA_0.5.1_val.json`` (``llava/eval/CoIN/eval_textvqa.py``: ``json.load(f)['data']``,
keyed by ``question_id``), not against the one ``answer`` the question file carries. The file may be
that layout (``{"data": [{"question_id", "answers"}, ...]}``) or a plain list of such objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cvqa_bench.data.caption_refs import apply_caption_refs, is_coco_captions
from cvqa_bench.data.rows import DataError, Problems, read_json_document


def read_answer_lists(path: Path, data: Any = None) -> dict[str, list[str]]:
    """Question id (as a string) -> its answer list, from an annotation file (``data``: its parsed JSON).

    Raises:
        DataError: unreadable file, another layout, a row without a question id or answers, or an id twice.
    """
    data = read_json_document(path) if data is None else data
    rows = data.get("data") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a list of annotations or an object with a 'data' list, "
                        f"got {type(data).__name__}")
    answers: dict[str, list[str]] = {}
    for index, row in enumerate(rows):
        where = f"{path} row {index}"
        qid = row.get("question_id") if isinstance(row, dict) else None
        if isinstance(qid, bool) or not isinstance(qid, str | int):
            raise DataError(f"{where}: question_id: must be a string or integer, got {qid!r}")
        values = row.get("answers")
        if not isinstance(values, list) or not values or not all(isinstance(a, str) for a in values):
            raise DataError(f"{where}: answers: must be a non-empty list of strings, got {values!r}")
        if str(qid) in answers:
            raise DataError(f"{where}: duplicate question_id {qid!r}")
        answers[str(qid)] = list(values)
    return answers


def apply_answer_lists(test_rows: list[dict[str, Any]], path: Path, test_file: Path, problems: Problems) -> None:
    """Replace each test row's answers by its list from the annotation file ``path``; report what cannot be.

    A COCO caption file (``{"images", "annotations"}``, UCIT's captions) gives row k the references of
    ``image_id`` k + 1 (:mod:`cvqa_bench.data.caption_refs`).
    """
    try:
        data = read_json_document(path)
        if is_coco_captions(data):
            apply_caption_refs(test_rows, data, path, problems)
            return
        answers = read_answer_lists(path, data)
    except DataError as exc:
        problems.add(str(exc))
        return
    for row in test_rows:
        found = answers.get(row["question_id"])
        if found is None:
            problems.add(f"{test_file}: question_id {row['question_id']!r} has no answers in {path}")
        else:
            row["answers"] = list(found)
