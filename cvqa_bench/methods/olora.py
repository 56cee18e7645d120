"""O-LoRA (Wang et al. 2023, "Orthogonal Subspace Learning for Language Model Continual Learning").

Each task trains a new LoRA on every LoRA layer; the LoRAs of earlier tasks stay frozen and active
(``models/task_lora.py``). The loss of task t adds, as the official code (cmnfriend/O-LoRA) does::

    lambda1 * sum_layers sum_{s < t} sum |A_t A_s^T|  +  lambda2 * sum_layers (||A_t||_2 + ||B_t||_2)

(the official L2 term sums Frobenius norms, not their squares). The projector is trained and shared across
tasks, as in every CoIN method.

``variant`` picks a reference's conventions (``VARIANTS``; docs/methods.md, "O-LoRA variants"):

- ``cvqa`` (default): every LoRA layer of ``model.lora``, the full rank r per task, peft's scaling,
  lambda1 = 0.5, lambda2 = 0, every trained LoRA in the forward.
- ``original`` (cmnfriend/O-LoRA): r = 8 on q_proj and v_proj only (``lora_dim`` default 8, peft's
  llama/t5 targets), lora_alpha 32 (scaling 4), Kaiming A for every task; lambda1 = 0.5, lambda2 = 0
  (scripts/order_*.sh ``--lamda_1 0.5 --lamda_2 0``); the frozen earlier LoRAs stay in the forward.
- ``mcitlib`` (Ghy0501/MCITlib ``OLoRA/``): model.lora's rank split over the tasks (r / T each), its
  scaling alpha / r, A ~ N(0, 0.01^2); loss + 0.05 * orthogonality and no L2 term (llava_trainer.py);
  only the current task's LoRA in the training forward, every trained one at evaluation
  (``CoIN/peft/tuners/clitmoelora.py``).

An explicit ``lambda1`` / ``lambda2`` wins over the variant's (``mcitlib`` has no L2 term to weight).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cvqa_bench.config import ConfigError

from cvqa_bench.methods.base import LossContext, Method, TaskContext, TaskInfo
from cvqa_bench.models.surgery import LoraSite, parameter_names, replace_lora_layers
from cvqa_bench.models.task_lora import TaskLoRALinear


def orthogonality_loss(previous: list[torch.Tensor], current: torch.Tensor) -> torch.Tensor:
    """``sum over previous of sum |current @ prev.T|``: each argument an (r, in) LoRA A matrix."""
    total = current.new_zeros(())
    for prev in previous:
        total = total + torch.abs(current @ prev.T).sum()
    return total


@dataclass(frozen=True)
class OLoRAVariant:
    """One reference's O-LoRA conventions."""

    rank: int | Literal["model", "split"]  # per task: a number, model.lora.r, or model.lora.r / tasks
    alpha: float | None  # scaling alpha / rank; None = the peft layer's scaling (model.lora alpha / r)
    targets: str | None  # regex on the LoRA layer's name; None = every layer model.lora puts LoRA on
    init: Literal["peft", "kaiming", "normal"]
    lambda1: float
    lambda2: float | None  # None: no L2 term at all
    current_only: bool  # only the current task's LoRA in the training forward


VARIANTS = {
    "cvqa": OLoRAVariant("model", None, None, "peft", 0.5, 0.0, False),
    "original": OLoRAVariant(8, 32.0, r"\.(q_proj|v_proj)$", "kaiming", 0.5, 0.0, False),
    "mcitlib": OLoRAVariant("split", None, None, "normal", 0.05, None, True),
}


