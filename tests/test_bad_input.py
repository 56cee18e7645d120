"""Bad input stops ``cvqa run`` before any training (issue 7 part 5): exit code 2, one ``error:`` line that
names the file (and the row index where there is a row), and an existing run folder given with ``--out``
left byte-for-byte unchanged.

Each test starts from a small valid CoIN-format data root written into ``tmp_path`` (one task, three
train and three test rows, PNG images) and breaks exactly one thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

TASK = "colors"
PROMPT = "What color is the square?\nAnswer the question using a single word or phrase."
COLOURS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255)}


@dataclass
class CoinData:
    """A valid one-task CoIN data root, its sequence YAML, a run config and an earlier run folder."""

    root: Path
    sequence: Path
    config: Path
    existing_run: Path

    @property
    def train(self) -> Path:
        return self.root / "data" / TASK / "train.json"

    @property
    def test(self) -> Path:
        return self.root / "data" / TASK / "test.json"

    @property
    def images(self) -> Path:
        return self.root / "data" / "images"

    def rows(self, path: Path) -> list[dict[str, Any]]:
        return json.loads(path.read_text())

    def write_rows(self, path: Path, rows: Any) -> None:
        path.write_text(json.dumps(rows, indent=1))

    def sequence_dict(self) -> dict[str, Any]:
        return yaml.safe_load(self.sequence.read_text())

    def write_sequence(self, data: dict[str, Any]) -> None:
        self.sequence.write_text(yaml.safe_dump(data, sort_keys=False))


def train_row(i: int, colour: str) -> dict[str, Any]:
    return {"id": f"train-{i}", "image": f"{colour}.png",
            "conversations": [{"from": "human", "value": f"<image>\n{PROMPT}"}, {"from": "gpt", "value": colour}]}


def test_row(i: int, colour: str) -> dict[str, Any]:
    return {"question_id": f"q{i}", "image": f"{colour}.png", "text": PROMPT, "answer": colour}


test_row.__test__ = False  # a row builder, not a test


@pytest.fixture
def coin(tmp_path: Path) -> CoinData:
    """Write the valid data root, sequence, run config and a finished-looking run folder."""
    root = tmp_path / "bench"
    images = root / "data" / "images"
    images.mkdir(parents=True)
    for name, rgb in COLOURS.items():
        Image.new("RGB", (32, 32), rgb).save(images / f"{name}.png")
    (root / "data" / TASK).mkdir()
    data = CoinData(root, root / "seq.yaml", root / "run.yaml", tmp_path / "earlier-run")
    data.write_rows(data.train, [train_row(i, c) for i, c in enumerate(COLOURS)])
    data.write_rows(data.test, [test_row(i, c) for i, c in enumerate(COLOURS)])
    data.write_sequence({
        "name": "tinycoin", "data_root": "data", "image_folder": "images",
        "tasks": [{"name": TASK, "train": f"{TASK}/train.json", "test": f"{TASK}/test.json", "scorer": "exact"}],
    })
    data.config.write_text(yaml.safe_dump({
        "seed": 0, "train": {"max_steps": 2, "batch_size": 2}, "eval": {"batch_size": 4},
        "method": {"name": "finetune"},
    }))
    run = data.existing_run
    (run / "stages" / f"1-{TASK}").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "matrix.csv").write_text(f"stage,trained_task,{TASK}\n0,zero-shot,0.0\n1,{TASK},100.0\n")
    (run / "manifest.json").write_text('{"seed": 0}\n')
    (run / "stages" / f"1-{TASK}" / "DONE.json").write_text('{"stage": 1}\n')
    return data


def run_cli(cvqa, coin: CoinData, *extra: str | Path, sequence: str | Path | None = None):
    """``cvqa run`` on the data root's sequence and config into the earlier run folder."""
    return cvqa("run", "--sequence", sequence or coin.sequence, "--config", coin.config, "--method", "finetune",
                "--out", coin.existing_run, *extra)


