"""Benchmark: batched greedy-generation throughput against one question at a time, on the same questions.

Target: at batch 32 greedy generation answers at least 8x more questions per second than at batch 1
(CPU, tiny model).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from cvqa_bench.bench.common import device_fields, question_pool, sync
from cvqa_bench.config import ModelSpec

GENERATION_SPEEDUP_TARGET = 8.0  # questions/s at batch 32 >= 8 x batch 1 (CPU, tiny model)


def bench_generation(
    model_spec: ModelSpec,
    *,
    batch_sizes: Sequence[int] = (1, 32),
    n_questions: int = 128,
    max_new_tokens: int = 8,
    repeats: int = 3,
    force_length: bool = True,
    sequence: str = "synthetic",
    seed: int = 0,
    device: str | None = None,
) -> dict[str, Any]:
    """Greedy-generation throughput of ``generate_predictions`` at each batch size, on the same questions.

    Each repeat runs every batch size once (order rotating between repeats) after one untimed warm-up
    batch per size; the reported time is the median over repeats, including prompt encoding and
    decoding. With ``force_length`` every answer is exactly ``max_new_tokens`` long (``min_new_tokens``
    on the model's generation config, restored afterwards), so an early end-of-sequence in an
    unbatched row does not favour small batches. Predictions of every batch size are compared
    question by question with those of the first batch size (the unbatched reference when it is 1).

    Returns:
        ``{"device", "device_name", "torch_threads", "dtype", "source", "n_questions", "max_new_tokens",
        "force_length", "repeats", "reference_batch_size", "runs": [{"batch_size", "seconds", "min_seconds",
        "max_seconds", "questions_per_s", "new_tokens_per_s", "speedup", "agreement"}],
        "speedup_max_vs_reference", "targets"}``; ``speedup`` is questions/s over the reference's,
        ``agreement`` the fraction of questions whose prediction equals the reference's.
    """
    from cvqa_bench.run.evaluation.evaluate import generate_predictions
    from cvqa_bench.models.load import load_model

    sizes = list(dict.fromkeys(batch_sizes))
    if not sizes or min(sizes) < 1 or repeats < 1 or max_new_tokens < 1:
        raise ValueError(f"need batch sizes >= 1, repeats >= 1, max_new_tokens >= 1; got {list(batch_sizes)}, "
                         f"{repeats}, {max_new_tokens}")
    questions = question_pool(sequence, n_questions)
    torch.manual_seed(seed)
    loaded = load_model(model_spec, torch.device(device) if device else None)
    model, dev = loaded.model, loaded.device
    gen_config = model.generation_config
    saved_min = gen_config.min_new_tokens
    times: dict[int, list[float]] = {b: [] for b in sizes}
    predictions: dict[int, list[str]] = {}
    try:
        if force_length:
            gen_config.min_new_tokens = max_new_tokens
        for size in sizes:
            generate_predictions(model, loaded.processor, questions[:size], batch_size=size,
                                 max_new_tokens=max_new_tokens, pad_to_square=model_spec.pad_to_square)
        for r in range(repeats):
            for size in sizes[r % len(sizes):] + sizes[: r % len(sizes)]:
                sync(dev)
                start = time.perf_counter()
                records = generate_predictions(model, loaded.processor, questions, batch_size=size,
                                               max_new_tokens=max_new_tokens,
                                               pad_to_square=model_spec.pad_to_square)
                sync(dev)
                times[size].append(time.perf_counter() - start)
                predictions.setdefault(size, [rec["prediction"] for rec in records])
    finally:
        gen_config.min_new_tokens = saved_min
    reference = sizes[0]
    runs = []
    for size in sizes:
        seconds = statistics.median(times[size])
        agree = sum(a == b for a, b in zip(predictions[size], predictions[reference])) / n_questions
        runs.append({
            "batch_size": size, "seconds": seconds, "min_seconds": min(times[size]),
            "max_seconds": max(times[size]), "questions_per_s": n_questions / seconds,
            "new_tokens_per_s": n_questions * max_new_tokens / seconds if force_length else None,
            "speedup": statistics.median(times[reference]) / seconds, "agreement": agree,
        })
    best = max(runs, key=lambda run: run["batch_size"])["speedup"]
    return {
        **device_fields(dev), "dtype": model_spec.dtype, "source": loaded.source, "n_questions": n_questions,
        "max_new_tokens": max_new_tokens, "force_length": force_length, "repeats": repeats,
        "reference_batch_size": reference, "runs": runs, "speedup_max_vs_reference": best,
        "targets": {"speedup_min": GENERATION_SPEEDUP_TARGET, "speedup_ok": best >= GENERATION_SPEEDUP_TARGET
                    if reference == 1 and max(sizes) >= 32 else None},
    }
