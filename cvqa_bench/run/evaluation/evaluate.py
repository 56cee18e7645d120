"""Batched greedy generation (KV cache, left padding) on a task's test rows → prediction records.

A task's test rows are encoded once per run (:class:`EvalInputs`: token ids, masks, image keys) and
reused by every stage; with a frozen vision tower the vision features come from
``models/vision_cache.py`` and each stage runs only the projector and the language model.

Under a multi-process run each process generates a shard of whole batches (:func:`shard_rows`), so
every batch holds the same rows as in a single-process run with the same batch size and the merged
predictions are the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cvqa_bench.data.image_cache import OneByOne
from cvqa_bench.models.precision import autocast_for, compute_dtype
from cvqa_bench.models.prompting import encode_prompts, generation_prompt, load_image, mean_fill
from cvqa_bench.models.vision_cache import VisionFeatureCache, image_key


def shard_rows(n_rows: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Indices of the rows process ``rank`` of ``world_size`` evaluates: whole batches, dealt round-robin.

    Batch ``b`` (rows ``b*batch_size`` to ``(b+1)*batch_size - 1``) goes to process ``b % world_size``.
    Only the very last batch of all can be short, and it is the last one of its shard, so batching the
    shard's rows again with ``batch_size`` gives back exactly the single-process batches.
    """
    if batch_size <= 0 or world_size <= 0 or not 0 <= rank < world_size:
        raise ValueError(f"shard_rows: need batch_size > 0 and 0 <= rank < world_size, got {batch_size}, "
                         f"{rank}, {world_size}")
    return [i for start in range(rank * batch_size, n_rows, world_size * batch_size)
            for i in range(start, min(start + batch_size, n_rows))]


def length_order(processor: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Row indices sorted (stably) by the token length of their generation prompt."""
    prompts = [generation_prompt(processor, r["text"], r.get("image") is not None) for r in rows]
    lengths = [len(ids) for ids in processor.tokenizer(prompts, add_special_tokens=True)["input_ids"]]
    return sorted(range(len(rows)), key=lengths.__getitem__)


@dataclass
class EncodedBatch:
    """One batch's generation inputs without pixels: ids, mask, the key of each image (byte hash + aspect) and
    the family's other image tensors (sizes, grids)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    image_keys: list[str]
    image_meta: dict[str, torch.Tensor]


class EvalInputs:
    """A task's test rows encoded batch by batch on first use and kept for every later stage.

    Pixels are not kept (they are the bulk at CoIN scale): a batch gets them again from the image
    processor only when its vision features are not cached.
    """

    def __init__(self, processor: Any, rows: list[dict[str, Any]], batch_size: int, pad_to_square: bool) -> None:
        self.processor = processor
        self.rows = rows
        self.batch_size = batch_size
        self.pad_to_square = pad_to_square
        self.encoded: dict[int, EncodedBatch] = {}

    def starts(self) -> range:
        """The first row of every batch."""
        return range(0, len(self.rows), self.batch_size)

    def batch(self, start: int) -> tuple[EncodedBatch, dict[str, torch.Tensor] | None]:
        """The encoded batch starting at row ``start``, and its image kwargs when they were just computed."""
        if start in self.encoded:
            return self.encoded[start], None
        rows = self.rows[start : start + self.batch_size]
        enc = encode_prompts(self.processor, rows, self.pad_to_square)
        keys = [image_key(r["image"], self.pad_to_square) for r in rows if r.get("image")]
        images = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
        meta = {k: v for k, v in images.items() if k not in self.processor.family.pixel_keys}
        self.encoded[start] = EncodedBatch(enc["input_ids"], enc["attention_mask"], keys, meta)
        return self.encoded[start], images or None

    def pixels(self, start: int) -> dict[str, torch.Tensor]:
        """The image kwargs of the batch starting at ``start`` (the family's own image preprocessing)."""
        fill = mean_fill(self.processor)
        rows = self.rows[start : start + self.batch_size]
        return self.processor.image_inputs(OneByOne([r["image"] for r in rows if r.get("image")],  # one decode at a time
                                                    lambda path: load_image(path, self.pad_to_square, fill)))


@torch.no_grad()
def generate_predictions(
    model: torch.nn.Module,
    processor: Any,
    rows: list[dict[str, Any]],
    *,
    batch_size: int,
    max_new_tokens: int,
    pad_to_square: bool = False,
    progress: Callable[[int], None] | None = None,
    inputs: EvalInputs | None = None,
    vision: VisionFeatureCache | None = None,
) -> list[dict[str, Any]]:
    """Greedy answers for ``rows`` (CoIN test rows), one record per row: id, prediction, answers.

    ``inputs`` (the same rows, batch size and aspect) keeps the encoding across calls; ``vision``
    supplies cached vision features instead of running the tower.
    """
    inputs = inputs or EvalInputs(processor, rows, batch_size, pad_to_square)
    if inputs.rows is not rows and inputs.rows != rows or inputs.batch_size != batch_size:
        raise ValueError("generate_predictions: inputs were encoded for other rows or another batch size")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dtype = compute_dtype(model)  # the frozen base's dtype, not that of the (float32) trainable tensors
    tokenizer = processor.tokenizer
    records: list[dict[str, Any]] = []
    try:
        for start in inputs.starts():
            batch = rows[start : start + batch_size]
            enc, pixels = inputs.batch(start)
            kwargs: dict[str, Any] = {"input_ids": enc.input_ids.to(device),
                                      "attention_mask": enc.attention_mask.to(device)}
            with autocast_for(model):  # outside the Trainer's autocast; a no-op for a float32 model
                kwargs.update({k: v.to(device) for k, v in enc.image_meta.items()})
                if enc.image_keys and vision is not None:
                    get = (lambda p=pixels, s=start: p if p is not None else inputs.pixels(s))
                    features = vision.features(enc.image_keys, get)
                    kwargs["mm_encoder_outputs"] = vision.encoder_outputs(features, kwargs)
                elif enc.image_keys:
                    images = pixels if pixels is not None else inputs.pixels(start)
                    kwargs.update({k: v.to(device, dtype) if v.is_floating_point() else v.to(device)
                                   for k, v in images.items()})
                out = model.generate(
                    **kwargs,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    use_cache=True,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            # Left padding: every row's prompt ends at the same column, so new tokens start there.
            texts = tokenizer.batch_decode(out[:, enc.input_ids.shape[1] :], skip_special_tokens=True)
            for row, text in zip(batch, texts):
                records.append({"id": row["question_id"], "prediction": text.strip(), "answers": row["answers"],
                                **({"context": row["context"]} if "context" in row else {})})
            if progress is not None:
                progress(len(batch))
    finally:
        model.train(was_training)
    return records