class OLoRAOptions(BaseModel):
    """Options of the ``olora`` method."""

    model_config = ConfigDict(extra="forbid")

    variant: Literal["cvqa", "original", "mcitlib"] = Field(
        "cvqa", description="rank, targets, lambda1, lambda2 and the training forward of a reference: cvqa (full "
        "rank on model.lora's layers), original (cmnfriend/O-LoRA: r 8 on q,v), mcitlib (Ghy0501/MCITlib)")
    lambda1: float | None = Field(None, ge=0, description="weight of the orthogonality term sum |A_t A_s^T|; "
                                  "null = the variant's (0.5; mcitlib 0.05)")
    lambda2: float | None = Field(None, ge=0, description="weight of the L2 term ||A_t|| + ||B_t|| of the current "
                                  "LoRA; null = the variant's (0; mcitlib has none)")

    @model_validator(mode="after")
    def _l2_exists(self) -> OLoRAOptions:
        if self.variant == "mcitlib" and self.lambda2:
            raise ValueError("variant mcitlib has no L2 term (MCITlib's loss is task loss + 0.05 * orthogonality)")
        return self

    def resolved(self) -> tuple[float, float]:
        """(lambda1, lambda2) after the variant's defaults."""
        variant = VARIANTS[self.variant]
        lambda1 = variant.lambda1 if self.lambda1 is None else self.lambda1
        lambda2 = (variant.lambda2 or 0.0) if self.lambda2 is None else self.lambda2
        return lambda1, lambda2


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
        """Replace each peft LoRA layer the variant targets with one LoRA per task (``models/task_lora.py``);
        a layer it does not target loses its LoRA (the frozen base layer alone)."""
        variant = VARIANTS[self.options.variant]
        built = replace_lora_layers(model, lambda site: self._layer(site, variant, len(tasks)), self.name)
        self.layers = [layer for layer in built if isinstance(layer, TaskLoRALinear)]
        if not self.layers:
            raise ConfigError(f"method olora variant {self.options.variant}: no LoRA layer matches its targets "
                              f"{variant.targets!r}; model.lora.target_modules must include them")
        names = parameter_names(model)
        self.task_names = [
            [names[id(p)] for layer in self.layers for p in (layer.lora_A[t], layer.lora_B[t])]
            for t in range(len(tasks))
        ]
        self.lora_names = {n for task in self.task_names for n in task}
        self._apply_active()

    def _layer(self, site: LoraSite, variant: OLoRAVariant, n_tasks: int) -> torch.nn.Module:
        if variant.targets is not None and not re.search(variant.targets, site.name):
            return site.base_layer
        rank = {"model": site.r, "split": site.r // n_tasks}.get(variant.rank, variant.rank)  # type: ignore[arg-type]
        if variant.rank == "split" and (site.r % n_tasks or not rank):
            raise ConfigError(f"method olora variant {self.options.variant} splits model.lora.r ({site.r}) over "
                              f"{n_tasks} tasks: it must be a multiple of the task count")
        scaling = None if variant.alpha is None else variant.alpha / int(rank)
        return TaskLoRALinear(site, n_tasks, rank=int(rank), scaling=scaling, init=variant.init,
                              current_only=variant.current_only)

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
        lambda1, lambda2 = self.options.resolved()
        if (t == 0 or lambda1 == 0) and lambda2 == 0:
            return None
        orth = torch.zeros((), device=self.layers[0].lora_A[t].device)
        l2 = torch.zeros_like(orth)
        for layer in self.layers:
            a, b = layer.lora_A[t], layer.lora_B[t]
            orth = orth + orthogonality_loss([layer.lora_A[s] for s in range(t)], a)
            l2 = l2 + torch.linalg.norm(a) + torch.linalg.norm(b)
        self.penalties[ctx.task.name] = {"orthogonality": float(orth.detach()), "l2": float(l2.detach())}
        return lambda1 * orth + lambda2 * l2

    def extra_state(self) -> dict[str, Any]:
        """How many task LoRAs are active, the last penalty terms per task."""
        return {"active": self.active, "penalties": dict(self.penalties)}

    def load_state(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Restore ``extra_state`` (the LoRA tensors themselves are trainable tensors, saved with the stage)."""
        self.active = int(extra.get("active", 0))
        self.penalties = dict(extra.get("penalties", {}))
        self._apply_active()

    def records(self) -> dict[str, Any]:
        """The variant, lambda1, lambda2, the per-task rank and the orthogonality / L2 terms at each task's last
        micro-batch."""
        lambda1, lambda2 = self.options.resolved()
        rank = int(self.layers[0].lora_A[0].shape[0]) if self.layers else None
        return {"variant": self.options.variant, "lambda1": lambda1, "lambda2": lambda2, "rank_per_task": rank,
                "layers": len(self.layers), "penalties": dict(self.penalties)}

    def recorded_options(self) -> dict[str, Any]:
        """``variant``, written resolved into config.yaml."""
        return {"variant": self.options.variant}
