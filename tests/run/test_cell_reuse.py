"""Exact reuse of matrix cells: the key's weight fingerprint, and a LLaCA run with reuse on vs off."""

from __future__ import annotations

import hashlib
import json
import struct

import torch

from cvqa_bench.methods.base import Trainables
from cvqa_bench.models.fingerprint import tensors_fingerprint
from cvqa_bench.run.evaluation.eval_cells import WeightsFingerprint


def test_fingerprint_is_blake2b_of_name_dtype_shape_and_bytes():
    expected = hashlib.blake2b(digest_size=32)
    expected.update(b"w|torch.float32|(2,)|" + struct.pack("<2f", 1.0, 2.0))
    assert tensors_fingerprint([("w", torch.tensor([1.0, 2.0]))]) == expected.hexdigest()


def test_fingerprint_sees_one_ulp_a_name_and_a_dtype():
    base = tensors_fingerprint([("w", torch.tensor([1.0, 2.0]))])
    assert tensors_fingerprint([("w", torch.tensor([1.0, 2.0]).clone())]) == base
    assert tensors_fingerprint([("w", torch.tensor([1.0, float(torch.nextafter(torch.tensor(2.0), torch.tensor(3.0)))]))]) != base
    assert tensors_fingerprint([("v", torch.tensor([1.0, 2.0]))]) != base
    assert tensors_fingerprint([("w", torch.tensor([1.0, 2.0], dtype=torch.float64))]) != base
    assert tensors_fingerprint([("w", torch.tensor([1.0, 2.0], dtype=torch.bfloat16))]) != base


def test_weights_fingerprint_covers_a_frozen_tensor_changed_in_place():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].requires_grad_(False)  # frozen "base"; model[1] is trainable
    fingerprint = WeightsFingerprint(model, Trainables(model))
    first = fingerprint()
    assert fingerprint() == first
    with torch.no_grad():
        model[0].weight[0, 0] += 1.0  # a method writing into a frozen tensor
    assert fingerprint() != first


def run(cvqa, out, config, sequence, *extra):
    result = cvqa("run", "--config", config, "--sequence", sequence, "--method", "llaca", "--out", out,
                  "--set", "train.max_steps=4", *extra)
    assert result.exit_code == 0, result.output
    return out


def test_llaca_reuses_the_hand_counted_cells_byte_identical_to_computing_them(cvqa, tmp_path, small_config,
                                                                              llaca_sequence):
    on = run(cvqa, tmp_path / "on", small_config, llaca_sequence)
    off = run(cvqa, tmp_path / "off", small_config, llaca_sequence, "--set", "eval.reuse_cells=false")
    # color and count form LLaCA group 0, position group 1. Stage 0 (base) and stage 1 (g0 after color)
    # are new for all 3 tasks; stage 2 retrains g0 (count), and position, unmatched, uses the newest group
    # g0: 3 new; stage 3 trains g1 (position): color and count still see g0 as after stage 2 -> 2 reused.
    cells = json.loads((on / "cells.json").read_text())
    reused = {name: c["reused_from"] for name, c in cells.items() if c["reused_from"]}
    assert reused == {"predictions/3-position/color.jsonl": "predictions/2-count/color.jsonl",
                      "predictions/3-position/count.jsonl": "predictions/2-count/count.jsonl"}
    assert json.loads((on / "manifest.json").read_text())["cells"] == {"computed": 10, "reused": 2}
    assert json.loads((off / "manifest.json").read_text())["cells"] == {"computed": 12, "reused": 0}
    for kind in ("predictions", "scores"):
        files = sorted(p.relative_to(on) for p in (on / kind).rglob("*.json*") if not p.name.endswith(".inputs.json"))
        assert len(files) == 12
        for rel in files:
            assert (on / rel).read_bytes() == (off / rel).read_bytes(), rel
    assert (on / "matrix.csv").read_bytes() == (off / "matrix.csv").read_bytes()


def test_sort_by_length_orders_prompts_by_token_count_keeping_ties_in_order():
    from cvqa_bench.config import ModelSpec
    from cvqa_bench.models.load import load_model
    from cvqa_bench.run.evaluation.evaluate import length_order

    processor = load_model(ModelSpec()).processor
    texts = ["what colour is the big square in the picture", "what colour", "what colour is it", "what colour"]
    rows = [{"question_id": i, "text": t, "answers": ["x"]} for i, t in enumerate(texts)]
    # each text is a word-prefix of the next longer one, so the token counts grow with the words;
    # the two equal prompts keep their order (stable sort)
    assert length_order(processor, rows) == [1, 3, 2, 0]
