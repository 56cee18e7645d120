"""Benchmark: the training-step cost and state memory of each method, on one loaded model and the same batch.

All methods run in one process, interleaved, so that the numbers they compare differ only in the
method. Targets: a LLaCA step costs at most 1.05x a plain fine-tuning step, and LLaCA's extra state
is at most 2x the trainable bytes.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from cvqa_bench.bench.common import device_fields, load_task_rows, sync
from cvqa_bench.config import ModelSpec, TrainSpec
from cvqa_bench.methods import methods as method_registry
from cvqa_bench.methods.base import LossContext, Method, StepContext, TaskContext, TaskInfo, Trainables

LLACA_STEP_TARGET = 1.05  # llaca ms/step <= 1.05 x finetune ms/step
LLACA_MEMORY_TARGET = 2.0  # llaca state bytes <= 2 x trainable bytes
LLACA_LOOP = "llaca_loop"  # the label of LLaCA with its per-tensor loop update (``fused: false``)


@dataclass
class _Arm:
    """One benchmarked method with its own optimizer and its own copy of the trainable tensors."""

    label: str
    method: Method
    options: dict[str, Any]
    optimizer: torch.optim.Optimizer
    params: dict[str, torch.Tensor]
    blocks: list[list[float]] = field(default_factory=list)  # step seconds, one list per timed block
    peak_bytes: int = 0
    step: int = 0  # optimizer steps taken, warm-up included
    last_loss: torch.Tensor | None = None
    # a method with model surgery (O-LoRA, MoELoRA) trains its own copy of the model
    model: torch.nn.Module | None = None
    trainables: Trainables | None = None


def _variants(names: Sequence[str], compare_llaca_loop: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, registered method name, options) per benchmarked method, in order."""
    labels = list(names)
    if compare_llaca_loop and "llaca" in labels and LLACA_LOOP not in labels:
        labels.append(LLACA_LOOP)
    if len(set(labels)) != len(labels) or not labels:
        raise ValueError(f"methods must be distinct and non-empty, got {list(names)}")
    out = []
    for label in labels:
        name = "llaca" if label == LLACA_LOOP else label
        method_registry.check(name)  # unknown names fail with did-you-mean before the model loads
        # Grouping off puts the EMA on for every task; with grouping on, the first task of a
        # sequence opens group 0 with the EMA off and the hook would cost nothing.
        options = {"grouping": False, "fused": label != LLACA_LOOP} if name == "llaca" else {}
        out.append((label, name, options))
    return out


