"""Online EWC (Schwarz et al. 2018, "Progress & Compress"; Kirkpatrick et al. 2017) over the trainable tensors.

Loss of a task after the first: ``task loss + (lambda / 2) * sum_n sum F_n (theta_n - theta*_n)^2``.
F is the diagonal empirical Fisher: the mean over ``fisher_batches`` batches of the task's own rows of
the squared gradient of the task loss (batch-mean loss, computed at task end with the final weights,
model in eval mode), accumulated over tasks as ``F <- gamma F_old + F_new``. theta* is the weights at
the end of the previous task. Memory: two copies of the trainable tensors (F and theta*).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from cvqa_bench.methods.base import LossContext, Method, TaskContext
from cvqa_bench.methods.dynamic_ema import strip_prefix
from cvqa_bench.models.precision import autocast_for


class EWCOptions(BaseModel):
    """Options of the ``ewc`` method."""

    model_config = ConfigDict(extra="forbid")

    ewc_lambda: float = Field(1.0e4, ge=0, description="weight lambda of the penalty (lambda / 2) * sum F (p - p*)^2")
    gamma: float = Field(1.0, ge=0, le=1, description="decay of the old Fisher: F <- gamma F_old + F_new")
    fisher_batches: int = Field(8, ge=1, description="batches of the task's rows the Fisher is averaged over")


def ewc_penalty(params: dict[str, torch.Tensor], anchors: dict[str, torch.Tensor],
                fisher: dict[str, torch.Tensor]) -> torch.Tensor:
    """``sum over names of sum F * (p - a)^2`` (no lambda, no 1/2); names missing from ``fisher`` count 0."""
    terms = [(fisher[n] * (p - anchors[n]).pow(2)).sum() for n, p in params.items() if n in fisher]
    if not terms:
        first = next(iter(params.values()))
        return first.new_zeros(())
    return torch.stack(terms).sum()


def accumulate_fisher(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor],
                      gamma: float) -> dict[str, torch.Tensor]:
    """``gamma * old + new`` per name (``new`` alone where ``old`` has no entry)."""
    return {n: (gamma * old[n] + f) if n in old else f.clone() for n, f in new.items()}


def empirical_fisher(model: torch.nn.Module, params: dict[str, torch.nn.Parameter],
                     batches: Any) -> dict[str, torch.Tensor]:
    """Mean over ``batches`` of the squared gradient of the model's loss, per parameter, in float32
    (``torch.autograd.grad``: the parameters' ``.grad`` is never touched)."""
    total = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    count = 0
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            with autocast_for(model):
                loss = model(**batch).loss
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for (name, _), grad in zip(params.items(), grads):
                if grad is not None:
                    total[name] += grad.detach().float().pow(2)
            count += 1
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("ewc: no batch to estimate the Fisher from (the task has no training rows)")
    return {n: t / count for n, t in total.items()}  # float32 whatever the weights' dtype


class EWC(Method):
    """Online EWC: quadratic penalty to the previous task's weights, weighted by the accumulated Fisher."""

    name = "ewc"
    Options = EWCOptions

    def __init__(self, options: BaseModel | None = None, seed: int = 0) -> None:
        super().__init__(options, seed)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchors: dict[str, torch.Tensor] = {}
        self.penalties: dict[str, float] = {}  # per finished task, the penalty (no lambda) at its end
        self._placed = True

    def extra_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], outputs: Any,
                   ctx: LossContext) -> torch.Tensor | None:
        """``(lambda / 2) * ewc_penalty``; nothing during the first task."""
        if not self.fisher or self.options.ewc_lambda == 0:
            return None
        self._place(ctx.trainables.params[0].device)
        params = dict(ctx.trainables.items())
        return 0.5 * self.options.ewc_lambda * ewc_penalty(params, self.anchors, self.fisher)

    def _place(self, device: torch.device) -> None:
        if not self._placed:
            self.fisher = {n: t.to(device) for n, t in self.fisher.items()}
            self.anchors = {n: t.to(device) for n, t in self.anchors.items()}
            self._placed = True

    def after_task(self, ctx: TaskContext) -> None:
        """Estimate this task's Fisher, fold it into the running one, and anchor at the current weights."""
        if ctx.model is None or ctx.batches is None:
            raise RuntimeError("ewc needs the model and the task's batches in the task context")
        self._place(ctx.trainables.params[0].device)
        params = dict(ctx.trainables.items())
        if self.fisher:
            with torch.no_grad():
                self.penalties[ctx.task.name] = float(ewc_penalty(params, self.anchors, self.fisher))
        new = empirical_fisher(ctx.model, params, ctx.batches(self.options.fisher_batches))
        self.fisher = accumulate_fisher(self.fisher, new, self.options.gamma)
        self.anchors = ctx.trainables.snapshot()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``fisher.<name>`` and ``anchor.<name>`` (empty before the first task ends)."""
        out = {f"fisher.{n}": t for n, t in self.fisher.items()}
        out.update({f"anchor.{n}": t for n, t in self.anchors.items()})
        return {k: v.detach().contiguous() for k, v in out.items()}

    def extra_state(self) -> dict[str, Any]:
        """The end-of-task penalties."""
        return {"penalties": dict(self.penalties)}

    def load_state(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Restore ``state_dict`` + ``extra_state``."""
        self.fisher = strip_prefix(tensors, "fisher.")
        self.anchors = strip_prefix(tensors, "anchor.")
        self.penalties = {str(k): float(v) for k, v in extra.get("penalties", {}).items()}
        self._placed = False

    def records(self) -> dict[str, Any]:
        """Options, the Fisher's mean per tensor and each task's end-of-task penalty (no lambda)."""
        return {
            "ewc_lambda": self.options.ewc_lambda, "gamma": self.options.gamma,
            "fisher_batches": self.options.fisher_batches,
            "fisher_mean": {n: float(t.float().mean()) for n, t in self.fisher.items()},
            "penalty_at_task_end": dict(self.penalties),
        }
