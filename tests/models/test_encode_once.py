"""Training rows encoded once per stage give the same batches as the per-batch collator."""

from __future__ import annotations

import pytest
import torch

from cvqa_bench.bench.common import load_task_rows
from cvqa_bench.config import ModelSpec
from cvqa_bench.models.load import load_model
from cvqa_bench.models.prompting import IGNORE_INDEX, TrainCollator, conversation_segments


@pytest.fixture(scope="module")
def processor():
    return load_model(ModelSpec()).processor


@pytest.fixture(scope="module")
def rows():
    return load_task_rows("synthetic", "color", "train")[:40] + load_task_rows("synthetic", "mcq", "train")[:30]


def test_pre_encoded_batches_equal_per_batch_collation(processor, rows):
    collator = TrainCollator(processor, 512)
    kept, dropped = collator.encode_rows(rows), collator.encode_rows(rows, keep_pixels=False)
    assert all(item["image_inputs"]["pixel_values"] is not None for item in kept)
    assert all(item["image_inputs"] is None for item in dropped)
    for batch in ([rows[i] for i in (3, 50, 0, 41, 7)], rows[:16], rows[60:]):  # mixed tasks and lengths
        indices = [rows.index(r) for r in batch]
        expected = collator(batch)
        for encoded in (kept, dropped):
            got = collator([encoded[i] for i in indices])
            assert got.keys() == expected.keys() == {"input_ids", "attention_mask", "labels", "pixel_values"}
            for key in expected:
                assert got[key].dtype == expected[key].dtype and torch.equal(got[key], expected[key]), key


def test_encoded_row_is_its_rendered_conversation_with_answer_labels(processor, rows):
    row = rows[0]
    item = TrainCollator(processor, 512).encode_rows([row])[0]
    (prompt, _), (answer, target) = conversation_segments(processor, row)
    assert target
    answer_ids = processor.tokenizer(answer, add_special_tokens=False)["input_ids"]
    n_prompt = len(item["input_ids"]) - len(answer_ids)
    assert item["input_ids"][n_prompt:] == answer_ids
    assert item["labels"] == [IGNORE_INDEX] * n_prompt + answer_ids  # only the answer is learned
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert item["input_ids"].count(image_token) == 16  # 32 px image, 8 px patches, CLS dropped


def test_too_long_prompt_still_stops_the_stage(processor, rows):
    with pytest.raises(ValueError, match="exceeds train.max_length=8"):
        TrainCollator(processor, 8).encode_rows(rows[:2])
