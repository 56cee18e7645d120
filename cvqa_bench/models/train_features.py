"""Training on cached vision features: with a frozen vision tower, a stage whose rows show their images more
than once (several epochs, ``max_steps`` past one epoch, replay, joint) computes each image's selected
features once instead of once per batch.

The features come from the same :class:`~cvqa_bench.models.vision_cache.VisionFeatureCache` as evaluation
(on disk, keyed by tower, preprocessing and image bytes), replace the encoded rows' pixel values, and reach
the model as ``vision_features`` (``accept_vision_features``): only the projector and the language model
run per step. The rows, their order and the projector's gradient are unchanged; the tower just sees other
batches, which on this CPU in float32 gives the same bits (``tests/models/test_train_features.py``), and on
a GPU can differ in the last bits as any change of batch composition can. ``train.vision_cache: false``
turns it off.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from cvqa_bench.models.precision import autocast_for
from cvqa_bench.models.prompting import ENCODE_CHUNK, TrainCollator
from cvqa_bench.models.vision_cache import VisionFeatureCache, accept_vision_features, image_key

FEATURE_BUDGET_BYTES = 1 << 30  # a stage's features kept in memory up to this, as its pixels are


def rows_drawn(max_steps: int | None, rows_per_step: int, epochs: float, n_rows: int) -> int:
    """How many rows a stage's Trainer draws: ``max_steps`` optimizer steps, else ``epochs`` passes."""
    return max_steps * rows_per_step if max_steps else math.ceil(epochs * n_rows)


def repeats_images(drawn: int, rows: list[dict[str, Any]]) -> bool:
    """True when the stage draws more rows than it has distinct images, so some image is encoded twice."""
    return drawn > len({r["image"] for r in rows if r.get("image")})


def attach_vision_features(items: list[dict[str, Any]], cache: VisionFeatureCache, collator: TrainCollator,
                           model: torch.nn.Module, budget: int = FEATURE_BUDGET_BYTES) -> bool:
    """Give every encoded row with an image its image's selected features in place of pixel values.

    Each distinct image goes through the tower once (in chunks, or not at all when cached). Returns False,
    with the rows unchanged, when the features would not fit in ``budget`` bytes.
    """
    first: dict[str, dict[str, Any]] = {}
    for item in items:
        if item["image"]:
            first.setdefault(image_key(item["image"], collator.pad_to_square), item)
    keys = list(first)
    features: dict[str, torch.Tensor] = {}
    for start in range(0, len(keys), ENCODE_CHUNK):
        chunk = keys[start : start + ENCODE_CHUNK]
        with torch.no_grad(), autocast_for(model):  # the tower computes as in the Trainer's forward
            selected = cache.features(chunk, lambda c=chunk: collator.pixel_values([first[k] for k in c]))
        selected = selected.cpu()
        if not start and selected[0].numel() * selected.element_size() * len(keys) > budget:
            return False
        features.update(zip(chunk, selected.unbind()))
    accept_vision_features(model)
    for item in items:
        if item["image"]:
            item["vision_features"] = features[image_key(item["image"], collator.pad_to_square)]
            item["pixel_values"] = None
    return True
