"""A task's answers_file: the official answer lists (TextVQA_0.5.1_val.json layout) replace the test file's answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cvqa_bench.config import TaskSpec
from cvqa_bench.data.answers import read_answer_lists
from cvqa_bench.data.coin import load_task, validate_task
from cvqa_bench.data.rows import DataError

TEN = ["nokia"] * 7 + ["nokia phone"] * 3


def write_task(root: Path, annotations: object) -> TaskSpec:
    (root / "t").mkdir(parents=True, exist_ok=True)
    (root / "t" / "train.json").write_text(json.dumps([
        {"id": "a", "conversations": [{"from": "human", "value": "q?\nAnswer briefly."}, {"from": "gpt", "value": "x"}]}]))
    (root / "t" / "val.json").write_text(json.dumps([
        {"question_id": 34602, "text": "what brand?\nAnswer briefly.", "answer": "nokia"},
        {"question_id": 34603, "text": "what year?\nAnswer briefly.", "answer": "1984"}]))
    (root / "ann.json").write_text(json.dumps(annotations))
    return TaskSpec(name="TextVQA", train="t/train.json", test="t/val.json", scorer="vqa_evalai", answers_file="ann.json")


def test_the_official_lists_replace_the_single_answer(tmp_path: Path) -> None:
    spec = write_task(tmp_path, {"dataset_name": "textvqa", "data": [
        {"question_id": 34603, "answers": ["1984"] * 10, "image_id": "b"}, {"question_id": 34602, "answers": TEN}]})
    task = load_task(spec, tmp_path, tmp_path, check_images=False)
    assert [row["answers"] for row in task.test] == [TEN, ["1984"] * 10]


def test_a_plain_list_with_string_ids_is_read_too(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([{"question_id": "q1", "answers": ["a", "b"]}]))
    assert read_answer_lists(tmp_path / "a.json") == {"q1": ["a", "b"]}


def test_the_hash_of_the_test_items_follows_the_answers(tmp_path: Path) -> None:
    spec = write_task(tmp_path / "one", {"data": [{"question_id": 34602, "answers": TEN},
                                                 {"question_id": 34603, "answers": ["1984"]}]})
    other = write_task(tmp_path / "two", {"data": [{"question_id": 34602, "answers": TEN},
                                                  {"question_id": 34603, "answers": ["84"]}]})
    first = load_task(spec, tmp_path / "one", tmp_path / "one", check_images=False).test_hash()
    assert first != load_task(other, tmp_path / "two", tmp_path / "two", check_images=False).test_hash()


def test_a_question_without_official_answers_names_the_files_and_the_id(tmp_path: Path) -> None:
    spec = write_task(tmp_path, {"data": [{"question_id": 34602, "answers": TEN}]})
    with pytest.raises(DataError, match=r"t/val\.json: question_id '34603' has no answers in .*ann\.json"):
        load_task(spec, tmp_path, tmp_path, check_images=False)


@pytest.mark.parametrize(("annotations", "message"), [
    ({"rows": []}, r"ann\.json: expected a list of annotations or an object with a 'data' list, got dict"),
    ({"data": [{"question_id": 1, "answers": []}]}, r"ann\.json row 0: answers: must be a non-empty list of strings"),
    ({"data": [{"answers": ["a"]}]}, r"ann\.json row 0: question_id: must be a string or integer, got None"),
    ({"data": [{"question_id": 1, "answers": ["a"]}, {"question_id": "1", "answers": ["b"]}]},
     r"ann\.json row 1: duplicate question_id '1'"),
])
def test_a_malformed_annotation_file_is_one_line(tmp_path: Path, annotations: object, message: str) -> None:
    spec = write_task(tmp_path, annotations)
    problems = validate_task(spec, tmp_path, tmp_path, check_images=False)
    assert len(problems) == 1 and re.search(message, problems[0]), problems
