"""The method interface: a fixed, typed set of no-op hooks the training loop calls at one place each.

Hook order in a run (``run/stage.py`` / ``run/training/train.py``)::

    method.prepare_model(model, tasks)                once after loading: per-task adapters, experts
    method.setup(tasks)                               once, before stage 1
    for each task:
        rows = method.train_rows(task, rows)          replay mixing
        method.before_task(ctx)                       e.g. pick a parameter group, load its weights
        for each optimizer step:
            for each micro-batch: loss += method.extra_loss(model, inputs, outputs, loss_ctx)   EWC, LwF
            optimizer.step()
            method.after_optimizer_step(step_ctx)     gradients are still there; zero_grad comes after
        method.after_task(ctx)                        e.g. write the EMA weights into the model
        for each evaluated task:
            state = method.eval_state(task)           weights to evaluate this task with (None = current)

A method keeps its own state (EMA copies, previous gradients, buffers) and saves it through
``state_dict`` (tensors, for safetensors) and ``extra_state`` (JSON-able); ``records`` is what it
wants written to the run directory (decisions, alpha statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict


class NoOptions(BaseModel):
    """A method without options."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class TaskInfo:
    """What a method may know about a task: its position, name, instructions and training row ids."""

    index: int  # 0-based position in the sequence
    name: str
    instructions: tuple[str, ...]  # distinct instruction strings of its training prompts
    train_ids: tuple[str, ...] = ()
    instruction_style: str = "original"  # the sequence's instruction variant (original, diverse)
    # the sequence's pinned LLaCA schedule row, (ema, start_from, eval_with); None when it has none
    schedule: tuple[bool, str, str] | None = None
    # the first PROMPT_SAMPLE distinct prompts of its test split, as written (EProj's routing tie-break)
    test_prompts: tuple[str, ...] = ()


PROMPT_SAMPLE = 512  # test prompts a TaskInfo carries, training prompts EProj keeps per task


