"""Experience replay: a seeded buffer of earlier tasks' training rows mixed into every later stage.

``random``: after each task, ``budget`` of its own rows (a count, or a fraction of the task's rows,
rounded, at least 1) are drawn uniformly without replacement and kept; the buffer grows by one
budget per task. ``reservoir``: one buffer of fixed size (``max_buffer``, or an integer ``budget``)
filled by reservoir sampling (Algorithm R) over every training row of every task so far, so it
holds a uniform sample of all rows seen and older tasks' shares shrink as tasks are added.
Each task's draw uses its own generator seeded by (run seed, task index), never global RNG.

``memory`` (random strategy): ``growing`` (the default above) or ``fixed``, Avalanche's
``ExperienceBalancedBuffer(max_size, adaptive_size=True)`` (avalanche/training/storage_policy.py): a memory
of ``max_buffer`` rows split equally over the tasks seen so far (``max_buffer // n`` each, the remainder to
the first tasks); each task keeps a seeded random subset of its rows, and an older task's share shrinks to
the first rows of its own draw.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cvqa_bench.methods.base import Method, TaskContext, TaskInfo

Row = dict[str, Any]


class ReplayOptions(BaseModel):
    """Options of the ``replay`` method."""

    model_config = ConfigDict(extra="forbid")

    budget: int | float = Field(
        0.1, description="an int >= 1: rows kept per task; a float in (0, 1]: fraction of the task's rows"
    )
    strategy: Literal["random", "reservoir"] = "random"
    max_buffer: int | None = Field(None, ge=1, description="total buffer size: reservoir (default: budget) or "
                                   "memory: fixed")
    memory: Literal["growing", "fixed"] = Field(
        "growing", description="random strategy: growing = budget rows of every task kept (the buffer grows); "
        "fixed = max_buffer rows split equally over the tasks seen (Avalanche's ExperienceBalancedBuffer)")

    @field_validator("budget", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"budget must be a row count or a fraction, got {value}")
        return value

    @model_validator(mode="after")
    def _check(self) -> ReplayOptions:
        if isinstance(self.budget, int) and self.budget < 1:
            raise ValueError(f"budget {self.budget}: a row count must be >= 1")
        if isinstance(self.budget, float) and not 0 < self.budget <= 1:
            raise ValueError(f"budget {self.budget}: a fraction must be in (0, 1]; use an int for a row count")
        if self.memory == "fixed" and (self.strategy != "random" or self.max_buffer is None):
            raise ValueError("memory 'fixed' is the random strategy with a total size: set max_buffer")
        if self.strategy == "random" and self.memory == "growing" and self.max_buffer is not None:
            raise ValueError("max_buffer applies to strategy 'reservoir' or memory 'fixed'; the growing random "
                             "buffer grows by budget")
        if self.strategy == "reservoir" and self.max_buffer is None and isinstance(self.budget, float):
            raise ValueError("strategy 'reservoir' needs a size: set max_buffer, or an integer budget")
        return self


def balanced_lengths(max_size: int, n_groups: int) -> list[int]:
    """Avalanche's experience-balanced split of ``max_size`` rows over ``n_groups`` tasks: ``max_size //
    n_groups`` each, the remainder one by one to the first tasks."""
    lengths = [max_size // n_groups] * n_groups
    for i in range(max_size - sum(lengths)):
        lengths[i] += 1
    return lengths


def rows_to_keep(budget: int | float, n_rows: int) -> int:
    """How many of a task's ``n_rows`` rows a budget keeps (a count, or a rounded fraction, at least 1)."""
    if n_rows == 0:
        return 0
    if isinstance(budget, int):
        return min(budget, n_rows)
    return min(n_rows, max(1, round(budget * n_rows)))


