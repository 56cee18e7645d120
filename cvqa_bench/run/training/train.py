"""One training stage: HF ``Trainer`` on one task's rows, with the method's hooks as a ``TrainerCallback``.

transformers 5.x calls ``on_optimizer_step`` right after ``optimizer.step()`` and before
``model.zero_grad()``, once per accumulated step: exactly where an EMA of the weights that needs
the current gradients must run. Two Trainer defaults are not acceptable for a benchmark and are
overridden here: the NaN/inf loss filter (it hides divergence in the logs) and updating the EMA on an
fp16 step the grad scaler skipped.

Under a multi-process launch the Trainer wraps the model in DDP: gradients are all-reduced before
``optimizer.step()``, so every process runs the same method update on the same gradients and keeps
the same method state; only the main process writes it (``cvqa_bench.run.training.distributed``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from cvqa_bench.run.training import distributed
from cvqa_bench.run.state.checkpoint import all_finite, mark_complete, save_method_state, save_trainables
from cvqa_bench.run.training.loss_hook import MethodTrainer
from cvqa_bench.run.training.step_shortcuts import step_shortcuts
from cvqa_bench.config import ConfigError, TrainSpec
from cvqa_bench.errors import NonFiniteError
from cvqa_bench.run.watching.logs import LOGGER
from cvqa_bench.run.watching.signals import NO_INTERRUPT, InterruptFlag
from cvqa_bench.run.watching.trackers import tensorboard_dir
from cvqa_bench.methods.base import Method, StepContext, TaskInfo, Trainables
from cvqa_bench.models.precision import compute_dtype
from cvqa_bench.models.prompting import TrainCollator
from cvqa_bench.models.train_features import attach_vision_features, repeats_images, rows_drawn
from cvqa_bench.models.vision_cache import tower_is_frozen


@dataclass
class StageResult:
    """What one stage's training produced (besides the weights in the model)."""

    steps: int
    final_loss: float
    losses: list[float]
    vision_features: bool = False  # trained on vision features computed once (models/train_features.py)


class MethodCallback(TrainerCallback):
    """Forwards the optimizer-step event to the method, saves its state with every Trainer checkpoint,
    stops on non-finite gradients and checkpoints-then-stops when a signal was received."""

    def __init__(self, method: Method, task: TaskInfo, trainables: Trainables, interrupt: InterruptFlag) -> None:
        self.method = method
        self.task = task
        self.trainables = trainables
        self.interrupt = interrupt
        self.trainer: Trainer | None = None
        self.losses: list[float] = []

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        assert self.trainer is not None
        if self.trainer.accelerator.optimizer_step_was_skipped:  # fp16 grad scaler skipped this step
            return
        if all(p.grad is None for p in self.trainables.params):
            # DeepSpeed steps the optimizer and frees the gradients inside backward: a method that
            # reads them would silently see zeros (LLaCA would become a fixed EMA).
            if has_step_hook(self.method):
                raise ConfigError(
                    f"method {self.method.name!r}: no trainable tensor has a gradient after the optimizer step, "
                    "as under DeepSpeed (it frees them inside backward); DeepSpeed is not supported for this "
                    "method: launch with plain DDP (configs/accelerate/ddp.yaml or torchrun)"
                )
        elif not self._gradients_finite():
            raise NonFiniteError(
                f"task {self.task.name!r}: non-finite gradient at step {state.global_step + 1}; "
                "the stage was stopped (lower the learning rate or check the data)"
            )
        # global_step is incremented after this event, so the step that just happened is +1.
        self.method.after_optimizer_step(StepContext(step=state.global_step + 1, task=self.task, trainables=self.trainables))

    def _gradients_finite(self) -> bool:
        # The norm the Trainer's clipping just took (NaN or inf when any gradient is); the norms otherwise.
        assert self.trainer is not None
        norm, self.trainer.last_grad_norm = getattr(self.trainer, "last_grad_norm", None), None
        if norm is not None:
            return math.isfinite(float(norm))
        return bool(torch.isfinite(torch.stack(torch._foreach_norm(self.trainables.grads()))).all())

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= state.max_steps:
            # Log the last steps too: the Trainer's train_loss otherwise adds the main process's own
            # unlogged losses to the logged means, which are averaged over every process.
            control.should_log = True
        if interrupt_requested(self.interrupt):
            control.should_save = True  # the Trainer saves a checkpoint right after this event
            control.should_training_stop = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        distributed.barrier()  # every process has written its part (its RNG state) of the checkpoint
        distributed.run_on_main(self._save_method_state, folder, state.global_step)

    def _save_method_state(self, folder: Path, step: int) -> None:
        bad = all_finite(self.method.state_dict())
        if bad is not None:
            raise NonFiniteError(f"task {self.task.name!r}: method state {bad!r} is not finite at step {step}")
        save_method_state(folder, self.method)
        save_trainables(folder, self.trainables)
        mark_complete(folder, step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        if not math.isfinite(loss):
            raise NonFiniteError(f"task {self.task.name!r}: loss is {loss} at step {state.global_step}")
        self.losses.append(float(loss))


def interrupt_requested(interrupt: InterruptFlag) -> bool:
    """Whether a signal came, agreed by every process (a signal to one process stops them all)."""
    # Every process must stop at the same point, or the others wait in the next collective forever.
    if distributed.any_rank(interrupt.requested is not None) and interrupt.requested is None:
        interrupt.requested = "SIGINT/SIGTERM (on another process)"
    return interrupt.requested is not None


def has_step_hook(method: Method) -> bool:
    """True when the method overrides ``after_optimizer_step`` (it reads weights/gradients every step)."""
    return type(method).after_optimizer_step is not Method.after_optimizer_step


@contextlib.contextmanager
def kv_cache_off(model: torch.nn.Module) -> Iterator[None]:
    """No KV cache in the training forward (LLaVA's train.py sets ``use_cache = False`` too): the language
    model would otherwise fill one at every step and drop it. Generation asks for it explicitly."""
    configs = {id(c): c for m in model.modules()
               if getattr(c := getattr(m, "config", None), "use_cache", None) is True}
    for config in configs.values():
        config.use_cache = False
    try:
        yield
    finally:
        for config in configs.values():
            config.use_cache = True


def build_optimizer(model: torch.nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    """AdamW over the trainable tensors, with the projector in its own group when ``projector_lr`` is set."""
    from cvqa_bench.models.families import family_for

    names = family_for(model).projector_names
    projector, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (projector if any(part in name for part in names) and spec.projector_lr else rest).append(param)
    groups = [{"params": rest, "lr": spec.lr}]
    if projector:
        groups.append({"params": projector, "lr": spec.projector_lr})
    # foreach: one kernel per operation over all tensors instead of a loop per tensor (torch's CPU default);
    # the same update to the bit (tests/run/test_train_speed.py)
    return torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay, foreach=True)


def training_arguments(spec: TrainSpec, out_dir: Path, seed: int, bf16: bool, fp16: bool,
                       use_cpu: bool = False) -> TrainingArguments:
    """The Trainer arguments of one stage; ``spec.batch_size`` is the batch of each process."""
    return TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.grad_accum,
        max_steps=spec.max_steps or -1,
        num_train_epochs=spec.epochs,
        learning_rate=spec.lr,
        lr_scheduler_type=spec.scheduler,
        warmup_steps=spec.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps in transformers 5
        max_grad_norm=spec.max_grad_norm,
        logging_steps=10,
        logging_nan_inf_filter=False,
        save_strategy="steps" if spec.checkpoint_every else "no",
        save_steps=spec.checkpoint_every or 500,
        save_total_limit=2,  # the newest may be incomplete when killed while saving
        report_to=list(spec.report_to),  # logging_dir: run/watching/trackers.py (transformers 5 has no argument)
        seed=seed,
        data_seed=seed,
        bf16=bf16,
        fp16=fp16,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        disable_tqdm=True,  # the run's own display (run/watching/progress.py) shows the steps
        # Train where the model was placed; on CPU this is also what makes a multi-process launch
        # use DDP over gloo instead of N independent runs.
        use_cpu=use_cpu,
    )


