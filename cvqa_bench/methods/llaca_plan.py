"""LLaCA's per-task decisions: which group a task trains in, whether dynamic EMA is on, where it starts.

Defaults follow the official protocol (docs/methods.md, "Instruction grouping"): a task that opens a new group
starts from the previous task's parameters with dynamic EMA off; a task that joins a group starts
from that group's latest parameters with dynamic EMA on. With grouping off, every task is in group 0
with EMA on. ``overrides`` may set any of them per task, plus ``eval_with``: the task whose final weights
evaluate this one. A sequence that carries the official schedule (``schedule:`` rows of tasks/coin8*.yaml)
is planned from those rows (``pinned_overrides``); every decision is recorded with what was overridden.
A start or evaluation named by task resolves to that task's final weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cvqa_bench.methods.base import TaskInfo
from cvqa_bench.methods.grouping import add_to_codebook, choose_group, group_scores, route

StartFrom = str  # "group", "previous", "base", or the name of an earlier task
START_KEYWORDS = ("group", "previous", "base")


class TaskOverride(BaseModel):
    """Explicit decisions for one task; None keeps the planned one."""

    model_config = ConfigDict(extra="forbid")

    group: int | None = Field(None, ge=0, description="group index; the next unused index opens a new group")
    ema: bool | None = Field(None, description="dynamic EMA on or off for this task")
    start_from: StartFrom | None = Field(
        None, description="group: the group's latest weights; previous: the previous task's; base: the base model's; "
        "a task name: that earlier task's final weights"
    )
    eval_with: str | None = Field(None, description="evaluate this task with that task's final weights once it is "
                                  "trained (before that, and when null, with its group's latest)")


@dataclass(frozen=True)
class TaskDecision:
    """What LLaCA does for one task, and why (its similarity to every group that existed before it)."""

    task: str
    index: int
    group: int
    new_group: bool
    ema: bool
    start_from: StartFrom
    scores: tuple[float, ...]
    instructions: tuple[str, ...]
    overridden: tuple[str, ...]
    start_task: str | None = None  # whose final weights the task starts from; None = the base model's
    eval_with: str | None = None  # whose final weights evaluate it once trained; None = its group's latest

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (lists for tuples)."""
        out = asdict(self)
        for key in ("scores", "instructions", "overridden"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskDecision:
        """Inverse of ``to_json``."""
        return cls(**{**data, **{k: tuple(data[k]) for k in ("scores", "instructions", "overridden")}})

    def key(self) -> tuple[str, int, bool, str, str | None]:
        """The parts that change training or evaluation (task, group, ema, start, eval_with)."""
        return (self.task, self.group, self.ema, self.start_from, self.eval_with)


def pinned_overrides(tasks: list[TaskInfo], overrides: dict[str, TaskOverride]) -> dict[str, TaskOverride]:
    """The sequence's schedule rows as overrides (``overrides`` win field by field); {} without rows."""
    if not any(t.schedule for t in tasks):
        return {}
    merged = {}
    for task in tasks:
        ema, start_from, eval_with = task.schedule or (None, None, None)
        row = TaskOverride(ema=ema, start_from=start_from, eval_with=eval_with)
        mine = overrides.get(task.name, TaskOverride())
        merged[task.name] = row.model_copy(update=mine.model_dump(exclude_none=True))
    return {**overrides, **merged}


def plan_decisions(
    tasks: list[TaskInfo], *, grouping: bool, threshold: float, overrides: dict[str, TaskOverride]
) -> list[TaskDecision]:
    """One decision per task, in sequence order, with ``overrides`` applied as the plan goes.

    Raises:
        ValueError: an override names a task not in the sequence, a group index that skips ahead
            of the groups created so far, or ``start_from: group`` for a task that opens a new group.
    """
    names = [t.name for t in tasks]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"llaca overrides name tasks not in the sequence: {unknown}; the tasks are {names}")
    codebooks: list[list[str]] = []
    decisions: list[TaskDecision] = []
    for task in tasks:
        scores = group_scores(task.instructions, codebooks)
        if grouping:
            chosen = choose_group(scores, threshold)
            group = len(codebooks) if chosen is None else chosen
        else:
            group = 0
        override = overrides.get(task.name, TaskOverride())
        if override.group is not None:
            if override.group > len(codebooks):
                raise ValueError(
                    f"llaca override for task {task.name!r}: group {override.group} skips ahead; "
                    f"groups so far are 0..{len(codebooks) - 1}, and {len(codebooks)} opens a new one"
                )
            group = override.group
        new_group = group == len(codebooks)
        if new_group:
            codebooks.append([])
        add_to_codebook(codebooks[group], task.instructions)
        ema = override.ema if override.ema is not None else (not new_group or not grouping)
        start_from: StartFrom = override.start_from or ("previous" if new_group else "group")
        if start_from == "group" and new_group:
            raise ValueError(
                f"llaca override for task {task.name!r}: start_from 'group' but the task opens group "
                f"{group}, which has no weights yet; use 'previous' or 'base'"
            )
        overridden = tuple(k for k in ("group", "ema", "start_from", "eval_with") if getattr(override, k) is not None)
        start_task = _start_task(task, start_from, group, decisions, names)
        if override.eval_with is not None and override.eval_with not in names:
            raise ValueError(f"llaca: task {task.name!r} is evaluated with {override.eval_with!r}, which is not a "
                             f"task of the sequence {names}")
        decisions.append(
            TaskDecision(
                task=task.name,
                index=task.index,
                group=group,
                new_group=new_group,
                ema=ema,
                start_from=start_from,
                scores=tuple(scores),
                instructions=tuple(task.instructions),
                overridden=overridden,
                start_task=start_task,
                eval_with=override.eval_with,
            )
        )
    return decisions


