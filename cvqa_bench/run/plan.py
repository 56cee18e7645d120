"""``cvqa plan``: what a run will cost, before any model is loaded or trained.

Per task: its training rows, its test questions, its optimizer steps and the matrix cells evaluated
on it that must be generated once identical cells are reused (the method's ``weight_versions``: cells
with the same weights label are computed once). With a throughput file (``benchmarks/bench_eval.py
--out``, or any JSON with ``questions_per_s`` and ``step_seconds``) each stage and the whole run get
a projected wall time and device-hours. A method with a per-task plan (LLaCA's schedule: group, dynamic
EMA, the task it starts from, the task whose weights evaluate it in the last row) has it printed too.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cvqa_bench.config import ConfigError, RunConfig
from cvqa_bench.run.prepare import PreparedRun, task_train_spec


@dataclass
class TaskPlan:
    """One task's share of a run."""

    task: str
    train_rows: int
    test_questions: int
    steps: int
    cells: int  # matrix cells of this task (one per stage, zero-shot included)
    cells_to_compute: int  # after reuse of identical cells


def stage_steps(n_rows: int, batch_size: int, grad_accum: int, world_size: int, max_steps: int | None,
                epochs: float) -> int:
    """Optimizer steps of one stage, as the HF Trainer counts them (``max_steps`` wins over epochs)."""
    if max_steps:
        return max_steps
    batches = math.ceil(n_rows / (batch_size * world_size))
    return math.ceil(epochs * max(1, math.ceil(batches / grad_accum))) if n_rows else 0


def plan_run(prepared: PreparedRun, world_size: int = 1) -> list[TaskPlan]:
    """Rows, questions, steps and cells per task of ``prepared`` with its method."""
    config, infos = prepared.config, prepared.task_infos()
    method = prepared.method
    method.setup(infos)
    versions = method.weight_versions(infos)
    plans = []
    for index, task in enumerate(prepared.tasks):
        spec = task_train_spec(config.train, task.spec, world_size)
        questions = len(task.test[: config.eval.limit] if config.eval.limit else task.test)
        labels = [row[index] for row in versions]
        distinct = len({json.dumps(label, default=str) for label in labels}) if config.eval.reuse_cells else len(labels)
        plans.append(TaskPlan(
            task=task.spec.name, train_rows=len(task.train), test_questions=questions,
            steps=stage_steps(len(task.train), spec.batch_size, spec.grad_accum, world_size, spec.max_steps, spec.epochs),
            cells=len(labels), cells_to_compute=distinct,
        ))
    return plans


def load_throughput(path: Path) -> dict[str, float]:
    """``questions_per_s`` and ``step_seconds`` from a benchmark JSON (ConfigError naming the file if absent)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable JSON throughput file ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a throughput file is a JSON object with 'questions_per_s' and 'step_seconds', "
                          f"got a JSON {type(data).__name__}")
    found = {k: data.get(k) for k in ("questions_per_s", "step_seconds")}
    if not all(isinstance(v, (int, float)) and v > 0 for v in found.values()):
        raise ConfigError(f"{path}: needs positive numbers 'questions_per_s' and 'step_seconds' "
                          f"(benchmarks/bench_eval.py --out writes them), got {found}")
    return {k: float(v) for k, v in found.items()}


def project(prepared: PreparedRun, plans: list[TaskPlan], throughput: dict[str, float], devices: int = 1
            ) -> list[dict[str, Any]]:
    """Projected seconds per stage (training + the cells it generates) and device-hours, then a total row."""
    questions = [p.test_questions for p in plans]
    versions = prepared.method.weight_versions(prepared.task_infos())
    seen: set[tuple[int, str]] = set()
    rows = []
    for stage, row in enumerate(versions):
        new = [i for i, label in enumerate(row) if (i, json.dumps(label, default=str)) not in seen
               or not prepared.config.eval.reuse_cells]
        seen |= {(i, json.dumps(label, default=str)) for i, label in enumerate(row)}
        train_s = plans[stage - 1].steps * throughput["step_seconds"] if stage else 0.0
        eval_s = sum(questions[i] for i in new) / throughput["questions_per_s"]
        rows.append({"stage": stage, "task": plans[stage - 1].task if stage else "zero-shot", "cells": len(new),
                     "train_s": train_s, "eval_s": eval_s, "wall_s": train_s + eval_s,
                     "device_hours": (train_s + eval_s) * devices / 3600})
    total = {k: sum(r[k] for r in rows) for k in ("cells", "train_s", "eval_s", "wall_s", "device_hours")}
    return rows + [{"stage": "total", "task": "", **total}]


def plan_json(config: RunConfig, plans: list[TaskPlan], projection: list[dict[str, Any]] | None,
              schedule: list[dict[str, Any]] | None = None, notes: list[str] | None = None) -> dict[str, Any]:
    """Everything ``cvqa plan --json`` prints."""
    return {"method": config.method.name, "tasks": [asdict(p) for p in plans],
            "cells": sum(p.cells for p in plans), "cells_to_compute": sum(p.cells_to_compute for p in plans),
            "projection": projection, "schedule": schedule or [], "schedule_disagreements": notes or []}


def render_schedule(schedule: list[dict[str, Any]], notes: list[str]) -> list[str]:
    """A method's per-task schedule as aligned lines, then one line per task where TF-IDF disagrees with it."""
    if not schedule:
        return []
    lines = [f"{'schedule':<16}{'group':>6}  {'EMA':<5}{'starts from':<16}{'evaluated with':<16}"]
    lines += [f"{r['task']:<16}{r['group']:>6}  {'on' if r['ema'] else 'off':<5}{r['start_from']:<16}"
              f"{r['eval_with']:<16}" for r in schedule]
    return lines + notes


def render_plan(method: str, plans: list[TaskPlan], projection: list[dict[str, Any]] | None) -> list[str]:
    """The plan as aligned text lines (per task, then the projection per stage when there is one)."""
    lines = [f"method {method}: {sum(p.cells_to_compute for p in plans)} of {sum(p.cells for p in plans)} "
             "matrix cells to generate after reuse",
             f"{'task':<16}{'train rows':>12}{'test qs':>10}{'steps':>8}{'cells':>7}{'compute':>9}"]
    lines += [f"{p.task:<16}{p.train_rows:>12}{p.test_questions:>10}{p.steps:>8}{p.cells:>7}{p.cells_to_compute:>9}"
              for p in plans]
    if projection:
        lines.append(f"{'stage':<8}{'task':<16}{'cells':>6}{'train':>11}{'eval':>11}{'wall':>11}{'dev-h':>9}")
        lines += [f"{str(r['stage']):<8}{r['task']:<16}{r['cells']:>6}{_clock(r['train_s']):>11}"
                  f"{_clock(r['eval_s']):>11}{_clock(r['wall_s']):>11}{r['device_hours']:>9.2f}" for r in projection]
    return lines


def _clock(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def plan_output(config: RunConfig, throughput: Path | None, devices: int = 1, as_json: bool = False) -> str:
    """What ``cvqa plan`` prints: the table (or JSON) of :func:`plan_run`, with the projection when rated."""
    from cvqa_bench.run.prepare import prepare

    rates = load_throughput(throughput) if throughput is not None else None
    prepared = prepare(config, check_images=False)
    plans = plan_run(prepared)
    projection = project(prepared, plans, rates, devices) if rates else None
    schedule = prepared.method.schedule()
    notes = prepared.method.notes()
    if as_json:
        return json.dumps(plan_json(config, plans, projection, schedule, notes), indent=1)
    return "\n".join(render_plan(config.method.name, plans, projection) + render_schedule(schedule, notes))