def train_stage(
    model: torch.nn.Module,
    processor: Any,
    rows: list[dict[str, Any]],
    method: Method,
    task: TaskInfo,
    trainables: Trainables,
    spec: TrainSpec,
    out_dir: Path,
    seed: int,
    *,
    pad_to_square: bool = False,
    resume_from: Path | None = None,
    interrupt: InterruptFlag = NO_INTERRUPT,
    callbacks: Sequence[TrainerCallback] = (),
    tracker_dir: Path | None = None,
    vision_features: bool = False,
) -> StageResult:
    """Train ``model`` on ``rows`` for one stage; the method's ``after_optimizer_step`` runs every step.

    With ``resume_from`` (a complete Trainer checkpoint) the stage continues exactly where it was saved:
    weights, optimizer, scheduler, RNG states and data order come from the checkpoint; the caller has
    restored the method's state from the same folder. ``callbacks`` see every Trainer event (the run's
    progress display); file-based trackers of ``spec.report_to`` write into ``tracker_dir``. With
    ``vision_features``, a frozen tower and images that repeat, the stage trains on each image's features
    computed once (``models/train_features.py``).
    """
    first = trainables.params[0]
    callback = MethodCallback(method, task, trainables, interrupt)
    # The compute dtype, not the trainable tensors' (float32 master weights in a bf16/fp16 run): it turns on
    # the Trainer's autocast and, for fp16, its grad scaler.
    low = compute_dtype(model)
    args = training_arguments(spec, out_dir, seed, bf16=low == torch.bfloat16, fp16=low == torch.float16,
                              use_cpu=first.device.type == "cpu")
    collator = TrainCollator(processor, spec.max_length, pad_to_square)
    encoded = collator.encode_rows(rows)  # each row encoded once; same items in the same order
    rows_per_step = spec.batch_size * spec.grad_accum * distributed.world_size()
    drawn = rows_drawn(spec.max_steps, rows_per_step, spec.epochs, len(rows))
    features = (vision_features and tower_is_frozen(model) and repeats_images(drawn, rows)
                and attach_vision_features(encoded, collator, model))
    if features:
        LOGGER.info(f"task {task.name!r}: training on vision features computed once per image "
                    f"({len(rows)} rows, {drawn} drawn)")
    with tensorboard_dir(tracker_dir):
        trainer = MethodTrainer(
            model=model,
            args=args,
            train_dataset=encoded,
            data_collator=collator,
            optimizers=(build_optimizer(model, spec), None),
            callbacks=[callback, *callbacks],
            method=method, task=task, trainables=trainables,  # the method's extra_loss (run/training/loss_hook.py)
        )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; they go to logs/train.jsonl
    callback.trainer = trainer
    try:
        with kv_cache_off(model), step_shortcuts(model, distributed.world_size() == 1) as clip_params:
            trainer.clip_params = clip_params
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        # callback <-> trainer is a reference cycle: break it so this stage's optimizer state (and DDP
        # wrapper) is freed on return, not whenever the garbage collector runs, before the next stage.
        callback.trainer = None
    interrupt_requested(interrupt)
    interrupt.check(f"in task {task.name!r} at step {output.global_step} (checkpoint saved)")
    return StageResult(steps=output.global_step, final_loss=float(output.training_loss), losses=callback.losses,
                       vision_features=features)
