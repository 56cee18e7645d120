"""Training on vision features computed once: with a frozen vision tower, a stage whose rows show their images
more than once (several epochs, ``max_steps`` past one epoch, replay, joint) runs each distinct image through
the tower once instead of once per batch.

The features are what the evaluation cache stores (``selected_features``: the tower's output at the
configured layer, as HF's ``get_image_features`` selects it), kept in memory for the stage in place of the
encoded rows' pixel values, and reach the model as ``vision_features`` (``accept_vision_features``): each
step runs only the projector and the language model. They are not written to disk: at the tiny size
computing a stage's 512 images costs less than reading them back, and at CoIN scale a training image's
features (1.2 MB for CLIP-L/336 in bf16) would pile up for images seen in one stage only. The rows, their
order and the projector's gradient are unchanged; the tower only sees other batches, which on this CPU in
float32 gives the same bits (``tests/models/test_train_features.py``), and on a GPU can change the last bits
as any change of batch composition can. ``train.vision_cache: false`` turns it off.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from cvqa_bench.models.precision import autocast_for
from cvqa_bench.models.prompting import ENCODE_CHUNK, VISION_FEATURES, TrainCollator
from cvqa_bench.models.vision_cache import accept_vision_features, llava_core, selected_features

FEATURE_BUDGET_BYTES = 1 << 30  # a stage's features kept in memory up to this, as its pixels are


def rows_drawn(max_steps: int | None, rows_per_step: int, epochs: float, n_rows: int) -> int:
    """How many rows a stage's Trainer draws: ``max_steps`` optimizer steps, else ``epochs`` passes."""
    return max_steps * rows_per_step if max_steps else math.ceil(epochs * n_rows)


def repeats_images(drawn: int, rows: list[dict[str, Any]]) -> bool:
    """True when the stage draws more rows than it has distinct images, so some image is encoded twice."""
    return drawn > len({r["image"] for r in rows if r.get("image")})


def attach_vision_features(items: list[dict[str, Any]], collator: TrainCollator, model: torch.nn.Module,
                           budget: int = FEATURE_BUDGET_BYTES) -> bool:
    """Give every encoded row with an image its image's selected features in place of pixel values.

    Each distinct image goes through the tower once, in chunks of ``ENCODE_CHUNK``. Returns False, with the
    rows unchanged, when the features would not fit in ``budget`` bytes.
    """
    first: dict[str, dict[str, Any]] = {}
    for item in items:
        if item["image"]:
            first.setdefault(item["image"], item)
    paths = list(first)
    core, features = llava_core(model), {}
    device = next(core.vision_tower.parameters()).device
    for start in range(0, len(paths), ENCODE_CHUNK):
        chunk = paths[start : start + ENCODE_CHUNK]
        with torch.no_grad(), autocast_for(model):  # the tower computes as in the Trainer's forward
            selected = selected_features(core, collator.pixel_values([first[p] for p in chunk]).to(device)).cpu()
        if not start and selected[0].numel() * selected.element_size() * len(paths) > budget:
            return False
        features.update(zip(chunk, selected.unbind()))
    accept_vision_features(model)
    for item in items:
        if item["image"]:
            item[VISION_FEATURES] = features[item["image"]]
            item["pixel_values"] = None
    return True
