"""Training on vision features computed once: with a frozen vision tower, a stage whose rows show their images
more than once (several epochs, ``max_steps`` past one epoch, replay, joint) runs each distinct image through
the tower once instead of once per batch.

The features are what the evaluation cache stores (``ModelFamily.vision_features``: the projector's input as
HF's ``get_image_features`` computes it), kept in memory for the stage in place of the
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
from cvqa_bench.models.prompting import ENCODE_CHUNK, IMAGE_INPUTS, VISION_FEATURES, TrainCollator
from cvqa_bench.models.vision_cache import accept_vision_features, family_parts

FEATURE_BUDGET_BYTES = 1 << 30  # a stage's features kept in memory up to this, as its pixels are


def rows_drawn(max_steps: int | None, rows_per_step: int, epochs: float, n_rows: int) -> int:
    """How many rows a stage's Trainer draws: ``max_steps`` optimizer steps, else ``epochs`` passes."""
    return max_steps * rows_per_step if max_steps else math.ceil(epochs * n_rows)


def repeats_images(drawn: int, rows: list[dict[str, Any]]) -> bool:
    """True when the stage draws more rows than it has distinct images, so some image is encoded twice."""
    return drawn > len({r["image"] for r in rows if r.get("image")})


def attach_vision_features(items: list[dict[str, Any]], collator: TrainCollator, model: torch.nn.Module,
                           budget: int = FEATURE_BUDGET_BYTES) -> bool:
    """Give every encoded row with an image its image's vision features in place of its pixels.

    Each distinct image goes through the tower once, in chunks of ``ENCODE_CHUNK``; the rows keep their
    image's other tensors (sizes, grids). Returns False, with the rows unchanged, when the features would
    not fit in ``budget`` bytes.
    """
    first: dict[str, dict[str, Any]] = {}
    for item in items:
        if item["image"]:
            first.setdefault(item["image"], item)
    paths = list(first)
    family, parts = family_parts(model)
    features: dict[str, torch.Tensor] = {}
    device = next(parts.vision_tower.parameters()).device
    for start in range(0, len(paths), ENCODE_CHUNK):
        chunk = paths[start : start + ENCODE_CHUNK]
        inputs = collator.image_inputs([first[p] for p in chunk])
        with torch.no_grad(), autocast_for(model):  # the tower computes as in the Trainer's forward
            computed = [f.cpu() for f in family.vision_features(parts, {k: v.to(device) for k, v in inputs.items()})]
        if not start and computed[0].numel() * computed[0].element_size() * len(paths) > budget:
            return False
        features.update(zip(chunk, computed))
    accept_vision_features(model)
    meta: dict[str, dict[str, torch.Tensor]] = {}  # each image's tensors besides its pixels
    for item in items:
        if item["image"]:
            if item["image"] not in meta:
                own = item[IMAGE_INPUTS] or family.process_image(collator.image(item), collator.processor.image_processor)
                meta[item["image"]] = {k: v for k, v in own.items() if k not in family.pixel_keys}
            item[VISION_FEATURES] = features[item["image"]]
            item[IMAGE_INPUTS] = meta[item["image"]]
    return True
