"""Learning without Forgetting (Li & Hoiem 2017), for a generative VQA model.

Loss of a task after the first: ``task loss + lambda * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``
averaged over the answer-token positions of the current task's rows (the logits that predict a label
other than -100: position t predicts token t + 1). The teacher is the previous stage's model: the
trainable tensors as the previous task left them, frozen; no second base model is held. Its logits
come from the same model with those tensors substituted functionally (``torch.func.functional_call``,
under ``no_grad``), so the live weights are never modified between the student's forward and
backward. Memory: one copy of the trainable tensors; time: one extra forward per micro-batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from cvqa_bench.methods.base import LossContext, Method, TaskContext
from cvqa_bench.methods.dynamic_ema import strip_prefix
from cvqa_bench.models.prompting import IGNORE_INDEX

_PREFIX = "teacher."


class LwFOptions(BaseModel):
    """Options of the ``lwf`` method."""

    model_config = ConfigDict(extra="forbid")

    lwf_lambda: float = Field(1.0, ge=0, description="weight lambda of the distillation term")
    temperature: float = Field(2.0, gt=0, description="softmax temperature T of teacher and student")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, summed over the last (vocabulary) axis
    and averaged over the positions where ``mask`` is true (0 when none is)."""
    if student_logits.shape != teacher_logits.shape or mask.shape != student_logits.shape[:-1]:
        raise ValueError(f"logits {tuple(student_logits.shape)} / {tuple(teacher_logits.shape)} and mask "
                         f"{tuple(mask.shape)} do not match")
    student = student_logits[mask].float() / temperature
    teacher = teacher_logits[mask].float() / temperature
    if student.shape[0] == 0:
        return student_logits.sum() * 0.0
    log_s, log_t = F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=-1)
    return temperature**2 * kl.mean()


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """The logit positions that predict an answer token: ``labels[..., 1:] != -100``, shifted left, last False."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[..., :-1] = labels[..., 1:] != IGNORE_INDEX
    return mask


class LwF(Method):
    """Learning without Forgetting: distil the previous stage's answers on the current task's rows."""

    name = "lwf"
    Options = LwFOptions

    def __init__(self, options: BaseModel | None = None, seed: int = 0) -> None:
        super().__init__(options, seed)
        self.teacher: dict[str, torch.Tensor] = {}
        self.trained: list[str] = []
        self._in_progress: str | None = None

    def before_task(self, ctx: TaskContext) -> None:
        """Freeze the weights the previous task left as the teacher (none before the first task)."""
        if self._in_progress == ctx.task.name:
            return  # resumed mid-task: the teacher came from load_state
        self.teacher = ctx.trainables.snapshot() if self.trained else {}
        self._in_progress = ctx.task.name

    def extra_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], outputs: Any,
                   ctx: LossContext) -> torch.Tensor | None:
        """``lambda * distillation_loss`` against the teacher's logits on the same batch."""
        if not self.teacher or self.options.lwf_lambda == 0:
            return None
        device = ctx.trainables.params[0].device
        if next(iter(self.teacher.values())).device != device:
            self.teacher = {n: t.to(device) for n, t in self.teacher.items()}
        features = {k: v for k, v in inputs.items() if k != "labels"}  # the teacher's loss is not needed
        with torch.no_grad():
            teacher_logits = torch.func.functional_call(model, self.teacher, args=(), kwargs=features,
                                                        strict=False).logits
        mask = answer_positions(inputs["labels"])
        return self.options.lwf_lambda * distillation_loss(outputs.logits, teacher_logits, mask,
                                                           self.options.temperature)

    def after_task(self, ctx: TaskContext) -> None:
        """Drop the teacher; the next task takes its own."""
        if ctx.task.name not in self.trained:
            self.trained.append(ctx.task.name)
        self.teacher, self._in_progress = {}, None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The teacher of the task in progress (``teacher.<name>``), empty between tasks."""
        return {_PREFIX + n: t.detach().contiguous() for n, t in self.teacher.items()}

    def extra_state(self) -> dict[str, Any]:
        """Trained tasks and the task in progress."""
        return {"trained": list(self.trained), "in_progress": self._in_progress}

    def load_state(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Restore ``state_dict`` + ``extra_state``."""
        self.teacher = strip_prefix(tensors, _PREFIX)
        self.trained = list(extra.get("trained", []))
        self._in_progress = extra.get("in_progress")

    def records(self) -> dict[str, Any]:
        """The options and the tasks distilled from."""
        return {"lwf_lambda": self.options.lwf_lambda, "temperature": self.options.temperature,
                "trained": list(self.trained)}
