"""Training on vision features computed once per image: the same loss and gradients as training on pixels, each
image through the tower once, and nothing changed when the features would not fit in memory."""

from __future__ import annotations

import pytest
import torch

from tiny_lora import tiny_with_lora

from cvqa_bench.bench.common import load_task_rows
from cvqa_bench.models.prompting import TrainCollator
from cvqa_bench.models.train_features import attach_vision_features, repeats_images, rows_drawn


@pytest.fixture(scope="module")
def loaded():
    return tiny_with_lora()


@pytest.fixture(scope="module")
def rows():
    return load_task_rows("synthetic", "color", "train")[:24]


def loss_and_grads(model, batch):
    torch.set_num_threads(1)
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_rows_drawn_and_repeats_by_hand():
    assert rows_drawn(300, 16, 1.0, 512) == 4800  # max_steps x rows per step
    assert rows_drawn(None, 16, 2.5, 100) == 250  # epochs x rows
    assert rows_drawn(None, 128, 1.0, 100_000) == 100_000
    rows = [{"image": f"{i % 3}.png"} for i in range(6)] + [{"image": None}]
    assert repeats_images(4, rows) and not repeats_images(3, rows)  # 3 distinct images


def test_features_give_the_pixels_loss_and_gradients(loaded, rows):
    model = loaded.model
    model.train()
    collator = TrainCollator(loaded.processor, 512)
    with_pixels = collator.encode_rows(rows)
    with_features = collator.encode_rows(rows)
    assert attach_vision_features(with_features, collator, model)
    assert all("pixel_values" not in it["image_inputs"] and it["vision_features"] is not None for it in with_features)
    for indices in ([0, 5, 9, 13], list(range(8, 24))):  # batches unlike the feature chunk (all 24 at once)
        pixels_batch = collator([with_pixels[i] for i in indices])
        features_batch = collator([with_features[i] for i in indices])
        assert "pixel_values" in pixels_batch and "vision_features" in features_batch
        assert "pixel_values" not in features_batch
        loss_p, grads_p = loss_and_grads(model, pixels_batch)
        loss_f, grads_f = loss_and_grads(model, features_batch)
        assert torch.equal(loss_p, loss_f)
        assert grads_f.keys() == grads_p.keys() and any("multi_modal_projector" in n for n in grads_p)
        for name in grads_p:
            assert torch.equal(grads_p[name], grads_f[name]), name


def test_the_projector_in_place_at_call_time_is_used(loaded, rows):
    """A second forward with other weights (LwF's teacher) projects the features with those weights."""
    model = loaded.model
    collator = TrainCollator(loaded.processor, 512)
    items = collator.encode_rows(rows[:4])
    pixels_batch = collator(items)
    attach_vision_features(items, collator, model)
    features_batch = collator(items)
    projector = loaded.processor.family.modules(model).projector
    saved = {k: v.clone() for k, v in projector.state_dict().items()}
    try:
        with torch.no_grad():
            for param in projector.parameters():
                param.mul_(-0.5)
            plain, cached = model(**pixels_batch).logits, model(**features_batch).logits
        assert torch.equal(plain, cached)
    finally:
        projector.load_state_dict(saved)


def test_each_distinct_image_goes_through_the_tower_once(loaded, rows):
    collator = TrainCollator(loaded.processor, 512)
    repeated = rows[:5] * 4  # 20 rows, 5 images
    items = collator.encode_rows(repeated)
    seen: list[int] = []

    def count_images(_module, args, kwargs):
        seen.append(len(args[0] if args else kwargs["pixel_values"]))

    handle = loaded.processor.family.modules(loaded.model).vision_tower.register_forward_pre_hook(count_images, with_kwargs=True)
    try:
        assert attach_vision_features(items, collator, loaded.model)
    finally:
        handle.remove()
    assert seen == [5]  # one tower call on the 5 distinct images
    assert all(items[i]["vision_features"] is items[i + 5]["vision_features"] for i in range(15))


def test_over_the_memory_budget_the_rows_keep_their_pixels(loaded, rows):
    collator = TrainCollator(loaded.processor, 512)
    items = collator.encode_rows(rows[:6])
    one_image = 16 * 64 * 4  # tiny model: 16 patches x width 64 x float32
    assert not attach_vision_features(items, collator, loaded.model, budget=6 * one_image - 1)
    assert all(it["image_inputs"] is not None and "vision_features" not in it for it in items)
    assert attach_vision_features(items, collator, loaded.model, budget=6 * one_image)
