"""Fixed-weight EMA of the trainable tensors (the "stable EMA" ablation of LLaCA).

Per task: the EMA copy theta* is taken after the first optimizer step (theta* = p, and the update on
that step leaves it equal to p), then ``theta* <- (1 - alpha) theta* + alpha p`` after every optimizer
step, and theta* is written into the model at the end of the task, so the saved stage is the EMA model.
Memory: one copy of the trainable tensors during a task.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from cvqa_bench.methods.base import Method, StepContext, TaskContext
from cvqa_bench.methods.ema_update import FALLBACK_ALPHA, fixed_ema_step

_PREFIX = "ema."


class FixedEMAOptions(BaseModel):
    """Options of the ``ema`` method."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(FALLBACK_ALPHA, gt=0, lt=1, description="weight of the live weights (0.01 = decay 0.99)")


class FixedEMA(Method):
    """Fixed-weight EMA of the trainable tensors (alpha 0.01), swapped in at task end."""

    name = "ema"
    Options = FixedEMAOptions

    def __init__(self, options: BaseModel | None = None, seed: int = 0) -> None:
        super().__init__(options, seed)
        self.shadow: dict[str, torch.Tensor] = {}
        self.updates: dict[str, int] = {}  # optimizer steps averaged, per finished task
        self._steps = 0
        self._in_progress: str | None = None  # the task between before_task and after_task
        self._placed = True  # False after load_state: the shadow may sit on another device

    def before_task(self, ctx: TaskContext) -> None:
        """Drop the previous task's shadow (kept when resuming this very task)."""
        if self._in_progress == ctx.task.name:
            return
        self.shadow, self._steps = {}, 0
        self._in_progress = ctx.task.name

    @torch.no_grad()
    def after_optimizer_step(self, ctx: StepContext) -> None:
        """theta* <- (1 - alpha) theta* + alpha p; theta* = copy(p) at the task's first step."""
        names, params = ctx.trainables.names, ctx.trainables.params
        if not self.shadow:
            self.shadow = {n: p.detach().clone() for n, p in zip(names, params)}
        elif not self._placed:
            self.shadow = {n: t.to(params[0].device) for n, t in self.shadow.items()}
        self._placed = True
        fixed_ema_step([self.shadow[n] for n in names], params, self.options.alpha)
        self._steps += 1

    def after_task(self, ctx: TaskContext) -> None:
        """Write theta* into the model (nothing to do if the task had no optimizer step)."""
        if self.shadow:
            ctx.trainables.load(self.shadow)
        self.updates[ctx.task.name] = self._steps
        self.shadow, self._steps = {}, 0
        self._in_progress = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow of the task in progress (``ema.<name>``), empty between tasks."""
        return {_PREFIX + n: t.detach().contiguous() for n, t in self.shadow.items()}

    def extra_state(self) -> dict[str, Any]:
        """The task in progress, its step count and the steps averaged per finished task."""
        return {"in_progress": self._in_progress, "steps": self._steps, "updates": dict(self.updates)}

    def load_state(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Restore ``state_dict`` + ``extra_state``."""
        self.shadow = {k[len(_PREFIX):]: v.clone() for k, v in tensors.items() if k.startswith(_PREFIX)}
        self._in_progress = extra.get("in_progress")
        self._steps = int(extra.get("steps", 0))
        self.updates = {str(k): int(v) for k, v in extra.get("updates", {}).items()}
        self._placed = False

    def records(self) -> dict[str, Any]:
        """alpha and the number of EMA updates per task."""
        return {"alpha": self.options.alpha, "updates": dict(self.updates)}
