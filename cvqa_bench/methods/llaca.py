"""LLaCA: dynamic-alpha EMA of the trainable tensors plus instruction grouping (docs/methods.md).

Per task (decisions from ``llaca_plan``): load the start weights (the group's latest, the previous
task's or the base model's), run the dynamic EMA after every optimizer step when EMA is on (the EMA
copy is taken at the task's first step, where alpha falls back to 0.01), write the EMA weights into
the model at the end and keep a snapshot as the group's latest weights. Evaluation routes a task to
its group's weights. Memory: EMA + previous gradient = 2 copies of the trainable tensors during a
task, plus one snapshot per group (and one of the base model if an override starts from it).

Ablation switches (the paper's Table 6, row by row): ``ema: dynamic`` (the method), ``stable`` (a fixed
weight of 0.99 on the old weights, alpha = ``fallback_alpha``, where the plan has EMA on) or ``off`` (no
EMA at all); ``grouping: true|false``. ``ema: off`` with grouping on isolates grouping.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from cvqa_bench.methods.base import Method, StepContext, TaskContext, TaskInfo
from cvqa_bench.methods.dynamic_ema import DynamicEMA, strip_prefix
from cvqa_bench.methods.ema_update import ALPHA_NUMERATOR_SCALE, FALLBACK_ALPHA, dynamic_alpha
from cvqa_bench.methods.grouping import add_to_codebook, route
from cvqa_bench.methods.llaca_plan import TaskDecision, TaskOverride, plan_decisions

# dynamic_alpha lives with the rest of the tensor math; this module is its stable public address
__all__ = ["ALPHA_NUMERATOR_SCALE", "FALLBACK_ALPHA", "LLaCA", "LLaCAOptions", "TaskOverride", "dynamic_alpha"]


# The official code's threshold per instruction folder (Instructions -> 0.9, the variants -> 0.3).
THRESHOLD_BY_STYLE = {"original": 0.9, "diverse": 0.3}


class LLaCAOptions(BaseModel):
    """Options of the ``llaca`` method."""

    model_config = ConfigDict(extra="forbid")

    grouping: bool = Field(True, description="instruction grouping; off = one group, dynamic EMA on every task")
    ema: Literal["dynamic", "stable", "off"] = Field(
        "dynamic", description="dynamic: LLaCA's alpha; stable: fixed alpha = fallback_alpha (weight 0.99 on the "
        "old weights); off: no EMA (with grouping on: grouping alone)"
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="join a group at this mean TF-IDF similarity; null = by the sequence's "
        "instruction_style, as the official code picks it: 0.90 original CoIN instructions, 0.30 diverse / 10-type"
    )
    fallback_alpha: float = Field(
        FALLBACK_ALPHA, gt=0, lt=1, description="alpha when the dynamic one is unusable"
    )
    fused: bool = Field(True, description="torch._foreach update (no host sync); false = per-tensor loop")
    overrides: dict[str, TaskOverride] = Field(default_factory=dict, description="per-task decisions by task name")


class LLaCA(Method):
    """LLaCA: dynamic-alpha EMA from gradient and drift norms + instruction grouping."""

    name = "llaca"
    Options = LLaCAOptions

    def __init__(self, options: BaseModel | None = None, seed: int = 0) -> None:
        super().__init__(options, seed)
        self.decisions: dict[str, TaskDecision] = {}
        self.trained: list[str] = []  # task names whose stage has ended, in order
        self.group_params: dict[int, dict[str, torch.Tensor]] = {}
        self.base_params: dict[str, torch.Tensor] | None = None
        fixed = self.options.fallback_alpha if self.options.ema == "stable" else None
        self.dynamic = DynamicEMA(self.options.fallback_alpha, self.options.fused, fixed_alpha=fixed)
        self.task_stats: dict[str, dict[str, Any]] = {}
        self._in_progress: str | None = None  # the task between before_task and after_task
        self._set_threshold("original")

    def setup(self, tasks: list[TaskInfo]) -> None:
        """Plan every task's group, EMA flag and start weights; overrides applied (ValueError if invalid)."""
        opts = self.options
        self._set_threshold(tasks[0].instruction_style if tasks else "original")
        planned = plan_decisions(tasks, grouping=opts.grouping, threshold=self.threshold, overrides=opts.overrides)
        self._check_same_plan(planned)
        self.decisions = {d.task: d for d in planned}

    def _set_threshold(self, style: str) -> None:
        """The explicit threshold, else the official one for the sequence's instruction style; both recorded."""
        explicit = self.options.threshold
        self.threshold = explicit if explicit is not None else THRESHOLD_BY_STYLE[style]
        self.threshold_from = "explicit" if explicit is not None else f"instruction_style {style}"

    def _check_same_plan(self, planned: list[TaskDecision]) -> None:
        changed = [d.task for d in planned if d.task in self.decisions and self.decisions[d.task].key() != d.key()]
        if changed:
            raise ValueError(
                f"llaca decisions for {changed} differ from the saved ones; was the sequence or method changed?"
            )

    def _decision(self, task: TaskInfo) -> TaskDecision:
        if task.name not in self.decisions:
            raise ValueError(f"llaca has no decision for task {task.name!r}; setup() must see every task first")
        return self.decisions[task.name]

    def before_task(self, ctx: TaskContext) -> None:
        """Load the task's start weights and reset the EMA state (kept if resuming this very task)."""
        decision = self._decision(ctx.task)
        if self._in_progress == decision.task:
            return  # resumed mid-task: EMA state came from load_state, the weights from the checkpoint
        needs_base = any(d.start_from == "base" and d.index > 0 for d in self.decisions.values())
        if needs_base and not self.trained and self.base_params is None:
            self.base_params = ctx.trainables.snapshot()
        start = self._start_weights(decision)
        if start is not None:
            ctx.trainables.load(start)
        self.dynamic.reset()
        self._in_progress = decision.task

    def _start_weights(self, decision: TaskDecision) -> dict[str, torch.Tensor] | None:
        if not self.trained:
            return None  # the first task starts from the model as it is: the base model
        if decision.start_from == "base":
            if self.base_params is None:
                raise RuntimeError(f"task {decision.task!r} starts from the base weights, but none were saved")
            return self.base_params
        if decision.start_from == "group":
            return self.group_params[decision.group]
        # explicit, rather than "the model as it is": evaluation may have loaded another group's weights
        return self.group_params[self.decisions[self.trained[-1]].group]

    def after_optimizer_step(self, ctx: StepContext) -> None:
        """The dynamic-EMA update of every trainable tensor, when EMA is on for this task."""
        if self._ema_on(self._decision(ctx.task)):
            self.dynamic.step(ctx.trainables)

    def _ema_on(self, decision: TaskDecision) -> bool:
        """The plan's EMA flag for the task, unless the ``ema: off`` ablation turns EMA off everywhere."""
        return decision.ema and self.options.ema != "off"

    def after_task(self, ctx: TaskContext) -> None:
        """Write the EMA weights into the model (EMA on), keep them as the group's latest, log alpha stats."""
        decision = self._decision(ctx.task)
        if self._ema_on(decision) and self.dynamic.ema:
            ctx.trainables.load(self.dynamic.ema)
        self.group_params[decision.group] = ctx.trainables.snapshot()
        self.task_stats[decision.task] = self.dynamic.summary()
        if decision.task not in self.trained:
            self.trained.append(decision.task)
        self.dynamic.reset()
        self._in_progress = None

    def codebooks(self) -> list[list[str]]:
        """Each trained group's distinct instructions, by group index."""
        books: list[list[str]] = [[] for _ in range(len(self.group_params))]
        for name in self.trained:
            decision = self.decisions[name]
            add_to_codebook(books[decision.group], decision.instructions)
        return books

    def eval_state(self, task: TaskInfo) -> dict[str, torch.Tensor] | None:
        """The weights of the task's group: its own if trained, else the group its instructions match
        (mean similarity >= threshold), else the last created group; None before any group exists."""
        if not self.group_params:
            return None
        if task.name in self.trained:
            return dict(self.group_params[self.decisions[task.name].group])
        group = route(task.instructions, self.codebooks(), self.threshold)
        return dict(self.group_params[max(self.group_params) if group is None else group])

    def eval_signature(self, task: TaskInfo) -> Any:
        """Nothing: a task is evaluated with the tensors ``eval_state`` loads, and they alone."""
        return None

    def weight_versions(self, tasks: list[TaskInfo]) -> list[list[Any]]:
        """(group, stage that last trained it) of the group each task is routed to, as ``eval_state`` routes;
        ``"base"`` before any training. Call after ``setup``."""
        versions: list[list[Any]] = [["base"] * len(tasks)]
        last: dict[int, int] = {}
        books: dict[int, list[str]] = {}
        for stage, trained in enumerate(tasks, start=1):
            decision = self._decision(trained)
            last[decision.group] = stage
            add_to_codebook(books.setdefault(decision.group, []), decision.instructions)
            done = {t.name for t in tasks[:stage]}
            row = []
            for task in tasks:
                group = self.decisions[task.name].group if task.name in done else route(
                    task.instructions, [books.get(g, []) for g in range(max(books) + 1)], self.threshold)
                group = max(last) if group is None else group
                row.append((group, last[group]))
            versions.append(row)
        return versions

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Group weights (``group.<g>.<name>``), base snapshot, EMA, previous gradients, running alpha stats."""
        out: dict[str, torch.Tensor] = {}
        for group, params in self.group_params.items():
            out.update({f"group.{group}.{n}": t for n, t in params.items()})
        out.update({f"base.{n}": t for n, t in (self.base_params or {}).items()})
        out.update(self.dynamic.state_dict())
        return {k: v.detach().contiguous() for k, v in out.items()}

    def extra_state(self) -> dict[str, Any]:
        """Decisions, trained tasks, codebooks, per-task alpha statistics, the task in progress."""
        return {
            "decisions": [d.to_json() for d in self.decisions.values()],
            "trained": list(self.trained),
            "codebooks": self.codebooks(),
            "task_stats": dict(self.task_stats),
            "in_progress": self._in_progress,
        }

    def load_state(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Restore ``state_dict`` + ``extra_state``; ValueError if the saved decisions differ from setup's."""
        saved = [TaskDecision.from_json(d) for d in extra.get("decisions", [])]
        self._check_same_plan(saved)
        self.decisions = {**{d.task: d for d in saved}, **self.decisions}
        self.trained = list(extra.get("trained", []))
        self.task_stats = dict(extra.get("task_stats", {}))
        self._in_progress = extra.get("in_progress")
        groups = sorted({int(k.split(".", 2)[1]) for k in tensors if k.startswith("group.")})
        self.group_params = {g: strip_prefix(tensors, f"group.{g}.") for g in groups}
        self.base_params = strip_prefix(tensors, "base.") or None
        self.dynamic.load(tensors)

    def records(self) -> dict[str, Any]:
        """Per task: group, similarity to each earlier group, EMA on/off, start, alpha statistics."""
        tasks = []
        for decision in self.decisions.values():
            row = decision.to_json()
            row.pop("instructions")
            row["ema_applied"] = self._ema_on(decision)
            row["alpha"] = self.task_stats.get(decision.task)
            tasks.append(row)
        return {"grouping": self.options.grouping, "ema": self.options.ema, "threshold": self.threshold,
                "threshold_from": self.threshold_from, "tasks": tasks}
