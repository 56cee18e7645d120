"""Benchmarks of issue 17, each pair measured in one process on the same inputs, interleaved:

- evaluation questions/s with and without the vision-feature cache (and sorted by prompt length);
- training step time with rows encoded once per stage against the per-batch collator, and on cached vision
  features (the same losses);
- matrix cells generated against reused, per method, on a sequence (``run/plan.py``, no training).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import torch

from cvqa_bench.bench.common import device_fields, load_task_rows, question_pool, sync
from cvqa_bench.config import ModelSpec


def bench_eval_cache(model_spec: ModelSpec, *, n_questions: int = 128, batch_size: int = 32,
                     max_new_tokens: int = 8, repeats: int = 3, sequence: str = "synthetic",
                     device: str | None = None) -> dict[str, Any]:
    """Questions/s of ``generate_predictions``: encoded per call and uncached (the old path), encoded once
    with cached vision features (warm), and sorted by prompt length; agreement with the old path."""
    from cvqa_bench.models.load import load_model
    from cvqa_bench.models.vision_cache import VisionFeatureCache
    from cvqa_bench.run.evaluation.evaluate import EvalInputs, generate_predictions, length_order

    rows = question_pool(sequence, n_questions)
    torch.manual_seed(0)
    loaded = load_model(model_spec, torch.device(device) if device else None)
    model, proc, dev = loaded.model, loaded.processor, loaded.device
    order = length_order(proc, rows)
    sorted_rows = [rows[i] for i in order]
    with tempfile.TemporaryDirectory() as folder:
        cache = VisionFeatureCache(model, proc, folder)
        inputs = EvalInputs(proc, rows, batch_size, model_spec.pad_to_square)
        sorted_inputs = EvalInputs(proc, sorted_rows, batch_size, model_spec.pad_to_square)
        variants = {
            "uncached": lambda: generate_predictions(model, proc, rows, batch_size=batch_size,
                                                     max_new_tokens=max_new_tokens),
            "feature_cache": lambda: generate_predictions(model, proc, rows, batch_size=batch_size,
                                                          max_new_tokens=max_new_tokens, inputs=inputs, vision=cache),
            "feature_cache_sorted": lambda: generate_predictions(
                model, proc, sorted_rows, batch_size=batch_size, max_new_tokens=max_new_tokens,
                inputs=sorted_inputs, vision=cache),
        }
        outputs = {name: run() for name, run in variants.items()}  # warm-up: fills the cache once
        times: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(repeats):
            names = list(variants)[r % 3:] + list(variants)[: r % 3]
            for name in names:
                sync(dev)
                start = time.perf_counter()
                variants[name]()
                sync(dev)
                times[name].append(time.perf_counter() - start)
    reference = [rec["prediction"] for rec in outputs["uncached"]]
    unsorted = {rec["id"]: rec["prediction"] for rec in outputs["feature_cache_sorted"]}
    agreement = {
        "feature_cache": sum(a == b["prediction"] for a, b in zip(reference, outputs["feature_cache"])) / len(rows),
        "feature_cache_sorted": sum(unsorted[r["question_id"]] == p for r, p in zip(rows, reference)) / len(rows),
    }
    result = {name: {"seconds": statistics.median(t), "min_seconds": min(t),
                     "questions_per_s": len(rows) / statistics.median(t)} for name, t in times.items()}
    return {**device_fields(dev), "dtype": model_spec.dtype, "n_questions": len(rows), "batch_size": batch_size,
            "max_new_tokens": max_new_tokens, "repeats": repeats, "runs": result, "agreement": agreement,
            "speedup_feature_cache": result["feature_cache"]["questions_per_s"] / result["uncached"]["questions_per_s"],
            "questions_per_s": result["feature_cache"]["questions_per_s"]}


def to_device(value: Any, dev: torch.device) -> Any:
    """A batch value on ``dev``: a tensor, or each tensor of a list (the per-image vision features)."""
    return [v.to(dev) for v in value] if isinstance(value, list) else value.to(dev)


def bench_encode_once(model_spec: ModelSpec, *, task: str = "color", batch_size: int = 16, steps: int = 20,
                      repeats: int = 3, sequence: str = "synthetic", device: str | None = None) -> dict[str, Any]:
    """Seconds per training step (collate + forward + backward + optimizer) with the per-batch collator,
    with rows encoded once, and with rows encoded once on cached vision features, on the same batches;
    the collate time alone; and whether the three give the same loss at every step."""
    from cvqa_bench.models.load import load_model
    from cvqa_bench.models.prompting import TrainCollator
    from cvqa_bench.models.train_features import attach_vision_features

    rows = load_task_rows(sequence, task, "train")
    torch.manual_seed(0)
    loaded = load_model(model_spec, torch.device(device) if device else None)
    model, dev = loaded.model, loaded.device
    collator = TrainCollator(loaded.processor, 512, model_spec.pad_to_square)
    started = time.perf_counter()
    encoded = collator.encode_rows(rows)
    encode_s = time.perf_counter() - started
    featured = collator.encode_rows(rows)
    started = time.perf_counter()
    attach_vision_features(featured, collator, model)
    features_s = time.perf_counter() - started
    trainable = [p for p in model.parameters() if p.requires_grad]
    start_weights = [p.detach().clone() for p in trainable]
    batches = [list(range(i * batch_size, (i + 1) * batch_size)) for i in range(min(steps, len(rows) // batch_size))]
    sources = {"per_batch": lambda idx: collator([rows[i] for i in idx]),
               "encoded_once": lambda idx: collator([encoded[i] for i in idx]),
               "cached_features": lambda idx: collator([featured[i] for i in idx])}
    step_times: dict[str, list[float]] = {name: [] for name in sources}
    collate_times: dict[str, list[float]] = {name: [] for name in sources}
    losses: dict[str, list[float]] = {}
    model.train()
    for r in range(repeats + 1):  # round 0 warms up and records each variant's losses from the same start
        for name in list(sources)[r % 3:] + list(sources)[: r % 3]:
            with torch.no_grad():
                for param, weights in zip(trainable, start_weights):
                    param.copy_(weights)
            optimizer = torch.optim.AdamW(trainable, lr=1e-4)
            collate_s = 0.0
            sync(dev)
            start = time.perf_counter()
            for idx in batches:
                t0 = time.perf_counter()
                batch = {k: to_device(v, dev) for k, v in sources[name](idx).items()}
                collate_s += time.perf_counter() - t0
                loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                if not r:
                    losses.setdefault(name, []).append(loss.item())
            sync(dev)
            if r:
                step_times[name].append((time.perf_counter() - start) / len(batches))
                collate_times[name].append(collate_s / len(batches))
    runs = {name: {"step_seconds": statistics.median(step_times[name]),
                   "collate_seconds": statistics.median(collate_times[name])} for name in sources}
    return {**device_fields(dev), "dtype": model_spec.dtype, "task": task, "batch_size": batch_size,
            "steps": len(batches), "repeats": repeats, "encode_all_seconds": encode_s,
            "features_all_seconds": features_s, "rows": len(rows), "runs": runs,
            "same_losses": losses["per_batch"] == losses["encoded_once"] == losses["cached_features"],
            "step_seconds": runs["encoded_once"]["step_seconds"],  # one epoch of distinct images (CoIN)
            "speedup_step": runs["per_batch"]["step_seconds"] / runs["encoded_once"]["step_seconds"],
            "speedup_step_features": runs["encoded_once"]["step_seconds"] / runs["cached_features"]["step_seconds"]}


def bench_cells(config_path: str | None, methods: tuple[str, ...] = ("llaca", "finetune")) -> dict[str, Any]:
    """Matrix cells generated and reused per method on the config's sequence, from the methods' weight plans."""
    from cvqa_bench.config import load_run_config
    from cvqa_bench.run.plan import plan_run
    from cvqa_bench.run.prepare import prepare

    out = {}
    for method in methods:
        prepared = prepare(load_run_config(config_path, {"method.name": method}), check_images=False)
        plans = plan_run(prepared)
        cells, compute = sum(p.cells for p in plans), sum(p.cells_to_compute for p in plans)
        out[method] = {"cells": cells, "computed": compute, "reused": cells - compute}
    return {"methods": out}
