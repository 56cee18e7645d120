"""Issue 30's minor findings and issue 31.13, one test each (no model run: each is refused before one loads)."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest
import yaml

from conftest import invoke


def one_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


def test_31_13_malformed_yaml_in_a_set_value_is_one_line():
    one_error(invoke("plan", "regression", "--set", "train.max_steps=[1,"), "--set train.max_steps", "not valid YAML")


def test_a_duplicate_key_in_a_set_flow_mapping_is_refused():
    one_error(invoke("plan", "regression", "--set", "method.options={threshold: 0.3, threshold: 0.5}"),
              "--set method.options", "duplicate key 'threshold'")


def test_a_duplicate_key_in_a_coin_json_row_is_refused_naming_file_and_row(tmp_path):
    from cvqa_bench.data.rows import DataError, read_json_list

    path = tmp_path / "test.json"
    path.write_text('[{"question_id": "a", "text": "q", "answer": "x"},\n'
                    ' {"question_id": "b", "text": "q", "answer": "x", "answer": "y"}]')
    with pytest.raises(DataError, match=r"test\.json row 1: duplicate key 'answer'"):
        read_json_list(path)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_nan_or_infinity_in_answer_bbox_is_refused(value):
    from cvqa_bench.data.rows import DataError, Problems, check_test_row

    item = json.loads(f'{{"question_id": "q", "text": "where?", "answer": "x", "answer_bbox": [0, 0, 1, {value}]}}')
    with pytest.raises(DataError, match="test.json row 3: answer_bbox: must be a list .* of 4 finite numbers"):
        check_test_row(item, "test.json row 3", Problems(fail_fast=True))


def test_plan_refuses_a_negative_device_count():
    result = invoke("plan", "regression", "--devices", "-3")
    assert result.exit_code == 2 and "--devices" in result.output and "hours" not in result.stdout


def test_an_experiment_label_that_escapes_its_out_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = {"name": "x", "run_config": "configs/regression.yaml", "methods": ["../../escaped"], "seeds": [0],
            "variants": {"../../escaped": {"method": "finetune"}}, "out": "exp"}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(spec))
    one_error(invoke("experiment", "exp.yaml"), "exp.yaml", "label '../../escaped'", "safe identifier")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]


def test_every_seed_is_checked_before_the_first_one_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_error(invoke("run", "--sequence", "regression", "--seeds", "0,-5", "--out", "r"), "seed -5", "out of range")
    assert list(tmp_path.iterdir()) == []  # seed 0 did not start


def test_a_full_disk_names_the_file_being_written(tmp_path):
    from cvqa_bench.errors import describe_user_error
    from cvqa_bench.io import atomic_write

    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as caught:
        atomic_write(tmp_path / "cells.json", full)
    assert describe_user_error(caught.value).startswith(f"{tmp_path / 'cells.json'}: No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_prediction_record_is_named_with_its_file_and_line(tmp_path):
    from cvqa_bench.scoring.cells import score_predictions

    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "prediction": "x", "answers": ["x"]}\n{"id": "b", "prediction": 3, "answers": ["x"]}\n')
    with pytest.raises(ValueError, match=r"p\.jsonl:2: 'prediction' must be a string"):
        score_predictions(path, "exact")


def test_a_non_utf8_config_is_named():
    from cvqa_bench.config import ConfigError, read_yaml

    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"cvqa-latin1-{os.getpid()}.yaml"
    path.write_bytes(b"seed: 0\n# caf\xe9\n")
    try:
        with pytest.raises(ConfigError, match="not UTF-8"):
            read_yaml(path)
    finally:
        path.unlink()


def test_file_hashes_read_each_file_once_and_see_a_rewrite_with_the_old_mtime(tmp_path):
    import hashlib

    from cvqa_bench.data.file_hashes import FileHashes

    files = [tmp_path / f"{i}.bin" for i in range(5)]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 100)
    cache = tmp_path / "hashes.sqlite"
    first = FileHashes(cache, racy_seconds=0)
    assert first.digests(files) == {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    again = FileHashes(cache, racy_seconds=0)
    again.digests(files)
    assert (first.hashed, again.hashed) == (5, 0)  # the second pass read nothing
    st = files[2].stat()
    time.sleep(0.01)
    with open(files[2], "r+b") as fh:
        fh.write(b"\xff")  # same size, same inode
    os.utime(files[2], ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime set back: ctime still moves
    third = FileHashes(cache, racy_seconds=0)
    assert third.digests([files[2]])[str(files[2])] == hashlib.sha256(files[2].read_bytes()).hexdigest()
    assert third.hashed == 1
    (cache).write_bytes(b"not a database")  # a damaged cache only costs time
    assert FileHashes(cache, racy_seconds=0).digests([files[0]])[str(files[0])] == hashlib.sha256(bytes(100)).hexdigest()


def test_a_batch_of_images_holds_one_full_size_decode_at_a_time(monkeypatch):
    """Huge images under max_image_pixels: the processor gets each decode in turn, never the batch's at once."""
    import weakref

    import torch
    from PIL import Image

    import cvqa_bench.models.prompting as prompting
    from cvqa_bench.bench.common import load_task_rows
    from cvqa_bench.config import ModelSpec
    from cvqa_bench.models.load import load_model
    from cvqa_bench.run.evaluation.evaluate import EvalInputs

    alive = {"now": 0, "most": 0}

    def decode(path: str) -> Image.Image:  # the uncached decode, counted while it lives
        with Image.open(path) as img:
            image = img.convert("RGB")
        alive["now"] += 1
        alive["most"] = max(alive["most"], alive["now"])
        weakref.finalize(image, lambda: alive.__setitem__("now", alive["now"] - 1))
        return image

    monkeypatch.setattr(prompting, "_load_image", decode)
    processor = load_model(ModelSpec()).processor
    train, test = load_task_rows("synthetic", "color", "train")[:12], load_task_rows("synthetic", "color", "test")[:12]
    collator = prompting.TrainCollator(processor, 512)
    steps = {
        "encode_rows": lambda: collator.encode_rows(train, keep_pixels=False),
        "image_inputs": lambda: collator.image_inputs(collator.encode_rows(train, keep_pixels=False)),
        "encode_prompts": lambda: prompting.encode_prompts(processor, test),
        "eval pixels": lambda: EvalInputs(processor, test, 12, False).pixels(0),
    }
    for name, step in steps.items():
        alive["most"] = 0
        step()
        assert alive["most"] <= 2, (name, alive["most"])  # the one being processed and, at most, the one before
    one_at_a_time = torch.cat([prompting.encode_prompts(processor, [row])["pixel_values"] for row in test])
    assert torch.equal(prompting.encode_prompts(processor, test)["pixel_values"], one_at_a_time)
