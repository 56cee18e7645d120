"""O-LoRA (Wang et al. 2023, "Orthogonal Subspace Learning for Language Model Continual Learning").

Each task trains a new LoRA on every LoRA layer; the LoRAs of earlier tasks stay frozen and active
(``models/task_lora.py``). The loss of task t adds, as the official code (cmnfriend/O-LoRA) does::

    lambda1 * sum_layers sum_{s < t} sum |A_t A_s^T|  +  lambda2 * sum_layers (||A_t||_2 + ||B_t||_2)

(the official L2 term sums Frobenius norms, not their squares). Defaults are the official ones:
lambda1 = 0.5, lambda2 = 0. The projector is trained and shared across tasks, as in every CoIN method.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from cvqa_bench.methods.base import LossContext, Method, TaskContext, TaskInfo
from cvqa_bench.models.surgery import parameter_names, replace_lora_layers
from cvqa_bench.models.task_lora import TaskLoRALinear


def orthogonality_loss(previous: list[torch.Tensor], current: torch.Tensor) -> torch.Tensor:
    """``sum over previous of sum |current @ prev.T|``: each argument an (r, in) LoRA A matrix."""
    total = current.new_zeros(())
    for prev in previous:
        total = total + torch.abs(current @ prev.T).sum()
    return total


class OLoRAOptions(BaseModel):
    """Options of the ``olora`` method."""

    model_config = ConfigDict(extra="forbid")

    lambda1: float = Field(0.5, ge=0, description="weight of the orthogonality term sum |A_t A_s^T|")
    lambda2: float = Field(0.0, ge=0, description="weight of the L2 term ||A_t|| + ||B_t|| of the current LoRA")


class OLoRA(Method):
    """O-LoRA: a new LoRA per task, earlier ones frozen and active, orthogonal A subspaces."""

    name = "olora"
    Options = OLoRAOptions

    def __init__(self, options: BaseModel | None = None, seed: int = 0) -> None:
        super().__init__(options, seed)
        self.layers: list[TaskLoRALinear] = []
        self.lora_names: set[str] = set()  # every task LoRA tensor's name
        self.task_names: list[list[str]] = []  # per task, the names of its A and B tensors
        self.active = 0  # task LoRAs in the forward: those trained or in training
        self.penalties: dict[str, dict[str, float]] = {}  # per task, the terms at its last micro-batch

    def check_model(self, model: Any) -> None:
        """O-LoRA adds LoRAs: the model needs ``model.lora``."""
        if model.lora is None:
            raise ValueError("O-LoRA trains one LoRA per task and needs model.lora (it is null: full training)")

    def prepare_model(self, model: torch.nn.Module, tasks: list[TaskInfo]) -> None:
        """Replace every peft LoRA layer with one LoRA per task (``models/task_lora.py``)."""
        self.layers = replace_lora_layers(model, lambda site: TaskLoRALinear(site, len(tasks)), self.name)
        names = parameter_names(model)
        self.task_names = [
            [names[id(p)] for layer in self.layers for p in (layer.lora_A[t], layer.lora_B[t])]
            for t in range(len(tasks))
        ]
        self.lora_names = {n for task in self.task_names for n in task}
        self._apply_active()

    def _apply_active(self) -> None:
        for layer in self.layers:
            layer.active = self.active

    def before_task(self, ctx: TaskContext) -> None:
        """Train task t's LoRA (and the shared tensors, e.g. the projector); freeze the other LoRAs."""
        t = ctx.task.index
        shared = [n for n in ctx.trainables.names if n not in self.lora_names]
        ctx.trainables.set_trainable([*shared, *self.task_names[t]])
        self.active = t + 1
        self._apply_active()

    def extra_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], outputs: Any,
                   ctx: LossContext) -> torch.Tensor | None:
        """lambda1 * orthogonality to the earlier tasks' A + lambda2 * L2 of the current A, B."""
        t = ctx.task.index
        opts = self.options
        if (t == 0 or opts.lambda1 == 0) and opts.lambda2 == 0:
            return None
        orth = torch.zeros((), device=self.layers[0].lora_A[t].device)
        l2 = torch.zeros_like(orth)
        for layer in self.layers:
            a, b = layer.lora_A[t], layer.lora_B[t]
            orth = orth + orthogonality_loss([layer.lora_A[s] for s in range(t)], a)
            l2 = l2 + torch.linalg.norm(a) + torch.linalg.norm(b)
        self.penalties[ctx.task.name] = {"orthogonality": float(orth.detach()), "l2": float(l2.detach())}
        return opts.lambda1 * orth + opts.lambda2 * l2

    def extra_state(self) -> dict[str, Any]:
        """How many task LoRAs are active, the last penalty terms per task."""
        return {"active": self.active, "penalties": dict(self.penalties)}

    def load_state(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Restore ``extra_state`` (the LoRA tensors themselves are trainable tensors, saved with the stage)."""
        self.active = int(extra.get("active", 0))
        self.penalties = dict(extra.get("penalties", {}))
        self._apply_active()

    def records(self) -> dict[str, Any]:
        """lambda1, lambda2 and the orthogonality / L2 terms at each task's last micro-batch."""
        return {"lambda1": self.options.lambda1, "lambda2": self.options.lambda2, "penalties": dict(self.penalties)}
