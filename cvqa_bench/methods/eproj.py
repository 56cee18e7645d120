"""EProj (He et al. 2023, "Continual Instruction Tuning for Large Multimodal Models"): one projector per task.

Each task trains its own copy of the multimodal projector, started from the base model's projector
(``init: previous`` starts from the previous task's); the LLM LoRA is shared and fine-tuned across tasks.
At test time a task is evaluated with the shared LoRA and the projector its instructions select: the
LLaCA grouping machinery (``methods/grouping.py``) with one codebook per trained task, the best mean
TF-IDF similarity winning (first on ties); with no shared word at all (best score 0, or below
``threshold``) the newest projector is used. ``oracle: true`` picks a trained task's own projector by name.
Memory: one projector copy per task plus one of the shared tensors.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from cvqa_bench.config import ConfigError
from cvqa_bench.methods.base import Method, TaskContext, TaskInfo
from cvqa_bench.methods.dynamic_ema import strip_prefix
from cvqa_bench.methods.grouping import group_scores
from cvqa_bench.models.families.base import DEFAULT_PROJECTOR_NAMES


class EProjOptions(BaseModel):
    """Options of the ``eproj`` method."""

    model_config = ConfigDict(extra="forbid")

    oracle: bool = Field(False, description="pick a trained task's projector by its name instead of its instructions")
    init: Literal["base", "previous"] = Field("base", description="a new projector starts as the base model's "
                                              "or as the previous task's")
    threshold: float = Field(0.0, ge=0, le=1, description="below this best similarity the newest projector is used")


def select_projector(instructions: tuple[str, ...] | list[str], codebooks: list[list[str]], threshold: float) -> int:
    """Index of the codebook (one per trained task) whose instructions match best; the last one when the
    best mean similarity is 0 or below ``threshold``."""
    if not codebooks:
        raise ValueError("no projector has been trained yet")
    scores = group_scores(instructions, codebooks)
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return best if scores[best] > 0 and scores[best] >= threshold else len(codebooks) - 1


class EProj(Method):
    """EProj: a new projector per task, shared LLM LoRA, projector chosen at test time by instructions."""

    name = "eproj"
    Options = EProjOptions

    def __init__(self, options: BaseModel | None = None, seed: int = 0) -> None:
        super().__init__(options, seed)
        self.trained: list[TaskInfo] = []  # in order; their instructions are the codebooks
        self.projectors: dict[str, dict[str, torch.Tensor]] = {}  # task name -> its projector tensors
        self.base: dict[str, torch.Tensor] = {}  # the base model's projector
        self.shared: dict[str, torch.Tensor] = {}  # the rest of the trainable tensors after the last task
        self.tasks: list[TaskInfo] = []
        self._in_progress: str | None = None

    def check_model(self, model: Any) -> None:
        """EProj trains one projector per task: the projector must be trainable."""
        if not model.train_projector:
            raise ValueError("EProj trains one projector per task and needs model.train_projector: true")

    def setup(self, tasks: list[TaskInfo]) -> None:
        """Remember the tasks (for the routing records)."""
        self.tasks = list(tasks)

    def train_rows(self, task: TaskInfo, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows unchanged; their first prompts are kept for routing ties."""
        self.prompts[task.name] = prompt_texts(r["conversations"][0]["value"] for r in rows)
        return rows

    def prepare_model(self, model: torch.nn.Module, tasks: list[TaskInfo]) -> None:
        """Remember which parameters are the projector in this model's family (copied per task)."""
        from cvqa_bench.models.families import family_for

        self.projector_names = family_for(model).projector_names

    def _split(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        names = getattr(self, "projector_names", DEFAULT_PROJECTOR_NAMES)
        projector = {n: t for n, t in state.items() if any(part in n for part in names)}
        return projector, {n: t for n, t in state.items() if n not in projector}

    def before_task(self, ctx: TaskContext) -> None:
        """Start the task's projector from the base (or previous) one; the shared tensors stay as they are."""
        if self._in_progress == ctx.task.name:
            return  # resumed mid-task: the weights came from the checkpoint
        projector, _ = self._split(ctx.trainables.snapshot())
        if not projector:
            raise ConfigError("method eproj trains one projector per task and needs model.train_projector: true")
        if not self.base:
            self.base = projector  # before the first task: the base model's projector
        start = self.base if self.options.init == "base" or not self.trained else self.projectors[self.trained[-1].name]
        ctx.trainables.load({**ctx.trainables.snapshot(), **start})
        self._in_progress = ctx.task.name

    def after_task(self, ctx: TaskContext) -> None:
        """Keep the task's projector and the shared tensors."""
        projector, self.shared = self._split(ctx.trainables.snapshot())
        self.projectors[ctx.task.name] = projector
        if ctx.task.name not in [t.name for t in self.trained]:
            self.trained.append(ctx.task)
        self._in_progress = None

    def route(self, task: TaskInfo) -> str:
        """The name of the trained task whose projector ``task`` is evaluated with."""
        if self.options.oracle and task.name in self.projectors:
            return task.name
        books = [list(t.instructions) for t in self.trained]
        return self.trained[select_projector(task.instructions, books, self.options.threshold)].name

    def eval_state(self, task: TaskInfo) -> dict[str, torch.Tensor] | None:
        """The shared tensors with the selected task's projector; None before any task is trained."""
        if not self.trained:
            return None
        return {**self.shared, **self.projectors[self.route(task)]}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``proj.<task index>.<name>``, ``base.<name>``, ``shared.<name>``."""
        index = {t.name: t.index for t in self.trained}
        out = {f"proj.{index[task]}.{n}": t for task, params in self.projectors.items() for n, t in params.items()}
        out.update({f"base.{n}": t for n, t in self.base.items()})
        out.update({f"shared.{n}": t for n, t in self.shared.items()})
        return {k: v.detach().contiguous() for k, v in out.items()}

    def extra_state(self) -> dict[str, Any]:
        """The trained tasks (name, index, instructions) and the task in progress."""
        return {"trained": [{"name": t.name, "index": t.index, "instructions": list(t.instructions)}
                            for t in self.trained], "in_progress": self._in_progress}

    def load_state(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Restore ``state_dict`` + ``extra_state``."""
        self.trained = [TaskInfo(index=int(t["index"]), name=t["name"], instructions=tuple(t["instructions"]))
                        for t in extra.get("trained", [])]
        self._in_progress = extra.get("in_progress")
        self.projectors = {t.name: strip_prefix(tensors, f"proj.{t.index}.") for t in self.trained}
        self.base = strip_prefix(tensors, "base.")
        self.shared = strip_prefix(tensors, "shared.")

    def records(self) -> dict[str, Any]:
        """Oracle or not, the trained projectors and which projector each task is evaluated with now."""
        routing = {t.name: self.route(t) for t in self.tasks} if self.trained else {}
        return {"oracle": self.options.oracle, "init": self.options.init, "projectors": [t.name for t in self.trained],
                "routing": routing}
