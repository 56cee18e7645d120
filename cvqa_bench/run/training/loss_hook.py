"""The method's loss hook in the HF ``Trainer``: a subclass overriding ``compute_loss``, as HF suggests.

``Method.extra_loss`` is called once per micro-batch after the forward pass; its term is added to the
task loss before backward. Weighting: when the Trainer normalises the task loss over the whole
accumulated step (the model accepts ``num_items_in_batch``), it does not divide the loss by the
accumulation count, so the extra term is divided here; otherwise the Trainer divides the sum. Either
way the extra term weighs as one per optimizer step. A method without the hook runs the Trainer's own
``compute_loss`` untouched (same numbers as plain ``Trainer``).

On one process the gradient clipping runs over the trainable tensors only (``clip_params``, set by
``run/training/step_shortcuts.py``): the same norm as over every parameter, without the walk. The norm it
returns is kept for the step's non-finite check (``last_grad_norm``).
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate.utils import DistributedType
from transformers import Trainer

from cvqa_bench.methods.base import LossContext, Method, TaskInfo, Trainables


def has_loss_hook(method: Method) -> bool:
    """True when the method overrides ``extra_loss``."""
    return type(method).extra_loss is not Method.extra_loss


class MethodTrainer(Trainer):
    """``Trainer`` whose loss gets the method's ``extra_loss`` term per micro-batch."""

    def __init__(self, *args: Any, method: Method, task: TaskInfo, trainables: Trainables, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.method = method
        self.task = task
        self.trainables = trainables
        self._counted_parameters: int | None = None
        self.clip_params: list[torch.nn.Parameter] | None = None  # step_shortcuts: the tensors that can have a gradient
        self.last_grad_norm: torch.Tensor | None = None  # the pre-clip norm of the last optimizer step

    def _clip_grad_norm(self, model: torch.nn.Module) -> Any:
        if self.clip_params is None or self.accelerator.distributed_type != DistributedType.NO:
            self.last_grad_norm = super()._clip_grad_norm(model)
        else:  # accelerate's own call over the tensors that can hold a gradient, in model order
            self.last_grad_norm = self.accelerator.clip_grad_norm_(self.clip_params, self.args.max_grad_norm)
        return self.last_grad_norm

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """HF's estimate for ``total_flos`` (6 x input tokens x parameters without embeddings), with the
        parameters counted once per stage: the Trainer's own method walks every module at every step."""
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if self._counted_parameters is None:
            self._counted_parameters = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[main_input].numel() * self._counted_parameters

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> Any:
        if not has_loss_hook(self.method):
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        ctx = LossContext(step=self.state.global_step + 1, task=self.task, trainables=self.trainables, model=self.model)
        extra = self.method.extra_loss(self.model, inputs, outputs, ctx)
        if extra is not None:
            if self._scaled_for_accumulation(num_items_in_batch):
                extra = extra / self.current_gradient_accumulation_steps
            loss = loss + extra
        return (loss, outputs) if return_outputs else loss

    def _scaled_for_accumulation(self, num_items_in_batch: torch.Tensor | int | None) -> bool:
        # the same test as Trainer.training_step's before it divides the loss by the accumulation count
        if self.loss_is_scaled_for_ga is not None:
            return bool(self.loss_is_scaled_for_ga)
        return bool((self.model_accepts_loss_kwargs and num_items_in_batch is not None)
                    or self.compute_loss_func is not None)
