"""The default LLaCA job as a bare PyTorch loop: what the harness costs on top of the work itself.

:func:`bare_run` does the work of ``cvqa run`` on a run config (``configs/default.yaml``) without the HF
Trainer, run folder, hashes, seals, checks, progress display or plots: the same model (LoRA drawn from the
same seed), the same encoded rows and vision features, the data order of the Trainer's seeded sampler
(``randperm`` per epoch from ``data_seed + epoch``), the same loss normalisation (``num_items_in_batch``),
AdamW, the warm-up + cosine schedule, clipping, LLaCA's EMA/alpha update after every optimizer step and its
start and evaluation weights; the same greedy generation per cell, with a cell evaluated with weights
identical to an earlier evaluation of the task copied, as the harness's cell reuse does; and the same
scorers. :func:`compare_with_run` asserts that a harness run folder holds the same final trainable tensors
of every stage, the same predictions and the same matrix. Only LLaCA and methods without a loss hook or
per-task rows of their own are covered (what the default job runs).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvqa_bench.config import load_run_config, load_sequence, validate_model


@dataclass
class BareResult:
    """Per stage the trainable tensors after it; per cell (stage, task) the (id, prediction) pairs; the matrix."""

    tasks: list[str]
    weights: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    predictions: dict[tuple[int, str], list[tuple[str, str]]] = field(default_factory=dict)
    matrix: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def sampler_order(n_rows: int, draws: int, data_seed: int) -> list[int]:
    """The row order the Trainer's seeded random sampler yields for ``draws`` rows (epoch e: seed + e)."""
    order: list[int] = []
    generator = torch.Generator()
    epoch = 0
    while len(order) < draws:
        generator.manual_seed(data_seed + epoch)
        order += torch.randperm(n_rows, generator=generator).tolist()
        epoch += 1
    return order[:draws]


