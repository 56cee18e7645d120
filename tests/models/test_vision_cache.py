"""Frozen vision features computed once: the same greedy tokens as the uncached path, read back from disk."""

from __future__ import annotations

import pytest
import torch

from tiny_lora import tiny_with_lora

from cvqa_bench.bench.common import load_task_rows
from cvqa_bench.models.vision_cache import VisionFeatureCache, tower_is_frozen
from cvqa_bench.run.evaluation.evaluate import EvalInputs, generate_predictions

N_QUESTIONS = 20  # two batches of 16 and 4: a short last batch too


@pytest.fixture(scope="module")
def loaded():
    return tiny_with_lora()


@pytest.fixture(scope="module")
def rows():
    return [r for task in ("color", "shape") for r in load_task_rows("synthetic", task, "test")[: N_QUESTIONS // 2]]


def test_the_default_lora_model_has_a_frozen_tower(loaded):
    assert tower_is_frozen(loaded.model)


def predictions(loaded, rows, **kwargs):
    torch.set_num_threads(1)
    return generate_predictions(loaded.model, loaded.processor, rows, batch_size=16, max_new_tokens=6, **kwargs)


def test_cached_features_give_the_uncached_predictions(loaded, rows, tmp_path):
    plain = predictions(loaded, rows)
    cache = VisionFeatureCache(loaded.model, loaded.processor, tmp_path)
    inputs = EvalInputs(loaded.processor, rows, 16, False)
    cold = predictions(loaded, rows, inputs=inputs, vision=cache)
    assert (cache.computed, cache.loaded) == (N_QUESTIONS, 0)
    assert len(list(cache.folder.rglob("*.safetensors"))) == N_QUESTIONS  # one file per test image
    warm = predictions(loaded, rows, inputs=inputs, vision=cache)
    assert cache.loaded == N_QUESTIONS  # the second pass never ran the tower
    fresh = VisionFeatureCache(loaded.model, loaded.processor, tmp_path)  # a new process: from disk only
    from_disk = predictions(loaded, rows, vision=fresh)
    assert (fresh.computed, fresh.loaded) == (0, N_QUESTIONS)
    assert cold == warm == from_disk == plain


def test_cached_features_equal_the_towers_output_at_the_feature_layer(loaded, rows, tmp_path):
    cache = VisionFeatureCache(loaded.model, loaded.processor, tmp_path)
    inputs = EvalInputs(loaded.processor, rows[:4], 4, False)
    enc, pixels = inputs.batch(0)
    feats = torch.stack(cache.features(enc.image_keys, lambda: pixels))
    core = cache.parts.core
    with torch.no_grad():
        hidden = core.vision_tower(pixels["pixel_values"], output_hidden_states=True).hidden_states[-1]  # layer -1
    assert core.config.vision_feature_layer == -1 and core.config.vision_feature_select_strategy == "default"
    assert torch.equal(feats, hidden[:, 1:])  # "default" drops the CLS token: 16 patches of a 32 px / 8 px image
    assert feats.shape == (4, 16, 64)


def test_the_key_changes_with_the_tower_weights(loaded, tmp_path):
    before = VisionFeatureCache(loaded.model, loaded.processor, tmp_path).key
    tower = VisionFeatureCache(loaded.model, loaded.processor, tmp_path).parts.vision_tower
    param = next(tower.parameters())
    with torch.no_grad():
        param.add_(1.0)
        after = VisionFeatureCache(loaded.model, loaded.processor, tmp_path).key
        param.sub_(1.0)
    assert after != before
