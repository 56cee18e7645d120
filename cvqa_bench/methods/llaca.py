"""LLaCA: dynamic-alpha EMA of the trainable tensors plus instruction grouping (docs/methods.md).

Per task (decisions from ``llaca_plan``): load the start weights (the group's latest, the previous
task's or the base model's), run the dynamic EMA after every optimizer step when EMA is on (the EMA
copy is taken at the task's first step, where alpha falls back to 0.01), write the EMA weights into
the model at the end and keep a snapshot as the group's latest weights. Evaluation routes a task to
its group's weights. Memory: EMA + previous gradient = 2 copies of the trainable tensors during a
task, plus one snapshot per group (and one of the base model if an override starts from it).

Ablation switches (the paper's Table 6, row by row): ``ema: dynamic`` (the method), ``stable`` (a fixed
weight of 0.99 on the old weights, alpha = ``fallback``, where the plan has EMA on) or ``off`` (no
EMA at all); ``grouping: true|false``. ``ema: off`` with grouping on isolates grouping.

Numerics switches (docs/methods.md, "LLaCA numerics"): ``ema_dtype`` (float32 EMA, or the model's dtype as
the official bf16 run keeps it), ``alpha_gradient`` (the step's gradient, or the last micro-batch's),
``alpha_scale`` and ``fallback`` (``variant``: icml 2 / 0.01, continual-next 0.01 / 0.001). ``schedule``:
``pinned`` plans from the sequence's official schedule rows when it has them, ``computed`` by TF-IDF, naming
the tasks where the two differ.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel

from cvqa_bench.methods.base import Method, StepContext, TaskContext, TaskInfo
from cvqa_bench.methods.dynamic_ema import DynamicEMA, strip_prefix
from cvqa_bench.methods.ema_update import ALPHA_NUMERATOR_SCALE, FALLBACK_ALPHA, dynamic_alpha
from cvqa_bench.methods.grouping import add_to_codebook, route
from cvqa_bench.methods.llaca_options import THRESHOLD_BY_STYLE, VARIANTS, LLaCAOptions
from cvqa_bench.methods.llaca_plan import (
    TaskDecision,
    TaskOverride,
    disagreements,
    final_eval_task,
    pinned_overrides,
    plan_decisions,
    weight_labels,
)
from cvqa_bench.models.precision import compute_dtype

# dynamic_alpha lives with the rest of the tensor math; this module is its stable public address
__all__ = ["ALPHA_NUMERATOR_SCALE", "FALLBACK_ALPHA", "LLaCA", "LLaCAOptions", "TaskOverride", "dynamic_alpha"]


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
        scale, fallback = VARIANTS[self.options.variant]
        self.alpha_scale = self.options.alpha_scale if self.options.alpha_scale is not None else scale
        self.fallback = self.options.fallback if self.options.fallback is not None else fallback
        fixed = self.fallback if self.options.ema == "stable" else None
        self.dynamic = DynamicEMA(self.fallback, self.options.fused, fixed_alpha=fixed, alpha_scale=self.alpha_scale,
                                  ema_dtype=self.options.ema_dtype, alpha_gradient=self.options.alpha_gradient)
        self.task_params: dict[str, dict[str, torch.Tensor]] = {}  # final weights of tasks named by a start/eval
        self.disagreements: list[str] = []
        self.schedule_source = "computed"
        self.task_stats: dict[str, dict[str, Any]] = {}
        self._in_progress: str | None = None  # the task between before_task and after_task
        self._set_threshold("original")

    def setup(self, tasks: list[TaskInfo]) -> None:
        """Plan every task's group, EMA flag and start weights; overrides applied (ValueError if invalid)."""
        opts = self.options
        self._set_threshold(tasks[0].instruction_style if tasks else "original")
        pinned = pinned_overrides(tasks, opts.overrides)
        plan = {"grouping": opts.grouping, "threshold": self.threshold}
        computed = plan_decisions(tasks, **plan, overrides=opts.overrides)
        planned, self.disagreements, self.schedule_source = computed, [], "computed (TF-IDF grouping)"
        if pinned and opts.schedule == "pinned":
            planned = plan_decisions(tasks, **plan, overrides=pinned)
            self.schedule_source = "pinned (the sequence's schedule rows)"
        elif pinned:
            try:
                self.disagreements = disagreements(computed, plan_decisions(tasks, **plan, overrides=pinned))
            except ValueError as exc:  # another task order: the pinned rows do not apply
                self.disagreements = [f"the pinned schedule does not fit this task order: {exc}"]
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
        dtype = compute_dtype(ctx.model) if ctx.model is not None else None
        if self._in_progress == decision.task:  # resumed mid-task: EMA state came from load_state, the weights
            self.dynamic.watch(ctx.trainables, dtype)  # from the checkpoint
            return
        needs_base = any(d.start_from == "base" and d.index > 0 for d in self.decisions.values())
        if needs_base and not self.trained and self.base_params is None:
            self.base_params = ctx.trainables.snapshot()
        start = self._start_weights(decision)
        if start is not None:
            ctx.trainables.load(start)
        self.dynamic.reset()
        self.dynamic.watch(ctx.trainables, dtype)
        self._in_progress = decision.task

    def _start_weights(self, decision: TaskDecision) -> dict[str, torch.Tensor] | None:
        if not self.trained:
            return None  # the first task starts from the model as it is: the base model
        if decision.start_task is None:
            if self.base_params is None:
                raise RuntimeError(f"task {decision.task!r} starts from the base weights, but none were saved")
            return self.base_params
        # explicit, rather than "the model as it is": evaluation may have loaded other weights
        return self.task_params[decision.start_task]

    def _kept_tasks(self) -> set[str]:
        """Tasks whose final weights a later start or an evaluation still needs."""
        pending = [d for d in self.decisions.values() if d.task not in self.trained]
        return {d.start_task for d in pending if d.start_task} | {d.eval_with for d in self.decisions.values()
                                                                    if d.eval_with}

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
        self.group_params[decision.group] = self.task_params[decision.task] = ctx.trainables.snapshot()
        self.task_stats[decision.task] = {**self.dynamic.summary(), "numerics": self.numerics()}
        if decision.task not in self.trained:
            self.trained.append(decision.task)
        kept = self._kept_tasks()
        self.task_params = {n: p for n, p in self.task_params.items() if n in kept}
        self.dynamic.reset()
        self._in_progress = None

    def numerics(self) -> dict[str, Any]:
        """The alpha and EMA numerics in force (recorded with every task's alpha statistics)."""
        return {"variant": self.options.variant, "alpha_scale": self.alpha_scale, "fallback": self.fallback,
                "ema_dtype": self.options.ema_dtype, "alpha_gradient": self.options.alpha_gradient}

    def recorded_options(self) -> dict[str, Any]:
        """The schedule and numerics options, resolved, for config.yaml."""
        return {"schedule": self.options.schedule, **self.numerics()}

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
            target = self.decisions[task.name].eval_with
            if target in self.trained:
                return dict(self.task_params[target])
            return dict(self.group_params[self.decisions[task.name].group])
        group = route(task.instructions, self.codebooks(), self.threshold)
        return dict(self.group_params[max(self.group_params) if group is None else group])

    def eval_signature(self, task: TaskInfo) -> Any:
        """Nothing: a task is evaluated with the tensors ``eval_state`` loads, and they alone."""
        return None

    def weight_versions(self, tasks: list[TaskInfo]) -> list[list[Any]]:
        """(group, stage that last trained it) of the group each task is routed to, as ``eval_state`` routes;
        ``"base"`` before any training. Call after ``setup``."""
        for task in tasks:
            self._decision(task)
        return weight_labels(tasks, self.decisions, self.threshold)

    def notes(self) -> list[str]:
        """One line per task where the TF-IDF plan (``schedule: computed``) differs from the pinned schedule."""
        return [f"llaca schedule computed, differs from the pinned one: {line}" for line in self.disagreements]

    def schedule(self) -> list[dict[str, Any]]:
        """Per task: group, dynamic EMA on/off, the task it starts from and the one whose weights evaluate it
        in the final row (after ``setup``)."""
        planned = list(self.decisions.values())
        return [{"task": d.task, "group": d.group, "ema": self._ema_on(d), "start_from": d.start_task or "base",
                 "eval_with": final_eval_task(d, planned)} for d in planned]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Group weights (``group.<g>.<name>``), base snapshot, EMA, previous gradients, running alpha stats."""
        out: dict[str, torch.Tensor] = {}
        for group, params in self.group_params.items():
            out.update({f"group.{group}.{n}": t for n, t in params.items()})
        out.update({f"base.{n}": t for n, t in (self.base_params or {}).items()})
        for task, params in self.task_params.items():  # a task's weights that are also a group's are saved once
            if not any(params is g for g in self.group_params.values()):
                out.update({f"task.{task}.{n}": t for n, t in params.items()})
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
            "task_weights": {task: next((g for g, p in self.group_params.items() if p is params), None)
                             for task, params in self.task_params.items()},
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
        latest = {self.decisions[t].group: t for t in self.trained}  # a folder saved before task_weights
        self.task_params = {t: self.group_params[g] for g, t in latest.items() if g in self.group_params}
        self.task_params |= {
            task: self.group_params[group] if group is not None else strip_prefix(tensors, f"task.{task}.")
            for task, group in extra.get("task_weights", {}).items()}
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
                "threshold_from": self.threshold_from, "schedule": self.schedule_source,
                "schedule_disagreements": list(self.disagreements), "numerics": self.numerics(), "tasks": tasks}
