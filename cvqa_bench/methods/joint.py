"""Multi-task training, the upper bound the continual methods are compared with (the paper's "MT").

``joint``: one stage of training on the union of every task's training
rows, from the base model. The run keeps its stage loop: stages 1..T-1 train nothing (the method gives
no rows, so their rows of the matrix are the base model again) and the last stage trains on all T
tasks' rows at once. Its matrix therefore has one trained row, the last: read ``final_avg`` as the
multi-task reference, not forgetting or BWT. ``cumulative``: every
stage retrains from the base weights on the rows of every task seen so far, so row k is the
multi-task model of tasks 1..k; ``start: previous`` continues from the previous stage's weights instead, as
Avalanche's ``Cumulative`` strategy does (avalanche/training/supervised/cumulative.py: the model is never
reset, each experience trains on the concatenation of every experience so far). The step budget is the run's ``train`` section per trained stage
(with ``max_steps`` the union gets as many steps as one task does in the other methods).
Rows are kept in the method state (JSON), as replay keeps its buffer.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from cvqa_bench.methods.base import Method, TaskContext, TaskInfo
from cvqa_bench.methods.dynamic_ema import strip_prefix

Row = dict[str, Any]
_PREFIX = "base."


class Joint(Method):
    """Multi-task upper bound: train from the base weights on the union of tasks' rows."""

    name = "joint"
    every_stage: ClassVar[bool] = False  # cumulative: every stage trains, on all tasks seen so far

    def __init__(self, options: BaseModel | None = None, seed: int = 0) -> None:
        super().__init__(options, seed)
        self.seen: dict[str, list[Row]] = {}  # task name -> its own rows, in sequence order
        self.n_tasks = 0
        self.base: dict[str, torch.Tensor] = {}
        self.trained_on: dict[str, list[str]] = {}  # stage task -> the tasks whose rows it trained on

    def setup(self, tasks: list[TaskInfo]) -> None:
        """Remember how many tasks the sequence has (the last one trains in ``joint`` mode)."""
        self.n_tasks = len(tasks)

    def trains_at(self, task: TaskInfo) -> bool:
        """Whether the stage of ``task`` trains (every stage in cumulative mode, only the last in joint)."""
        return self.every_stage or task.index == self.n_tasks - 1

    def train_rows(self, task: TaskInfo, rows: list[Row]) -> list[Row]:
        """The union of the rows of every task so far (in sequence order) when this stage trains, else none."""
        self.seen[task.name] = copy.deepcopy(rows)
        if not self.trains_at(task):
            return []
        return [copy.deepcopy(r) for name in self.seen for r in self.seen[name]]

    def starts_from_base(self) -> bool:
        """Whether a trained stage starts from the base weights (else from the weights as they are)."""
        return True

    def before_task(self, ctx: TaskContext) -> None:
        """Keep the base weights at the first task; start every trained stage from them."""
        if not self.base:
            self.base = ctx.trainables.snapshot()
        elif self.trains_at(ctx.task) and ctx.task.name not in self.trained_on and self.starts_from_base():
            ctx.trainables.load(self.base)

    def after_task(self, ctx: TaskContext) -> None:
        """Record which tasks' rows this stage trained on."""
        self.trained_on[ctx.task.name] = list(self.seen) if self.trains_at(ctx.task) else []

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The base weights (``base.<name>``)."""
        return {_PREFIX + n: t.detach().contiguous() for n, t in self.base.items()}

    def extra_state(self) -> dict[str, Any]:
        """The rows seen so far and what each stage trained on."""
        return {"seen": copy.deepcopy(self.seen), "trained_on": copy.deepcopy(self.trained_on)}

    def load_state(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Restore ``state_dict`` + ``extra_state``."""
        self.base = strip_prefix(tensors, _PREFIX)
        self.seen = {str(k): list(v) for k, v in extra.get("seen", {}).items()}
        self.trained_on = {str(k): list(v) for k, v in extra.get("trained_on", {}).items()}

    def records(self) -> dict[str, Any]:
        """The mode and, per stage, the tasks whose rows it trained on (empty = not trained)."""
        return {"mode": self.name, "trained_on": dict(self.trained_on)}


class CumulativeOptions(BaseModel):
    """Options of the ``cumulative`` method."""

    model_config = ConfigDict(extra="forbid")

    start: Literal["base", "previous"] = Field(
        "base", description="each stage starts from the base weights, or from the previous stage's (Avalanche)")


class Cumulative(Joint):
    """Cumulative multi-task training: each stage trains on all tasks seen so far, from the base (or previous)."""

    name = "cumulative"
    every_stage = True
    Options = CumulativeOptions

    def starts_from_base(self) -> bool:
        """``start: base`` (the default); ``previous`` continues from the weights the last stage left."""
        return self.options.start == "base"

    def recorded_options(self) -> dict[str, Any]:
        """``start``, written resolved into config.yaml."""
        return {"start": self.options.start}

    def records(self) -> dict[str, Any]:
        """The mode, where each stage starts and the tasks whose rows it trained on."""
        return {**super().records(), "start": self.options.start}