def _nbytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _split(total: int, parts: int) -> list[int]:
    """``total`` steps as ``parts`` near-equal blocks (the first ones one larger)."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _run_steps(arm: _Arm, n: int, model: torch.nn.Module, batch: dict[str, torch.Tensor], trainables: Trainables,
               info: TaskInfo, device: torch.device, timed: bool) -> None:
    """``n`` training steps of one arm: its weights are swapped in before and copied back after."""
    if arm.model is not None and arm.trainables is not None:
        model, trainables = arm.model, arm.trainables
    trainables.load(arm.params)
    if timed:
        arm.blocks.append([])
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(n):
        start = time.perf_counter()
        outputs = model(**batch)
        loss = outputs.loss
        # the loss hook as in run/training/loss_hook.py (EWC's penalty, LwF's teacher forward and KL)
        extra = arm.method.extra_loss(model, batch, outputs, LossContext(arm.step + 1, info, trainables, model))
        (loss if extra is None else loss + extra).backward()
        arm.optimizer.step()
        arm.step += 1
        # The hook runs after optimizer.step() and before zero_grad, as in train.py.
        arm.method.after_optimizer_step(StepContext(step=arm.step, task=info, trainables=trainables))
        arm.optimizer.zero_grad(set_to_none=True)
        sync(device)
        if timed:
            arm.blocks[-1].append(time.perf_counter() - start)
        arm.last_loss = loss.detach()
    if device.type == "cuda":
        arm.peak_bytes = max(arm.peak_bytes, torch.cuda.max_memory_allocated(device))
    with torch.no_grad():
        for name, param in zip(trainables.names, trainables.params):
            arm.params[name].copy_(param)


def bench_methods(
    model_spec: ModelSpec,
    *,
    batch_size: int,
    steps: int,
    warmup: int,
    methods: Sequence[str] = ("finetune", "ema", "llaca", "ewc", "lwf"),
    seed: int = 0,
    rounds: int | None = None,
    compare_llaca_loop: bool = True,
    lr: float = 1e-3,
    sequence: str = "synthetic",
    task: str = "color",
    device: str | None = None,
) -> dict[str, Any]:
    """Median time of one training step and the state memory of each method, on one model and one batch.

    A step is forward + backward + ``AdamW.step()`` + the method's ``after_optimizer_step`` +
    ``zero_grad`` (no gradient clipping, no data loading). Every method gets its own AdamW and its own
    copy of the trainable tensors, all starting from the same LoRA init; before a method's block of
    steps its copy is loaded into the model and afterwards copied back (outside the timed region), so
    each method follows its own uninterrupted trajectory on the shared model. Methods run round-robin
    in ``rounds`` blocks (default ``steps``: one step per method per round), the order rotating every
    round, so machine noise hits all of them alike. A ratio between two methods is the median over
    rounds of the ratio of their block medians in the same round (paired, so slow drifts in machine
    load cancel); ``median_ms`` is the median over all of a method's timed steps.
    ``warmup`` untimed steps per method come first (they include the EMA copies' first-step clone).
    A method with a loss hook first ends a previous task (``after_task`` on the same batch), so that
    the timed task is a second one: EWC has its Fisher and anchors (its penalty is on), LwF its
    teacher (one extra forward per step); ``extra_loss`` is added to the loss as in training.
    A method with model surgery (``prepare_model``: O-LoRA, MoELoRA) trains its own copy of the model,
    loaded with the same seed; ``trainable_set_bytes`` is the size of each arm's trainable set.
    LLaCA runs with grouping off (EMA on); with ``compare_llaca_loop`` its per-tensor loop update
    (``fused: false``) is benchmarked too, as ``llaca_loop``. On CUDA the clock is read after
    ``torch.cuda.synchronize`` and ``peak_memory_bytes`` is ``torch.cuda.max_memory_allocated`` over a
    method's blocks (it includes the parked copies of the other methods); the model's dtype is the spec's.

    Returns:
        ``{"device", "device_name", "torch_threads", "dtype", "source", "task", "batch_size",
        "tokens_per_step", "steps", "warmup", "rounds", "trainable_params", "trainable_bytes",
        "methods": {label: {"method", "options", "timed_steps", "median_ms", "min_ms", "p25_ms", "p75_ms",
        "ratio_vs_finetune", "tokens_per_s", "final_loss", "state_bytes", "state_ratio",
        "scalar_state_bytes", "copies_ratio", "peak_memory_bytes"}}, "llaca_fused_vs_loop", "targets"}``;
        ratios are None when their reference method was not run (``llaca_fused_vs_loop``: llaca over
        llaca_loop, paired like ``ratio_vs_finetune``). ``final_loss`` (the task loss) is the same
        for every method whose hooks change neither the gradients nor the live weights during a task
        (finetune, ema, llaca), which shows that the methods do not leak into each other's trajectory.
        ``state_bytes`` counts the tensors of the method's ``state_dict()`` at the end, ``state_ratio``
        divides it by the trainable bytes, ``copies_ratio`` does so without the 0-dim bookkeeping
        tensors and LLaCA's alpha history (``scalar_state_bytes``: it grows with the steps, not with the
        weights), and the memory target is checked on ``copies_ratio``.
    """
    from cvqa_bench.models.load import load_model
    from cvqa_bench.models.prompting import TrainCollator

    rounds = steps if rounds is None else rounds
    if batch_size < 1 or steps < 1 or warmup < 0 or rounds < 1:
        raise ValueError(f"need batch_size >= 1, steps >= 1, warmup >= 0, rounds >= 1; got "
                         f"{batch_size}, {steps}, {warmup}, {rounds}")
    variants = _variants(methods, compare_llaca_loop)
    rows = load_task_rows(sequence, task, "train")
    if len(rows) < batch_size:
        raise ValueError(f"task {task!r} has {len(rows)} training rows, fewer than batch_size={batch_size}")
    torch.manual_seed(seed)  # the LoRA init draws from the global RNG
    loaded = load_model(model_spec, torch.device(device) if device else None)
    model, dev = loaded.model, loaded.device
    model.train()
    trainables = Trainables(model)
    dtype = trainables.params[0].dtype
    picked = random.Random(seed).sample(rows, batch_size)
    collate = TrainCollator(loaded.processor, TrainSpec().max_length, model_spec.pad_to_square)
    batch = {k: v.to(dev) for k, v in collate(picked).items()}
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(dtype)
    tokens = int(batch["attention_mask"].sum())
    info = TaskInfo(1, task, (), tuple(r["id"] for r in picked))
    previous = TaskInfo(0, f"{task}-previous", (), info.train_ids)
    tasks = [previous, info]
    arms = []
    for label, name, options in variants:
        cls = method_registry.get(name)
        method = cls(cls.Options(**options), seed=seed)
        method.setup(tasks)
        own, arm_model, arm_trainables = None, model, trainables
        if type(method).prepare_model is not Method.prepare_model:  # model surgery: its own model
            torch.manual_seed(seed)
            own = load_model(model_spec, dev).model
            method.prepare_model(own, tasks)
            own.train()
            arm_model, arm_trainables = own, Trainables(own)
        start = arm_trainables.snapshot()
        if type(method).extra_loss is not Method.extra_loss:  # its term is on from the second task
            ended = TaskContext(stage=1, task=previous, tasks=tasks, trainables=arm_trainables, model=arm_model,
                                batches=lambda k: iter([batch] * k))
            method.before_task(ended)
            method.after_task(ended)
        method.before_task(TaskContext(stage=2, task=info, tasks=tasks, trainables=arm_trainables))
        arm_trainables.load(start)
        optimizer = torch.optim.AdamW(arm_trainables.params, lr=lr, weight_decay=0.0)
        arms.append(_Arm(label, method, options, optimizer, arm_trainables.snapshot(), model=own,
                         trainables=arm_trainables if own is not None else None))
    for arm in arms:
        _run_steps(arm, warmup, model, batch, trainables, info, dev, timed=False)
    for r, block in enumerate(_split(steps, rounds)):
        for arm in arms[r % len(arms):] + arms[: r % len(arms)]:
            _run_steps(arm, block, model, batch, trainables, info, dev, timed=True)
    return _method_report(arms, loaded, model_spec, trainables, task, batch_size, tokens, steps, warmup, rounds)


def _paired_ratio(arm: _Arm, reference: _Arm) -> float:
    """Median over rounds of ``arm``'s block median over ``reference``'s block median in that round."""
    return statistics.median(
        statistics.median(a) / statistics.median(b) for a, b in zip(arm.blocks, reference.blocks, strict=True)
    )


def _method_report(arms: list[_Arm], loaded: Any, spec: ModelSpec, trainables: Trainables, task: str,
                   batch_size: int, tokens: int, steps: int, warmup: int, rounds: int) -> dict[str, Any]:
    """The result dict of :func:`bench_methods`."""
    trainable_bytes = _nbytes(trainables.params)
    by_label = {arm.label: arm for arm in arms}
    medians = {arm.label: statistics.median(t for block in arm.blocks for t in block) for arm in arms}
    rows = {}
    for arm in arms:
        ms = sorted(t * 1e3 for block in arm.blocks for t in block)
        quartiles = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
        named = arm.method.state_dict()
        state = _nbytes(list(named.values()))
        # 0-dim tensors and the alpha history are bookkeeping (alpha statistics), not copies of the weights
        scalars = _nbytes([t for k, t in named.items() if t.dim() == 0 or k.startswith("alpha_stats.")])
        rows[arm.label] = {
            "method": arm.method.name,
            "options": arm.options,
            "timed_steps": len(ms),
            "median_ms": medians[arm.label] * 1e3,
            "min_ms": ms[0],
            "p25_ms": quartiles[0],
            "p75_ms": quartiles[2],
            "ratio_vs_finetune": _paired_ratio(arm, by_label["finetune"]) if "finetune" in by_label else None,
            "tokens_per_s": tokens / medians[arm.label],
            "final_loss": float(arm.last_loss) if arm.last_loss is not None else None,
            "state_bytes": state,
            "state_ratio": state / trainable_bytes,
            "scalar_state_bytes": scalars,
            # model surgery: the arm's own trainable set (O-LoRA's per-task LoRAs, MoELoRA's experts + routers)
            "trainable_set_bytes": _nbytes((arm.trainables or trainables).params),
            "copies_ratio": (state - scalars) / trainable_bytes,
            "peak_memory_bytes": arm.peak_bytes if loaded.device.type == "cuda" else None,
        }
    both = {"llaca", LLACA_LOOP} <= by_label.keys()
    fused_vs_loop = _paired_ratio(by_label["llaca"], by_label[LLACA_LOOP]) if both else None
    llaca = rows.get("llaca")
    return {
        **device_fields(loaded.device), "dtype": spec.dtype, "source": loaded.source, "task": task,
        "batch_size": batch_size, "tokens_per_step": tokens, "steps": steps, "warmup": warmup, "rounds": rounds,
        "trainable_params": trainables.numel(), "trainable_bytes": trainable_bytes, "methods": rows,
        "llaca_fused_vs_loop": fused_vs_loop,
        "targets": {
            "llaca_step_ratio_max": LLACA_STEP_TARGET,
            "llaca_state_ratio_max": LLACA_MEMORY_TARGET,
            "llaca_step_ok": None if llaca is None or llaca["ratio_vs_finetune"] is None
            else llaca["ratio_vs_finetune"] <= LLACA_STEP_TARGET,
            "llaca_state_ok": None if llaca is None else llaca["copies_ratio"] <= LLACA_MEMORY_TARGET,
        },
    }
