"""What makes a training stage cheaper changes no number: cached vision features in a whole run, no KV cache
while training, the parameter count taken once for ``total_flos``, AdamW's foreach update, and the garbage
collector kept off the run's long-lived objects."""

from __future__ import annotations

import gc
import json

import pytest
import torch
from transformers import Trainer, TrainingArguments

from cvqa_bench.config import ModelSpec
from cvqa_bench.models.load import load_model
from cvqa_bench.run.loop import long_lived_objects_frozen
from cvqa_bench.run.training.train import kv_cache_off

from conftest import N_TRAIN


def run(cvqa, out, config, sequence, *extra):
    result = cvqa("run", "--config", config, "--sequence", sequence, "--out", out, "--set", "train.max_steps=6",
                  *extra)
    assert result.exit_code == 0, result.output
    return out


def test_a_run_on_cached_vision_features_writes_the_same_bytes(cvqa, tmp_path, small_config, small_sequence):
    # 6 steps of batch 8 draw 48 rows from 32 (each with its own image): the images repeat, so the stages
    # train on cached features unless train.vision_cache is off.
    assert 6 * 8 > N_TRAIN
    on = run(cvqa, tmp_path / "on", small_config, small_sequence)
    off = run(cvqa, tmp_path / "off", small_config, small_sequence, "--set", "train.vision_cache=false")
    stages = sorted(p.name for p in (on / "stages").iterdir())
    assert len(stages) == 3
    for stage in stages:
        assert json.loads((on / "stages" / stage / "DONE.json").read_text())["vision_features"] is True
        assert json.loads((off / "stages" / stage / "DONE.json").read_text())["vision_features"] is False
        for name in ("weights.safetensors", "non_lora.safetensors"):
            assert (on / "stages" / stage / name).read_bytes() == (off / "stages" / stage / name).read_bytes()
    files = sorted(p.relative_to(on) for p in (on / "predictions").rglob("*.jsonl"))
    assert len(files) == 12
    for rel in files:
        assert (on / rel).read_bytes() == (off / rel).read_bytes(), rel
    assert (on / "matrix.csv").read_bytes() == (off / "matrix.csv").read_bytes()
    assert "training on vision features computed once per image" in (on / "run.log").read_text()


def test_one_epoch_of_distinct_images_keeps_the_pixels(cvqa, tmp_path, small_config, small_sequence):
    out = tmp_path / "one-epoch"
    result = cvqa("run", "--config", small_config, "--sequence", small_sequence, "--out", out,
                  "--set", "train.max_steps=4")  # 32 rows drawn from 32 images: nothing to gain
    assert result.exit_code == 0, result.output
    for done in (out / "stages").glob("*/DONE.json"):
        assert json.loads(done.read_text())["vision_features"] is False


@pytest.fixture(scope="module")
def loaded():
    torch.manual_seed(0)
    return load_model(ModelSpec())


def test_training_forward_builds_no_kv_cache_and_generation_still_does(loaded):
    model = loaded.model
    ids = torch.tensor([[1, 5, 6, 7]])
    assert model(input_ids=ids).past_key_values is not None  # the config's default: a cache
    with kv_cache_off(model):
        assert model(input_ids=ids).past_key_values is None
    assert model(input_ids=ids).past_key_values is not None  # restored
    assert all(getattr(m.config, "use_cache", True) is not False for m in model.modules() if hasattr(m, "config"))


def test_total_flos_estimate_is_hfs_with_the_parameters_counted_once(loaded, tmp_path, monkeypatch):
    from cvqa_bench.methods.base import Method, TaskInfo, Trainables
    from cvqa_bench.run.training.loss_hook import MethodTrainer

    model = loaded.model
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    ours = MethodTrainer(model=model, args=args, method=Method(), task=TaskInfo(index=0, name="t", instructions=("q",)),
                         trainables=Trainables(model))
    hf = Trainer(model=model, args=args)
    inputs = {"input_ids": torch.ones(16, 45, dtype=torch.long)}
    expected = 6 * 16 * 45 * model.num_parameters(exclude_embeddings=True)  # HF's formula, by hand
    assert hf.floating_point_ops(inputs) == expected
    calls = []
    counter = model.num_parameters
    monkeypatch.setattr(model, "num_parameters", lambda **kw: calls.append(kw) or counter(**kw))
    assert [ours.floating_point_ops(inputs) for _ in range(5)] == [expected] * 5
    assert len(calls) == 1
    assert ours.floating_point_ops({"pixel_values": torch.ones(1)}) == 0


def test_foreach_adamw_updates_as_the_per_tensor_loop_to_the_bit():
    torch.manual_seed(0)
    shapes = [(16, 64), (64, 16), (64, 64), (64,)]
    start = [torch.randn(s) for s in shapes]
    results = []
    for foreach in (False, True):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        optimizer = torch.optim.AdamW(params, lr=5e-3, weight_decay=0.0, foreach=foreach)
        grads = torch.Generator().manual_seed(1)
        for step in range(50):
            for p in params:
                p.grad = torch.randn(p.shape, generator=grads)
            optimizer.param_groups[0]["lr"] = 5e-3 * (1 - step / 50)  # as a scheduler changes it
            optimizer.step()
        results.append(params)
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_long_lived_objects_are_frozen_for_the_run_and_handed_back():
    assert gc.get_freeze_count() == 0
    with long_lived_objects_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), long_lived_objects_frozen():
        raise RuntimeError("a failed stage")
    assert gc.get_freeze_count() == 0