class Trainables:
    """The trainable tensors of a model, by name, in ``named_parameters`` order.

    Fixed when the run starts (after ``Method.prepare_model``): every tensor a method may train in any
    task. All of them are snapshotted, saved and restored; ``set_trainable`` chooses which of them the
    optimizer trains in a task (``requires_grad``).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters")
        self.names: list[str] = [n for n, _ in named]
        self.params: list[torch.nn.Parameter] = [p for _, p in named]

    def items(self) -> list[tuple[str, torch.nn.Parameter]]:
        """(name, parameter) pairs."""
        return list(zip(self.names, self.params))

    def grads(self) -> list[torch.Tensor]:
        """The current gradients (zeros for a tensor that received none)."""
        return [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A detached copy of every trainable tensor."""
        return {n: p.detach().clone() for n, p in zip(self.names, self.params)}

    @torch.no_grad()
    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` into the trainable tensors; every name must be present."""
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"state lacks {len(missing)} trainable tensors, e.g. {missing[0]!r}")
        for name, param in zip(self.names, self.params):
            param.copy_(state[name])

    def numel(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.params)

    def set_trainable(self, names: Iterable[str]) -> None:
        """Train only ``names`` from now on (``requires_grad``); every tensor stays saved and restored.

        The set is every tensor a method may ever train (fixed when the run starts); a method that trains
        another subset per task (O-LoRA's current LoRA) switches it here, in ``before_task``.
        """
        wanted = set(names)
        unknown = wanted.difference(self.names)
        if unknown:
            raise KeyError(f"not a trainable tensor: {sorted(unknown)[0]!r}")
        for name, param in zip(self.names, self.params):
            param.requires_grad_(name in wanted)

    def active_names(self) -> list[str]:
        """The names of the tensors trained now (``requires_grad``)."""
        return [n for n, p in zip(self.names, self.params) if p.requires_grad]


@dataclass
class TaskContext:
    """Passed to ``before_task`` / ``after_task``."""

    stage: int  # 1-based stage number (0 is the zero-shot evaluation)
    task: TaskInfo
    tasks: list[TaskInfo]
    trainables: Trainables
    # The model (set from before_task on: LLaCA's ema_dtype reads its compute dtype), and ``batches(n)`` (after
    # training): up to n collated batches of the task's own training rows on the model's device, in a fixed
    # order (for what a method computes from the data at task end, e.g. EWC's Fisher).
    model: torch.nn.Module | None = None
    batches: Callable[[int], Iterator[dict[str, torch.Tensor]]] | None = None


@dataclass
class LossContext:
    """Passed to ``extra_loss``: once per micro-batch, after the forward pass, before backward."""

    step: int  # 1-based optimizer step the micro-batch belongs to
    task: TaskInfo
    trainables: Trainables
    model: torch.nn.Module  # the model itself, never a DDP wrapper (e.g. for a teacher forward)


@dataclass
class StepContext:
    """Passed to ``after_optimizer_step``: right after ``optimizer.step()``, before ``zero_grad``."""

    step: int  # 1-based optimizer step within the task
    task: TaskInfo
    trainables: Trainables
    records: dict[str, Any] = field(default_factory=dict)


class Method:
    """Base class with no-op hooks; subclasses override what they need."""

    name: ClassVar[str] = "method"
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel | None = None, seed: int = 0) -> None:
        self.options = options if options is not None else self.Options()
        self.seed = seed

    def prepare_model(self, model: torch.nn.Module, tasks: list[TaskInfo]) -> None:
        """Model surgery, once after loading and before the trainable set is fixed: add per-task adapters,
        experts or projectors (every tensor with ``requires_grad`` then is saved with each stage)."""

    def check_model(self, model: Any) -> None:
        """Raise ValueError when the method cannot run on this model config (``config.model``); called
        before any model is loaded (O-LoRA and MoELoRA need LoRA, EProj a trainable projector)."""

    def setup(self, tasks: list[TaskInfo]) -> None:
        """Called once before the first stage with every task of the sequence."""

    def train_rows(self, task: TaskInfo, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The training rows of a stage (replay mixes earlier rows in here).

        Rows are CoIN train rows with the image resolved: ``{"id", "image": abs path | None,
        "conversations": [{"from", "value"}, ...]}``.
        """
        return rows

    def before_task(self, ctx: TaskContext) -> None:
        """Called before the first optimizer step of a task."""

    def after_optimizer_step(self, ctx: StepContext) -> None:
        """Called after every (non-skipped) optimizer step, before gradients are zeroed."""

    # -- loss hook (HF Trainer.compute_loss, Avalanche before_backward) -----------------------------
    def extra_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], outputs: Any,
                   ctx: LossContext) -> torch.Tensor | None:
        """A term added to the task loss of one micro-batch before backward (None = nothing).

        Called once per micro-batch with the batch and the model's outputs (``outputs.logits``); the
        term is weighted like one micro-batch's share of the optimizer step's loss.
        """
        return None

    def after_task(self, ctx: TaskContext) -> None:
        """Called after the last optimizer step of a task, before the stage is saved."""

    def eval_state(self, task: TaskInfo) -> dict[str, torch.Tensor] | None:
        """Trainable tensors to evaluate ``task`` with; None = the model as it is."""
        return None

    def eval_signature(self, task: TaskInfo) -> Any:
        """JSON-able state besides the tensors that changes what evaluating ``task`` computes (e.g. which
        adapters a forward adds). A cell is reused only when this and the weights are identical; the
        default, all of ``extra_state``, is the safe choice."""
        return self.extra_state()

    def weight_versions(self, tasks: list[TaskInfo]) -> list[list[Any]]:
        """Before training: for stage 0..T and each task, a label of the weights the task will be evaluated
        with after that stage; equal labels promise identical weights (``cvqa plan`` counts the distinct
        ones). Default: every stage's weights are new."""
        return [[stage] * len(tasks) for stage in range(len(tasks) + 1)]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensor state to save with a stage (safetensors; names must be unique strings)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """JSON-able state to save with a stage (codebooks, buffers, counters)."""
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Restore what ``state_dict`` and ``extra_state`` returned."""

    def records(self) -> dict[str, Any]:
        """JSON-able decisions and statistics to write to the run directory."""
        return {}

    def recorded_options(self) -> dict[str, Any]:
        """Options written resolved into config.yaml even when left at their default (hashed only when not)."""
        return {}

    def notes(self) -> list[str]:
        """Lines the run prints (so run.log keeps them) and the manifest records, one per finding (after ``setup``)."""
        return []

    def schedule(self) -> list[dict[str, Any]]:
        """Per task, the method's plan as ``cvqa plan`` prints it (after ``setup``); [] for a method without one."""
        return []
