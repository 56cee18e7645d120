"""Runs of one config that differ only in the seed, grouped and labelled for a comparison (mean ± sample std)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cvqa_bench.metrics import seen_average_curve
from cvqa_bench.report.plots import Curve
from cvqa_bench.report.summary import RunSummary
from cvqa_bench.report.tables import Stat

# Top-level config keys that differ between seeds of one experiment without changing what it measures.
GROUP_IGNORED_KEYS = ("seed", "name", "run_name", "out", "out_dir", "output_dir")


@dataclass(eq=False)
class RunGroup:
    """Runs of one config that differ only in seed; numbers are mean ± sample std (ddof=1) over them."""

    label: str
    runs: list[RunSummary]

    @property
    def seeds(self) -> list[Any]:
        """Each run's seed (from meta), in run order."""
        return [r.meta.get("seed") for r in self.runs]

    def metric(self, name: str) -> Stat | None:
        """Mean ± std of one metric over the runs that define it (None if none does)."""
        values = [r.metrics[name] for r in self.runs if name in r.metrics]
        return Stat.of(values) if values else None

    def final(self, task: str) -> Stat | None:
        """Mean ± std of the last-stage accuracy on ``task`` (None if the group has no such task)."""
        tasks = self.runs[0].tasks
        return Stat.of([r.matrix[-1, tasks.index(task)] for r in self.runs]) if task in tasks else None

    def curve(self) -> Curve:
        """The seen-task average after each stage, mean (± std band when n > 1)."""
        curves = np.array([seen_average_curve(r.matrix[1:]) for r in self.runs])
        std = curves.std(axis=0, ddof=1) if len(self.runs) > 1 else None
        return Curve(f"{self.label} (n={len(self.runs)})", curves.mean(axis=0), std)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    if not isinstance(data, dict) or not data:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def group_runs(runs: Sequence[RunSummary]) -> list[RunGroup]:
    """Group runs whose config.yaml is identical apart from :data:`GROUP_IGNORED_KEYS` (and whose tasks match).

    A run without config.yaml forms its own group: it cannot be shown to be a seed of another run.
    """
    keyed: dict[str, list[RunSummary]] = {}
    for run in runs:
        if run.config is None:
            key = f"path:{run.path.resolve()}"
        else:
            kept = {k: v for k, v in run.config.items() if k not in GROUP_IGNORED_KEYS}
            key = json.dumps([kept, run.tasks], sort_keys=True, default=str)
        keyed.setdefault(key, []).append(run)
    members = list(keyed.values())
    bases = [_base_label(g[0]) for g in members]
    labels = []
    for i, group in enumerate(members):
        twins = [members[j][0] for j, b in enumerate(bases) if b == bases[i] and j != i]
        labels.append(bases[i] + _difference(group[0], twins))
    return [RunGroup(label, group) for label, group in zip(labels, members, strict=True)]


def _base_label(run: RunSummary) -> str:
    if run.config is None:
        return run.name
    method = run.config.get("method")
    return str((method.get("name") if isinstance(method, dict) else method) or run.meta.get("method") or run.name)


def _difference(run: RunSummary, others: list[RunSummary]) -> str:
    """`` (key=value, ...)``: the config keys that tell ``run`` apart from same-method groups."""
    if not others or run.config is None:
        return ""
    mine = _flatten({k: v for k, v in run.config.items() if k not in GROUP_IGNORED_KEYS})
    theirs = [_flatten(o.config or {}) for o in others]
    keys = sorted(k for k in mine if any(t.get(k) != mine[k] for t in theirs) and k != "method.name")
    if not keys:
        return f" ({run.name})"
    shown = ", ".join(f"{k}={mine[k]}" for k in keys[:3])
    return f" ({shown}{', …' if len(keys) > 3 else ''})"
