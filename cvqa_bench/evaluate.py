"""Batched greedy generation (KV cache, left padding) on a task's test rows → prediction records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from cvqa_bench.models.prompting import encode_prompts


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
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    tokenizer = processor.tokenizer
    records: list[dict[str, Any]] = []
    try:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            enc = encode_prompts(processor, batch, pad_to_square).to(device)
            if "pixel_values" in enc:
                enc["pixel_values"] = enc["pixel_values"].to(dtype)
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