def assert_user_error(result, digest, coin: CoinData, before: dict[str, str], *fragments: str) -> str:
    """Exit 2, exactly one ``error:`` line holding every fragment, no traceback, run folder unchanged."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert digest(coin.existing_run) == before
    return lines[0]


def test_the_untouched_data_root_is_valid(cvqa, coin):
    """The baseline every other test breaks in one place passes validation and preparation."""
    from cvqa_bench.run.prepare import prepare
    from cvqa_bench.config import load_run_config

    result = cvqa("validate", coin.sequence)
    assert result.exit_code == 0, result.stderr
    prepared = prepare(load_run_config(coin.config, {"sequence": str(coin.sequence)}))
    assert [len(t.train) for t in prepared.tasks] == [3] and [len(t.test) for t in prepared.tasks] == [3]


# ---------------------------------------------------------------------------------- YAML and config


def test_malformed_sequence_yaml(cvqa, coin, digest):
    before = digest(coin.existing_run)
    coin.sequence.write_text("name: tinycoin\ntasks:\n  - name: [colors\n    scorer: exact\n")
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, str(coin.sequence), "malformed YAML")


def test_malformed_run_config_yaml(cvqa, coin, digest):
    before = digest(coin.existing_run)
    coin.config.write_text("train:\n  max_steps: 2\n lr: 0.1\n")
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, str(coin.config), "malformed YAML")


def test_run_config_that_is_not_a_mapping(cvqa, coin, digest):
    before = digest(coin.existing_run)
    coin.config.write_text("- train\n- eval\n")
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, str(coin.config), "mapping")


def test_typo_key_in_run_config(cvqa, coin, digest):
    before = digest(coin.existing_run)
    coin.config.write_text(yaml.safe_dump({"seed": 0, "train": {"max_step": 2}}))
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, str(coin.config), "train.max_step", "unknown key")


def test_unknown_key_in_a_task_of_the_sequence(cvqa, coin, digest):
    before = digest(coin.existing_run)
    data = coin.sequence_dict()
    data["tasks"][0]["scorrer"] = "exact"
    coin.write_sequence(data)
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, str(coin.sequence), "tasks.0.scorrer", "unknown key")


def test_unknown_method(cvqa, coin, digest):
    before = digest(coin.existing_run)
    result = cvqa("run", "--sequence", coin.sequence, "--config", coin.config, "--method", "replya",
                  "--out", coin.existing_run)
    assert_user_error(result, digest, coin, before, "unknown method 'replya'", "Did you mean 'replay'")


def test_unknown_method_in_the_run_config_names_the_file(cvqa, coin, digest):
    before = digest(coin.existing_run)
    coin.config.write_text(yaml.safe_dump({"seed": 0, "method": {"name": "llaac"}}))
    result = cvqa("run", "--sequence", coin.sequence, "--config", coin.config, "--out", coin.existing_run)
    assert_user_error(result, digest, coin, before, str(coin.config), "Did you mean 'llaca'")


def test_unknown_scorer_in_a_task(cvqa, coin, digest):
    before = digest(coin.existing_run)
    data = coin.sequence_dict()
    data["tasks"][0]["scorer"] = "vqa_acc"
    coin.write_sequence(data)
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, str(coin.sequence), "tasks.0.scorer", "unknown scorer 'vqa_acc'",
                      "Did you mean 'vqa'")


def test_unknown_sequence_name_suggests_the_close_one(cvqa, coin, digest):
    before = digest(coin.existing_run)
    result = run_cli(cvqa, coin, sequence="synthtic")
    assert_user_error(result, digest, coin, before, "unknown sequence 'synthtic'", "Did you mean 'synthetic'")


def test_sequence_named_in_the_run_config_is_used(cvqa, coin, digest):
    """A config's ``sequence:`` is the run's sequence when --sequence is not given."""
    before = digest(coin.existing_run)
    missing = coin.root / "no-such-sequence.yaml"
    coin.config.write_text(yaml.safe_dump({"seed": 0, "sequence": str(missing),
                                           "data_root": str(coin.root / "no-such-folder")}))
    result = cvqa("run", "--config", coin.config, "--out", coin.existing_run)
    assert_user_error(result, digest, coin, before, str(missing))


# ---------------------------------------------------------------------------------- data files and images


def test_missing_image(cvqa, coin, digest):
    before = digest(coin.existing_run)
    (coin.images / "blue.png").unlink()  # used by train row 2 (and test row 2)
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, f"{coin.train} row 2", "'blue.png'", "not found")


def test_corrupt_image(cvqa, coin, digest):
    before = digest(coin.existing_run)
    (coin.images / "green.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, f"{coin.train} row 1", "'green.png'", "cannot be read as an image")


def test_train_row_that_breaks_the_coin_schema(cvqa, coin, digest):
    before = digest(coin.existing_run)
    rows = coin.rows(coin.train)
    rows[1]["conversations"].reverse()  # gpt turn first
    coin.write_rows(coin.train, rows)
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, f"{coin.train} row 1", "conversations[0].from", "'human'")


def test_train_row_without_conversations(cvqa, coin, digest):
    before = digest(coin.existing_run)
    rows = coin.rows(coin.train)
    del rows[2]["conversations"]
    coin.write_rows(coin.train, rows)
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, f"{coin.train} row 2", "conversations")


def test_train_file_that_is_not_json(cvqa, coin, digest):
    before = digest(coin.existing_run)
    coin.train.write_text('[{"id": "a",\n  "image": }]')
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, str(coin.train), "not valid JSON", "line 2")


def test_empty_test_split(cvqa, coin, digest):
    before = digest(coin.existing_run)
    coin.write_rows(coin.test, [])
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, str(coin.test), "empty test split")


def test_missing_split_file(cvqa, coin, digest):
    before = digest(coin.existing_run)
    coin.test.unlink()
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, str(coin.test), "not found")


def test_duplicate_question_ids(cvqa, coin, digest):
    before = digest(coin.existing_run)
    rows = coin.rows(coin.test)
    rows[2]["question_id"] = rows[0]["question_id"]
    coin.write_rows(coin.test, rows)
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, f"{coin.test} row 2", "duplicate question_id 'q0'", "row 0")


def test_image_path_that_climbs_out_of_the_image_folder(cvqa, coin, digest):
    before = digest(coin.existing_run)
    (coin.root / "data" / "outside.png").write_bytes((coin.images / "red.png").read_bytes())  # exists, still refused
    rows = coin.rows(coin.test)
    rows[1]["image"] = "../outside.png"
    coin.write_rows(coin.test, rows)
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, f"{coin.test} row 1", "'../outside.png'", "escapes")


def test_absolute_image_path(cvqa, coin, digest):
    before = digest(coin.existing_run)
    absolute = str(coin.images / "red.png")  # exists, still refused
    rows = coin.rows(coin.train)
    rows[1]["image"] = absolute
    coin.write_rows(coin.train, rows)
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, f"{coin.train} row 1", repr(absolute), "absolute")


@pytest.mark.parametrize("field, value, message", [
    ("answer", 3, "answer: must be a non-empty string, got 3"),
    ("answers", ["red", 7], "answers: every answer must be a string, got 7"),
])
def test_answer_of_the_wrong_type(cvqa, coin, digest, field, value, message):
    before = digest(coin.existing_run)
    rows = coin.rows(coin.test)
    del rows[1]["answer"]
    rows[1][field] = value
    coin.write_rows(coin.test, rows)
    result = run_cli(cvqa, coin)
    assert_user_error(result, digest, coin, before, f"{coin.test} row 1", message)


def test_nothing_is_created_when_out_does_not_exist_yet(cvqa, coin, tmp_path):
    (coin.images / "red.png").unlink()
    out = tmp_path / "fresh-run"
    result = cvqa("run", "--sequence", coin.sequence, "--config", coin.config, "--out", out)
    assert result.exit_code == 2
    assert not out.exists()


def test_validate_reports_every_problem_not_just_the_first(cvqa, coin):
    (coin.images / "blue.png").unlink()
    rows = coin.rows(coin.test)
    rows[0]["answer"] = 3
    coin.write_rows(coin.test, rows)
    result = cvqa("validate", coin.sequence)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert any(f"{coin.train} row 2" in e and "'blue.png'" in e for e in errors), errors
    assert any(f"{coin.test} row 0" in e and "answer" in e for e in errors), errors
    assert any(f"{coin.test} row 2" in e and "'blue.png'" in e for e in errors), errors
    assert len(errors) == 3, errors