def _start_task(task: TaskInfo, start_from: str, group: int, decisions: list[TaskDecision], names: list[str]
                ) -> str | None:
    """The task whose final weights ``task`` starts from (None: the base model's)."""
    if task.index == 0 or start_from == "base":
        return None
    if start_from == "previous":
        return decisions[-1].task
    if start_from == "group":
        return [d.task for d in decisions if d.group == group][-1]
    if start_from not in names[: task.index]:
        raise ValueError(
            f"llaca: task {task.name!r} starts from {start_from!r}, which is not an earlier task in this order "
            f"({names[: task.index]}); a pinned schedule fits the sequence's own order: use "
            "method.options.schedule: computed with task_order")
    return start_from


def final_eval_task(decision: TaskDecision, decisions: list[TaskDecision]) -> str:
    """The task whose final weights evaluate ``decision``'s task in the last row of the matrix."""
    if decision.eval_with is not None:
        return decision.eval_with
    return [d.task for d in decisions if d.group == decision.group][-1]


def disagreements(computed: list[TaskDecision], pinned: list[TaskDecision]) -> list[str]:
    """One line per task where the TF-IDF plan differs from the pinned schedule (EMA, start, final evaluation)."""
    lines = []
    for ours, official in zip(computed, pinned, strict=True):
        parts = []
        if ours.ema != official.ema:
            parts.append(f"EMA {'on' if ours.ema else 'off'} (pinned: {'on' if official.ema else 'off'})")
        if ours.start_task != official.start_task:
            parts.append(f"starts from {ours.start_task or 'base'} (pinned: {official.start_task or 'base'})")
        mine, theirs = final_eval_task(ours, computed), final_eval_task(official, pinned)
        if mine != theirs:
            parts.append(f"evaluated with {mine}'s weights (pinned: {theirs}'s)")
        if parts:
            lines.append(f"{ours.task}: TF-IDF plan " + "; ".join(parts))
    return lines


def weight_labels(tasks: list[TaskInfo], decisions: dict[str, TaskDecision], threshold: float) -> list[list[Any]]:
    """Per stage and task, (group, stage that last trained it) of the weights ``LLaCA.eval_state`` loads:
    the ``eval_with`` task's final weights once it is trained, else the task's group (a task not yet
    trained: the group its instructions match, else the newest); ``"base"`` before any training."""
    versions: list[list[Any]] = [["base"] * len(tasks)]
    last: dict[int, int] = {}
    books: dict[int, list[str]] = {}
    trained_at = {t.name: stage for stage, t in enumerate(tasks, start=1)}
    for stage, trained in enumerate(tasks, start=1):
        decision = decisions[trained.name]
        last[decision.group] = stage
        add_to_codebook(books.setdefault(decision.group, []), decision.instructions)
        done = {t.name for t in tasks[:stage]}
        row = []
        for task in tasks:
            target = decisions[task.name].eval_with
            if task.name in done and target in done:  # that task's final weights: its group's at its stage
                row.append((decisions[target].group, trained_at[target]))
                continue
            group = decisions[task.name].group if task.name in done else route(
                task.instructions, [books.get(g, []) for g in range(max(books) + 1)], threshold)
            group = max(last) if group is None else group
            row.append((group, last[group]))
        versions.append(row)
    return versions