class Replay(Method):
    """Experience replay: a seeded buffer of earlier tasks' rows mixed into later stages."""

    name = "replay"
    Options = ReplayOptions

    def __init__(self, options: BaseModel | None = None, seed: int = 0) -> None:
        super().__init__(options, seed)
        self.buffer: list[dict[str, Any]] = []  # {"task": name, "row": row}, a copy of the original
        self.added: dict[str, list[str]] = {}  # per task, the ids its draw put into the buffer
        self.n_seen = 0  # rows streamed through the reservoir so far
        self._pending: tuple[str, list[Row]] | None = None  # the current task's own rows

    def _rng(self, task: TaskInfo) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed % 2**64, task.index]))

    def train_rows(self, task: TaskInfo, rows: list[Row]) -> list[Row]:
        """The task's rows followed by copies of the buffered rows of earlier tasks."""
        for position, row in enumerate(rows):
            if not isinstance(row, dict) or "id" not in row:
                raise ValueError(f"replay: training row {position} of task {task.name!r} has no 'id'")
        self._pending = (task.name, list(rows))
        return list(rows) + [copy.deepcopy(entry["row"]) for entry in self.buffer]

    def after_task(self, ctx: TaskContext) -> None:
        """Draw this task's rows into the buffer (from its own rows, never the replayed ones)."""
        if self._pending is None or self._pending[0] != ctx.task.name:
            raise RuntimeError(f"replay: after_task for {ctx.task.name!r} without its train_rows call")
        rows = self._pending[1]
        rng = self._rng(ctx.task)
        if self.options.memory == "fixed":
            self.added[ctx.task.name] = self._balanced(ctx.task.name, rows, rng)
        elif self.options.strategy == "random":
            picked = sorted(rng.choice(len(rows), size=rows_to_keep(self.options.budget, len(rows)), replace=False))
            entries = [{"task": ctx.task.name, "row": copy.deepcopy(rows[i])} for i in picked]
            self.buffer.extend(entries)
            self.added[ctx.task.name] = [str(e["row"]["id"]) for e in entries]
        else:
            self.added[ctx.task.name] = self._reservoir(ctx.task.name, rows, rng)
        self._pending = None

    def _balanced(self, task: str, rows: list[Row], rng: np.random.Generator) -> list[str]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for entry in self.buffer:  # earlier tasks, each in its own draw's order
            groups.setdefault(entry["task"], []).append(entry)
        order = rng.permutation(len(rows))
        groups[task] = [{"task": task, "row": copy.deepcopy(rows[i])} for i in order]
        lengths = balanced_lengths(int(self.options.max_buffer), len(groups))
        self.buffer = [e for group, n in zip(groups.values(), lengths) for e in group[:n]]
        return [str(e["row"]["id"]) for e in groups[task][:lengths[-1]]]

    def recorded_options(self) -> dict[str, Any]:
        """``memory``, written resolved into config.yaml."""
        return {"memory": self.options.memory}

    def _reservoir(self, task: str, rows: list[Row], rng: np.random.Generator) -> list[str]:
        capacity = self.options.max_buffer or int(self.options.budget)
        added = []
        for row in rows:
            self.n_seen += 1
            slot = len(self.buffer) if len(self.buffer) < capacity else int(rng.integers(self.n_seen))
            if slot < capacity:
                entry = {"task": task, "row": copy.deepcopy(row)}
                if slot == len(self.buffer):
                    self.buffer.append(entry)
                else:
                    self.buffer[slot] = entry
                added.append(str(row["id"]))
        return added

    def extra_state(self) -> dict[str, Any]:
        """The buffer rows, the reservoir's stream count and the per-task draws (JSON-able)."""
        return {"buffer": copy.deepcopy(self.buffer), "n_seen": self.n_seen, "added": copy.deepcopy(self.added)}

    def load_state(self, tensors: dict[str, Any], extra: dict[str, Any]) -> None:
        """Restore what ``extra_state`` returned."""
        bad = [e for e in extra.get("buffer", []) if not isinstance(e, dict) or {"task", "row"} - set(e)]
        if bad:
            raise ValueError(f"replay state: buffer entries need 'task' and 'row', got {bad[0]!r}")
        self.buffer = copy.deepcopy(extra.get("buffer", []))
        self.n_seen = int(extra.get("n_seen", 0))
        self.added = {str(k): list(v) for k, v in extra.get("added", {}).items()}

    def records(self) -> dict[str, Any]:
        """The (task, id) pairs each task's draw selected and those now in the buffer."""
        return {
            "strategy": self.options.strategy,
            "budget": self.options.budget,
            "memory": self.options.memory,
            "max_buffer": self.options.max_buffer,
            "selected": [[task, row_id] for task, ids in self.added.items() for row_id in ids],
            "buffer": [[e["task"], str(e["row"]["id"])] for e in self.buffer],
        }