def _weights_key(trainables: Any) -> str:
    digest = hashlib.sha256()
    for param in trainables.params:
        digest.update(param.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def bare_run(config_path: str | Path) -> BareResult:
    """Train and evaluate every stage of the run config in plain loops (module docstring)."""
    from transformers import get_scheduler
    from transformers import set_seed as seed_everything

    from cvqa_bench.data.sources import load_sequence_data, resolve_data_root
    from cvqa_bench.methods import methods
    from cvqa_bench.methods.base import StepContext, TaskContext, Trainables
    from cvqa_bench.models.load import load_model
    from cvqa_bench.models.prompting import TrainCollator
    from cvqa_bench.models.train_features import attach_vision_features, repeats_images
    from cvqa_bench.run.evaluation.evaluate import EvalInputs, generate_predictions
    from cvqa_bench.run.prepare import PreparedRun, pads_to_square, task_max_new_tokens, task_train_spec
    from cvqa_bench.run.training.train import build_optimizer, kv_cache_off
    from cvqa_bench.scoring import get_scorer
    from cvqa_bench.scoring.protocol import scorer_for

    started = time.perf_counter()
    config = load_run_config(Path(config_path), {})
    sequence, seq_path = load_sequence(config.sequence)
    tasks = load_sequence_data(sequence, seq_path, config.data_root, check_images=False)
    method_cls = methods.get(config.method.name)
    method = method_cls(validate_model(method_cls.Options, config.method.options, "options"), seed=config.seed)
    infos = PreparedRun(config, sequence, tasks, method, resolve_data_root(sequence, seq_path, config.data_root)
                        ).task_infos()
    seed_everything(config.seed)  # the LoRA initialisation draws from the global RNG
    loaded = load_model(config.model)
    model, processor = loaded.model, loaded.processor
    method.prepare_model(model, infos)
    trainables = Trainables(model)
    method.setup(infos)
    result = BareResult([t.spec.name for t in tasks])
    names = result.tasks
    eval_inputs: dict[str, EvalInputs] = {}
    seen: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (task, weights) -> records: cell reuse
    scores = np.zeros((len(tasks) + 1, len(tasks)))
    result.seconds["setup"] = time.perf_counter() - started

    def evaluate(stage: int) -> None:
        current = trainables.snapshot() if stage else None
        for i, (info, task) in enumerate(zip(infos, tasks)):
            state = method.eval_state(info) if stage else None
            if state is not None:
                trainables.load(state)
            rows = task.test[: config.eval.limit] if config.eval.limit else task.test
            pad = pads_to_square(config, task.spec.image_aspect.eval)
            key = (info.name, _weights_key(trainables))
            if key not in seen:
                if info.name not in eval_inputs:
                    eval_inputs[info.name] = EvalInputs(processor, rows, config.eval.batch_size, pad)
                seen[key] = generate_predictions(model, processor, rows, batch_size=config.eval.batch_size,
                                                 max_new_tokens=task_max_new_tokens(config, task.spec),
                                                 pad_to_square=pad, inputs=eval_inputs[info.name])
            records = seen[key]
            result.predictions[(stage, info.name)] = [(r["id"], r["prediction"]) for r in records]
            scorer = get_scorer(scorer_for(config.protocol, info.name, task.spec.scorer))
            score, _ = scorer.score_corpus([r["prediction"] for r in records], [r["answers"] for r in records],
                                           [r.get("context") for r in records])
            scores[stage, i] = 100.0 * float(score)
            if state is not None:
                trainables.load(current)

    clock = time.perf_counter()
    evaluate(0)
    result.seconds["eval"] = time.perf_counter() - clock
    result.seconds["train"] = 0.0
    for stage, (info, task) in enumerate(zip(infos, tasks), start=1):
        clock = time.perf_counter()
        seed = config.seed * 1000 + stage
        seed_everything(seed)
        ctx = TaskContext(stage=stage, task=info, tasks=infos, trainables=trainables)
        ctx.model = model
        method.before_task(ctx)
        spec = task_train_spec(config.train, task.spec, 1)
        rows = method.train_rows(info, task.train)
        collator = TrainCollator(processor, spec.max_length, pads_to_square(config, task.spec.image_aspect.train))
        encoded = collator.encode_rows(rows)
        rows_per_step = spec.batch_size * spec.grad_accum
        if not spec.max_steps or spec.grad_accum != 1:
            raise ValueError("the bare loop covers train.max_steps runs without gradient accumulation")
        drawn = spec.max_steps * rows_per_step
        if spec.vision_cache and repeats_images(drawn, rows):
            attach_vision_features(encoded, collator, model)
        optimizer = build_optimizer(model, spec)
        warmup = int(spec.warmup_ratio) if spec.warmup_ratio >= 1 else math.ceil(spec.max_steps * spec.warmup_ratio)
        scheduler = get_scheduler(spec.scheduler, optimizer, num_warmup_steps=warmup,
                                  num_training_steps=spec.max_steps)
        params = [p for p in model.parameters() if p.requires_grad]
        order = sampler_order(len(encoded), drawn, seed)
        model.train()
        with kv_cache_off(model):
            for step in range(spec.max_steps):
                batch = collator([encoded[j] for j in order[step * rows_per_step:(step + 1) * rows_per_step]])
                items = batch["labels"][..., 1:].ne(-100).sum() / 1  # the Trainer's num_items_in_batch (a float)
                loss = model(**batch, num_items_in_batch=items).loss
                loss.backward()
                if spec.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
                optimizer.step()
                method.after_optimizer_step(StepContext(step=step + 1, task=info, trainables=trainables))
                scheduler.step()
                for param in params:
                    param.grad = None
        method.after_task(ctx)
        result.weights[stage] = trainables.snapshot()
        result.seconds["train"] += time.perf_counter() - clock
        clock = time.perf_counter()
        evaluate(stage)
        result.seconds["eval"] += time.perf_counter() - clock
    result.matrix = scores
    result.seconds["total"] = time.perf_counter() - started
    return result


def save_result(result: BareResult, folder: Path) -> None:
    """Write the stage tensors (safetensors), the predictions (JSON) and the matrix (CSV) into ``folder``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    for stage, weights in result.weights.items():
        save_file({n: t.contiguous() for n, t in weights.items()}, str(folder / f"stage{stage}.safetensors"))
    cells = {f"{stage}/{task}": pairs for (stage, task), pairs in result.predictions.items()}
    (folder / "predictions.json").write_text(json.dumps(cells))
    (folder / "seconds.json").write_text(json.dumps(result.seconds))
    assert result.matrix is not None
    with open(folder / "matrix.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([result.tasks, *([repr(float(v)) for v in row] for row in result.matrix)])


def compare_with_run(bare: Path, run_dir: Path) -> dict[str, int]:
    """Assert that the harness run folder holds the bare loop's tensors, predictions and matrix; the counts."""
    from safetensors.torch import load_file

    from cvqa_bench.rundir import RunDir

    run = RunDir(run_dir)
    with open(bare / "matrix.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    tasks, matrix = rows[0], [[float(v) for v in row] for row in rows[1:]]
    with open(run_dir / "matrix.csv", newline="") as fh:
        harness = [[float(v) for v in row[2:]] for row in list(csv.reader(fh))[1:]]
    if harness != matrix:
        raise AssertionError(f"matrix differs: harness {harness} vs bare {matrix}")
    tensors = 0
    for stage, task in enumerate(tasks, start=1):
        ours = load_file(str(bare / f"stage{stage}.safetensors"))
        theirs = load_file(str(run.stage_dir(stage, task) / "weights.safetensors"))
        if ours.keys() != theirs.keys():
            raise AssertionError(f"stage {stage}: other tensor names")
        for name, tensor in ours.items():
            if not torch.equal(tensor, theirs[name]):
                raise AssertionError(f"stage {stage}: {name} differs")
            tensors += 1
    predictions = 0
    for cell, pairs in json.loads((bare / "predictions.json").read_text()).items():
        stage, task = cell.split("/")
        path = run.predictions(int(stage), tasks[int(stage) - 1] if int(stage) else None, task)
        records = [json.loads(line) for line in path.read_text().splitlines()]
        if [[r["id"], r["prediction"]] for r in records] != pairs:
            raise AssertionError(f"{path}: predictions differ from the bare loop's")
        predictions += len(pairs)
    return {"stage_tensors": tensors, "predictions": predictions, "cells": len(tasks) * (len(tasks) + 1)}
