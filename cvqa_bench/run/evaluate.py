"""Batched greedy generation (KV cache, left padding) on a task's test rows → prediction records.

Under a multi-process run each process generates a shard of whole batches (:func:`shard_rows`), so
every batch holds the same rows as in a single-process run with the same batch size and the merged
predictions are the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from cvqa_bench.models.precision import autocast_for, compute_dtype
from cvqa_bench.models.prompting import encode_prompts


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
) -> list[dict[str, Any]]:
    """Greedy answers for ``rows`` (CoIN test rows), one record per row: id, prediction, answers."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dtype = compute_dtype(model)  # the frozen base's dtype, not that of the (float32) trainable tensors
    tokenizer = processor.tokenizer
    records: list[dict[str, Any]] = []
    try:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            enc = encode_prompts(processor, batch, pad_to_square).to(device)
            if "pixel_values" in enc:
                enc["pixel_values"] = enc["pixel_values"].to(dtype)
            with autocast_for(model):  # outside the Trainer's autocast; a no-op for a float32 model
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    use_cache=True,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            # Left padding: every row's prompt ends at the same column, so new tokens start there.
            texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for row, text in zip(batch, texts):
                records.append({"id": row["question_id"], "prediction": text.strip(), "answers": row["answers"]})
            if progress is not None:
                progress(len(batch))
    finally:
        model.train(was_training)
    return records
