"""Turn CoIN rows into padded model inputs: the model family encodes each row, this module batches them.

Training labels cover only the assistant turns (answer tokens and the end-of-turn token); the prompt,
the image tokens and the padding are -100. The prompt used at evaluation is exactly the prefix the
model saw before each answer in training (``models/chat.py`` renders both with the checkpoint's chat
template; ``models/families/`` expands the image and tokenizes). ``processor`` is a
:class:`cvqa_bench.models.inputs.ModelInputs`.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from cvqa_bench.data.image_cache import OneByOne
from cvqa_bench.models.chat import (  # noqa: F401  (the documented place of these names)
    IMAGE_MARKER,
    assistant_message,
    conversation_segments,
    generation_prompt,
    strip_image_marker,
    user_message,
)
from cvqa_bench.models.families.base import IGNORE_INDEX
from cvqa_bench.models.inputs import pad_batch

def _load_image(path: str) -> Image.Image:
    from cvqa_bench.data.image_cache import load_rgb  # bounded by bytes, not by count

    return load_rgb(path)


def load_image(path: str, pad_to_square: bool = False, fill: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Open an RGB image, optionally padded to a square with ``fill`` (LLaVA-1.5 ``expand2square``)."""
    img = _load_image(path)
    width, height = img.size
    if not pad_to_square or width == height:
        return img
    side = max(width, height)
    square = Image.new("RGB", (side, side), fill)
    square.paste(img, ((side - width) // 2, (side - height) // 2))
    return square


def mean_fill(processor: Any) -> tuple[int, int, int]:
    """The image processor's mean colour as 0–255 RGB, truncated as LLaVA-1.5 pads with it
    (``llava/mm_utils.py``: ``tuple(int(x * 255) for x in image_processor.image_mean)``)."""
    mean = getattr(processor.image_processor, "image_mean", None) or [0.5, 0.5, 0.5]
    return tuple(int(m * 255) for m in mean)  # type: ignore[return-value]


# The batch key (and encoded-row key) of vision features computed once, in place of pixel values; the model
# takes it through models/vision_cache.accept_vision_features.
VISION_FEATURES = "vision_features"
IMAGE_INPUTS = "image_inputs"  # an encoded row's image tensors (the family's, for one image)
PIXEL_BUDGET_BYTES = 1 << 30  # pre-encoded pixels of one stage's rows kept in memory up to this
ENCODE_CHUNK = 64  # rows per processor call when pre-encoding


class TrainCollator:
    """Batch CoIN training rows into ``input_ids``, ``attention_mask``, ``labels`` and the family's image kwargs.

    Called with raw rows it encodes them (chat template, family, label masking) and pads; called with the
    items of :meth:`encode_rows` it only pads, so a stage encodes each row once instead of once per batch.
    Both give the same tensors for the same rows.
    """

    def __init__(self, processor: Any, max_length: int, pad_to_square: bool = False) -> None:
        self.processor = processor
        self.max_length = max_length
        self.pad_to_square = pad_to_square
        self.fill = mean_fill(processor)

    def encode_rows(self, rows: list[dict[str, Any]], keep_pixels: bool | None = None) -> list[dict[str, Any]]:
        """Every row encoded once, in order: token ids, labels and (when they fit in memory) image tensors."""
        encoded = [item for start in range(0, len(rows), ENCODE_CHUNK)
                   for item in self._encode(rows[start : start + ENCODE_CHUNK])]
        if keep_pixels is None:
            sizes = [sum(t.nbytes for t in item[IMAGE_INPUTS].values()) for item in encoded if item[IMAGE_INPUTS]]
            keep_pixels = sum(sizes) <= PIXEL_BUDGET_BYTES
        if not keep_pixels:  # recomputed per batch from the image path (decoded images are cached)
            for item in encoded:
                item[IMAGE_INPUTS] = None
        return encoded

    def _encode(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        images = OneByOne([r.get("image") for r in rows], self.image_at)  # one full-size decode at a time
        out = []
        for row, enc in zip(rows, self.processor.encode(rows, images, for_training=True)):
            prompt = next((i for i, label in enumerate(enc.labels) if label != IGNORE_INDEX), len(enc.labels))
            if prompt > self.max_length:
                raise ValueError(f"prompt of {prompt} tokens exceeds train.max_length={self.max_length}")
            out.append({"encoded_row": True, "id": row.get("id"), "input_ids": enc.input_ids[: self.max_length],
                        "labels": enc.labels[: self.max_length], "image": row.get("image"), IMAGE_INPUTS: enc.image})
        return out

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from cvqa_bench.models.families.base import EncodedRow

        items = rows if rows and rows[0].get("encoded_row") else self._encode(rows)
        batch = pad_batch([EncodedRow(it["input_ids"], it["labels"]) for it in items],
                          self.processor.tokenizer.pad_token_id, "right", IGNORE_INDEX)
        batch.update(self.processor.family.text_inputs(batch["input_ids"]))
        with_image = [it for it in items if it["image"]]
        if with_image and all(it.get(VISION_FEATURES) is not None for it in with_image):
            # train_features.py: the features in place of the pixels; the rows keep only sizes and grids
            batch.update(self.processor.family.collate_images([it[IMAGE_INPUTS] for it in with_image]))
            batch[VISION_FEATURES] = [it[VISION_FEATURES] for it in with_image]
        elif with_image:
            batch.update(self.image_inputs(with_image))
        return batch

    def image_inputs(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The batch image kwargs of encoded rows with an image: those kept by :meth:`encode_rows`, else made again."""
        if any(it[IMAGE_INPUTS] is None for it in items):
            return self.processor.image_inputs(OneByOne([it["image"] for it in items], self.image_at))
        return self.processor.family.collate_images([it[IMAGE_INPUTS] for it in items])

    def image(self, item: dict[str, Any]) -> Image.Image:
        """An encoded row's image, padded or cropped as the rows were encoded."""
        return self.image_at(item["image"])

    def image_at(self, path: str) -> Image.Image:
        """The image at ``path``, padded or cropped as the rows are encoded."""
        return load_image(path, self.pad_to_square, self.fill)


def encode_prompts(processor: Any, rows: list[dict[str, Any]], pad_to_square: bool = False) -> dict[str, torch.Tensor]:
    """Left-padded generation inputs for a batch of CoIN test rows, with the family's image kwargs."""
    fill = mean_fill(processor)
    images = OneByOne([r.get("image") for r in rows], lambda path: load_image(path, pad_to_square, fill))
    encoded = processor.encode(rows, images, for_training=False)  # one full-size decode at a time
    batch = pad_batch(encoded, processor.tokenizer.pad_token_id, "left", IGNORE_INDEX)
    batch.update(processor.family.text_inputs(batch["input_ids"]))
    with_image = [enc.image for enc in encoded if enc.image is not None]
    if with_image:
        batch.update(processor.family.collate_images(with_image))
    return batch
