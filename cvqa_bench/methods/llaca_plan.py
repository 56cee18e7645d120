"""LLaCA's per-task decisions: which group a task trains in, whether dynamic EMA is on, where it starts.

Defaults follow the official protocol (docs/methods.md, "Instruction grouping"): a task that opens a new group
starts from the previous task's parameters with dynamic EMA off; a task that joins a group starts
from that group's latest parameters with dynamic EMA on. With grouping off, every task is in group 0
with EMA on. A sequence's ``overrides`` may set any of the three per task, so the official CoIN
schedule table can be reproduced exactly; every decision is recorded with what was overridden.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cvqa_bench.methods.base import TaskInfo
from cvqa_bench.methods.grouping import add_to_codebook, choose_group, group_scores

StartFrom = Literal["group", "previous", "base"]


class TaskOverride(BaseModel):
    """Explicit decisions for one task; None keeps the planned one."""

    model_config = ConfigDict(extra="forbid")

    group: int | None = Field(None, ge=0, description="group index; the next unused index opens a new group")
    ema: bool | None = Field(None, description="dynamic EMA on or off for this task")
    start_from: StartFrom | None = Field(
        None, description="group: the group's latest weights; previous: the previous task's; base: the base model's"
    )


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

    def key(self) -> tuple[str, int, bool, str]:
        """The parts that change training (task, group, ema, start)."""
        return (self.task, self.group, self.ema, self.start_from)


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
        overridden = tuple(k for k in ("group", "ema", "start_from") if getattr(override, k) is not None)
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
            )
        )
    return decisions
