"""CoIN-format loading and validation on hand-written files; data-root resolution."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cvqa_bench.config import SequenceSpec, TaskSpec
from cvqa_bench.data import coin, images
from cvqa_bench.data.coin import DataError, extract_instruction, file_sha256, load_task, test_items_hash
from cvqa_bench.data.sources import image_root, load_sequence_data, resolve_data_root, validate_sequence_data

SPEC = TaskSpec(name="t", train="t/train.json", test="t/test.json", scorer="exact")


def human(value: str) -> dict[str, str]:
    return {"from": "human", "value": value}


def gpt(value: str) -> dict[str, str]:
    return {"from": "gpt", "value": value}


def good_train() -> list[dict[str, Any]]:
    return [
        {"id": 7, "image": "a/1.png", "conversations": [human("<image>\nWhat is it?\nAnswer briefly."), gpt("cat")]},
        {"id": "x2", "image": "a/2.png", "conversations": [
            human("What colour?\nOne word.\n<image>"), gpt("red"), human("Sure?"), gpt("yes")]},
        {"id": "x3", "image": "a/1.png", "conversations": [human("<image>\nWho?\nAnswer briefly."), gpt("me")],
         "extra_key": "dropped"},
        {"id": "text-only", "conversations": [human("Say hi.\nAnswer briefly."), gpt("hi")]},
    ]


def good_test() -> list[dict[str, Any]]:
    return [
        {"question_id": 1, "image": "a/1.png", "text": "What is it?\nAnswer briefly.", "answer": "cat"},
        {"question_id": "q2", "image": "a/2.png", "text": "Colour?\nAnswer briefly.", "answers": ["red", "red", "pink"]},
        {"question_id": 3, "image": "a/2.png", "text": "Box: the cat.", "answer": "[0.10,0.20,0.50,0.60]",
         "answer_bbox": [3, 4, 10, 12], "size": [20, 20], "note": "dropped"},
    ]


def write_task(root: Path, train: Any = None, test: Any = None, raw_train: str | None = None) -> Path:
    """A data root with ``t/train.json``, ``t/test.json`` and two 4x4 PNGs under ``images/a``."""
    (root / "t").mkdir(parents=True, exist_ok=True)
    (root / "images" / "a").mkdir(parents=True, exist_ok=True)
    for name in ("1.png", "2.png"):
        Image.new("RGB", (4, 4), (10, 20, 30)).save(root / "images" / "a" / name)
    text = raw_train if raw_train is not None else json.dumps(good_train() if train is None else train)
    (root / "t" / "train.json").write_text(text)
    (root / "t" / "test.json").write_text(json.dumps(good_test() if test is None else test))
    return root


def load(root: Path, **kw: Any) -> coin.TaskData:
    return load_task(SPEC, root, root / "images", **kw)


def test_rows_are_converted_to_the_harness_format(tmp_path: Path) -> None:
    root = write_task(tmp_path)
    data = load(root)
    images = (tmp_path / "images").absolute()
    assert data.train[0] == {"id": "7", "image": str(images / "a" / "1.png"),
                             "conversations": [human("<image>\nWhat is it?\nAnswer briefly."), gpt("cat")]}
    assert len(data.train[1]["conversations"]) == 4
    assert "extra_key" not in data.train[2]
    assert data.train[3]["image"] is None
    assert data.test[0] == {"question_id": "1", "image": str(images / "a" / "1.png"),
                            "text": "What is it?\nAnswer briefly.", "answers": ["cat"]}
    assert data.test[1]["answers"] == ["red", "red", "pink"]
    assert data.test[2] == {"question_id": "3", "image": str(images / "a" / "2.png"), "text": "Box: the cat.",
                            "answers": ["[0.10,0.20,0.50,0.60]"], "answer_bbox": [3, 4, 10, 12], "size": [20, 20]}
    json.dumps(data.train + data.test)  # plain JSON-able rows


def test_instructions_are_distinct_and_in_first_seen_order(tmp_path: Path) -> None:
    data = load(write_task(tmp_path))
    assert data.instructions == ("Answer briefly.", "One word.")
    assert data.test_instructions == ("Answer briefly.", "Box: the cat.")


@pytest.mark.parametrize(("rule", "prompt", "expected"), [
    ("last_line", "<image>\nWhat is it?\nAnswer the question using a single word or phrase.",
     "Answer the question using a single word or phrase."),
    ("last_line", "What is it?\n  Answer briefly.  \n\n<image>", "Answer briefly."),
    ("last_line", "<image> What is it?", "What is it?"),
    ("last_line_before_colon", "<image>\nPlease provide the bounding box coordinate of the region this sentence "
     "describes: woman in red: left.", "Please provide the bounding box coordinate of the region this sentence "
     "describes"),
    ("last_line_before_colon", "<image>\nNo colon here", "No colon here"),
    # second_line counts the <image> line, as CoIN's LoRASelect does: value.split('\n')[1]
    ("second_line", "<image>\nWhat is the object in the image?\nName it in one word.\nThanks.",
     "What is the object in the image?"),
    ("second_line", "What is it?\nName it in one word.\n<image>", "Name it in one word."),
    ("second_line", "<image>\n\nOnly one line", "Only one line"),
])
def test_extract_instruction(rule: str, prompt: str, expected: str) -> None:
    assert extract_instruction(prompt, rule) == expected


def test_extract_instruction_rejects_a_prompt_without_text() -> None:
    with pytest.raises(ValueError, match="no text besides <image>"):
        extract_instruction(" <image>\n\n", "last_line")


def bad_train_row(**change: Any) -> list[dict[str, Any]]:
    rows = good_train()
    rows[1] = {**rows[1], **change}
    for key, value in change.items():
        if value is ...:
            del rows[1][key]
    return rows


def bad_test_row(**change: Any) -> list[dict[str, Any]]:
    rows = good_test()
    rows[2] = {**rows[2], **change}
    for key, value in change.items():
        if value is ...:
            del rows[2][key]
    return rows


TRAIN_ROW_ERRORS = [
    (bad_train_row(id=...), "missing field 'id'"),
    (bad_train_row(id=1.5), "id: must be a string or integer, got float"),
    (bad_train_row(id=True), "id: must be a string or integer, got bool"),
    (bad_train_row(conversations=...), "missing field 'conversations'"),
    (bad_train_row(conversations="hi"), "conversations: must be a list of turns, got str"),
    (bad_train_row(conversations=[human("hi")]), "needs at least one human and one gpt turn"),
    (bad_train_row(conversations=[gpt("a"), human("b")]), "conversations[0].from: expected 'human'"),
    (bad_train_row(conversations=[human("a"), human("b")]), "conversations[1].from: expected 'gpt'"),
    (bad_train_row(conversations=[human("a"), gpt("b"), human("c")]), "last turn must be the gpt answer"),
    (bad_train_row(conversations=[human("a"), {"from": "gpt"}]), "conversations[1]: must be an object"),
    (bad_train_row(conversations=[human("a"), gpt(3)]), "conversations[1].value: must be a string, got int"),
    (bad_train_row(conversations=[human("<image>\n"), gpt("b")]), "conversations[0].value: prompt has no text"),
    (bad_train_row(image=5), "image: must be a non-empty relative path or null"),
    (bad_train_row(id=7), "duplicate id '7' (first at row 0)"),
    (bad_train_row(image="../secret.png"), "image: '../secret.png' escapes the image folder"),
    (bad_train_row(image="a/../../x.png"), "escapes the image folder"),
    (bad_train_row(image="/etc/passwd"), "image: '/etc/passwd' is absolute"),
    (bad_train_row(image="a/missing.png"), "image: 'a/missing.png' not found"),
]


@pytest.mark.parametrize(("rows", "message"), TRAIN_ROW_ERRORS)
def test_train_row_errors_name_file_row_and_field(tmp_path: Path, rows: list, message: str) -> None:
    root = write_task(tmp_path, train=rows)
    with pytest.raises(DataError) as info:
        load(root)
    text = str(info.value)
    assert text.startswith(f"{(tmp_path / 't' / 'train.json').absolute()} row 1: ")
    assert message in text and "\n" not in text


TEST_ROW_ERRORS = [
    (bad_test_row(question_id=...), "missing field 'question_id'"),
    (bad_test_row(question_id=[1]), "question_id: must be a string or integer, got list"),
    (bad_test_row(question_id="1"), "duplicate question_id '1' (first at row 0)"),  # 1 and "1" collide
    (bad_test_row(text=...), "missing field 'text'"),
    (bad_test_row(text=""), "text: must be a non-empty string"),
    (bad_test_row(answer=...), "missing field 'answer' (a string) or 'answers'"),
    (bad_test_row(answer=3), "answer: must be a non-empty string, got 3"),
    (bad_test_row(answer=...,  answers=[]), "answers: must be a non-empty list of strings, got []"),
    (bad_test_row(answer=..., answers="cat"), "answers: must be a non-empty list of strings"),
    (bad_test_row(answer=..., answers=["cat", None]), "answers: every answer must be a string, got None"),
    (bad_test_row(answer_bbox=[1, 2, 3]), "answer_bbox: must be a list (or a JSON string) of 4 finite numbers"),
    (bad_test_row(size=[20, 0]), "size: width and height must be positive"),
    (bad_test_row(size="20x20"), "size: must be a list (or a JSON string) of 2 finite numbers"),
    ([*good_test()[:2], "not a row"], "row must be an object, got str"),
]


@pytest.mark.parametrize(("rows", "message"), TEST_ROW_ERRORS)
def test_test_row_errors_name_file_row_and_field(tmp_path: Path, rows: list, message: str) -> None:
    root = write_task(tmp_path, test=rows)
    with pytest.raises(DataError) as info:
        load(root)
    assert str(info.value).startswith(f"{(tmp_path / 't' / 'test.json').absolute()} row 2: ")
    assert message in str(info.value)


@pytest.mark.parametrize(("raw", "message"), [
    ('[{"id": 1,\n  "conversations": [}', "not valid JSON: Expecting value (line 2, column 21)"),
    ('{"id": 1}', "top level must be a list of rows, got dict"),
    ("[]", "empty train split (no rows)"),
])
def test_file_level_errors(tmp_path: Path, raw: str, message: str) -> None:
    root = write_task(tmp_path, raw_train=raw)
    with pytest.raises(DataError, match=r"train\.json: " + message.replace("(", r"\(").replace(")", r"\)")):
        load(root)


def test_missing_file(tmp_path: Path) -> None:
    root = write_task(tmp_path)
    (root / "t" / "test.json").unlink()
    with pytest.raises(DataError, match=r"t/test\.json: file not found"):
        load(root)


def test_corrupt_image_is_reported_and_skipped_without_checks(tmp_path: Path) -> None:
    root = write_task(tmp_path)
    (root / "images" / "a" / "2.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"train\.json row 1: image: 'a/2\.png' cannot be read as an image"):
        load(root)
    assert len(load(root, check_images=False).train) == 4


def test_each_image_is_opened_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_task(tmp_path)
    opened: list[str] = []
    real_open = images.Image.open
    monkeypatch.setattr(images.Image, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    load(root)
    # a/1.png is used by 2 train rows and 1 test row, a/2.png by 1 train row and 2 test rows.
    assert sorted(Path(p).name for p in opened) == ["1.png", "2.png"]


def test_a_split_resolves_each_image_path_once_and_reports_every_row_that_names_a_bad_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train = [{"id": i, "image": f"a/{1 + i % 2}.png", "conversations": [human("<image>\nWhat?\nShort."), gpt("x")]}
             for i in range(40)]
    root = write_task(tmp_path, train=train)
    resolved: list[str] = []
    real_resolve = images.resolved
    monkeypatch.setattr(images, "resolved", lambda path: resolved.append(str(path)) or real_resolve(path))
    assert len(load(root).train) == 40
    # 2 distinct images per split (train and test), each resolved once: 4, not 40 + 3
    assert sorted(Path(p).name for p in resolved if p.endswith(".png")) == ["1.png", "1.png", "2.png", "2.png"]
    (root / "images" / "a" / "2.png").unlink()
    problems = coin.validate_task(SPEC, root, root / "images", max_problems=100)
    missing = [p for p in problems if "'a/2.png' not found" in p]
    assert [p.split("train.json ")[1].split(":")[0] for p in missing if "train.json" in p] == \
        [f"row {i}" for i in range(1, 40, 2)]  # all 20 rows that name it, each with its own row number

def test_validate_collects_every_problem_and_caps_the_list(tmp_path: Path) -> None:
    train = good_train() + [{"id": f"bad{i}", "conversations": []} for i in range(25)]
    test = bad_test_row(answer=3)
    root = write_task(tmp_path, train=train, test=test)
    problems = coin.validate_task(SPEC, root, root / "images", max_problems=20)
    assert len(problems) == 21
    assert problems[0].endswith("train.json row 4: conversations: needs at least one human and one gpt turn, "
                                "got 0 turn(s)")
    assert problems[-1] == "... and 6 more problems"  # 25 bad train rows + 1 bad test row
    assert coin.validate_task(SPEC, write_task(tmp_path / "ok"), tmp_path / "ok" / "images") == []


def test_test_items_hash_by_hand(tmp_path: Path) -> None:
    rows = [{"question_id": "1", "image": str(tmp_path / "img" / "x" / "1.png"), "text": "q", "answers": ["a"]}]
    canonical = '[{"answers":["a"],"image":"x/1.png","question_id":"1","text":"q"}]'
    assert test_items_hash(rows, tmp_path / "img") == hashlib.sha256(canonical.encode()).hexdigest()
    moved = [{**rows[0], "image": "/elsewhere/img/x/1.png"}]
    assert test_items_hash(moved, Path("/elsewhere/img")) == test_items_hash(rows, tmp_path / "img")
    assert test_items_hash(rows + moved) != test_items_hash(moved + rows)


def test_file_sha256_known_digest(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert file_sha256(tmp_path / "f", chunk_size=2) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def sequence(**kw: Any) -> SequenceSpec:
    return SequenceSpec(name="hand", tasks=[SPEC.model_dump()], **kw)


def test_data_root_precedence(tmp_path: Path) -> None:
    yaml_dir = tmp_path / "cfg"
    write_task(yaml_dir / "data")
    cli_root = write_task(tmp_path / "cli")
    seq = sequence(data_root="data")
    assert resolve_data_root(seq, yaml_dir / "s.yaml", None) == (yaml_dir / "data").resolve()
    assert resolve_data_root(seq, yaml_dir / "s.yaml", str(cli_root)) == cli_root.resolve()
    with pytest.raises(DataError, match="--data-root .*nowhere: folder not found"):
        resolve_data_root(seq, yaml_dir / "s.yaml", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"s\.yaml: data_root 'gone' .* not found; pass --data-root"):
        resolve_data_root(sequence(data_root="gone"), yaml_dir / "s.yaml", None)
    with pytest.raises(DataError, match="has no data_root and no generator; pass --data-root"):
        resolve_data_root(sequence(), yaml_dir / "s.yaml", None)


def test_image_root_and_task_override(tmp_path: Path) -> None:
    seq = SequenceSpec(name="hand", image_folder="imgs", tasks=[
        SPEC.model_dump(), {**SPEC.model_dump(), "name": "u", "image_folder": "other"}])
    assert image_root(seq, tmp_path) == tmp_path / "imgs"
    assert image_root(seq, tmp_path, seq.tasks[0]) == tmp_path / "imgs"
    assert image_root(seq, tmp_path, seq.tasks[1]) == tmp_path / "other"


def test_load_and_validate_sequence(tmp_path: Path) -> None:
    write_task(tmp_path / "data")
    seq = sequence(data_root="data")
    [task] = load_sequence_data(seq, tmp_path / "s.yaml")
    assert task.spec.name == "t" and len(task.train) == 4 and len(task.test) == 3
    assert validate_sequence_data(seq, tmp_path / "s.yaml") == {"t": []}
    (tmp_path / "data" / "images" / "a" / "1.png").unlink()
    problems = validate_sequence_data(seq, tmp_path / "s.yaml")["t"]
    assert len(problems) == 3 and all("'a/1.png' not found" in p for p in problems)
