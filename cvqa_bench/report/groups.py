"""Runs that differ only in the seed, grouped and labelled for a comparison (mean ± sample std).

Runs are averaged only when they share the resolved config (seed aside), the protocol and scorer of each
task, the data content hashes and the base model's content hash (manifest.json); any other run gets its
own row and a one-line note saying why.
"""

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


def comparability(run: RunSummary) -> dict[str, Any]:
    """What must agree, apart from the seed, for runs to be averaged: per part (config, tasks, scoring, data,
    model) a JSON-able value. Data and model come from manifest.json (content hashes; absent: None)."""
    manifest: Any = {}
    path = run.path / "manifest.json"
    if path.is_file():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            manifest = {"unreadable": str(path)}
    manifest = manifest if isinstance(manifest, dict) else {"unreadable": str(path)}
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    config = {k: v for k, v in run.config.items() if k not in GROUP_IGNORED_KEYS} if run.config is not None else None
    return {"config": config, "tasks": run.tasks,
            "scoring": {"protocol": run.meta.get("protocol"), "scorers": run.scorers},
            "data": manifest.get("data"), "model": model.get("content_sha256"),
            "manifest": manifest.get("unreadable")}


def _why_apart(run: RunSummary, mine: dict[str, Any], other: RunSummary, theirs: dict[str, Any]) -> str:
    """One line: why ``run`` is not averaged with ``other`` (which shares its config)."""
    reasons = []
    if mine["scoring"] != theirs["scoring"]:
        tasks = [t for t in run.tasks if run.scorers.get(t) != other.scorers.get(t)]
        shown = ", ".join(f"{t}: {run.scorers.get(t)} vs {other.scorers.get(t)}" for t in tasks[:3])
        protocol = mine["scoring"]["protocol"] != theirs["scoring"]["protocol"]
        reasons.append("scored differently (" + (shown or "") + (
            f"{'; ' if shown else ''}protocol {mine['scoring']['protocol']} vs {theirs['scoring']['protocol']}"
            if protocol else "") + ")")
    if mine["data"] != theirs["data"]:
        mine_data, their_data = mine["data"] or {}, theirs["data"] or {}
        tasks = sorted(t for t in set(mine_data) | set(their_data) if mine_data.get(t) != their_data.get(t))
        reasons.append(f"made from different data ({', '.join(tasks) or 'no data record'})")
    if mine["model"] != theirs["model"]:
        reasons.append("made from a different base model (content hash)")
    if mine["manifest"] or theirs["manifest"]:
        reasons.append(f"{mine['manifest'] or theirs['manifest']} is unreadable")
    return f"{run.path} is not averaged with {other.path}: {'; '.join(reasons)}"


def group_runs(runs: Sequence[RunSummary], force: bool = False) -> tuple[list[RunGroup], list[str]]:
    """Group runs that agree on :func:`comparability` apart from the seed; returns the groups and one note per
    run kept apart from a run of the same config. ``force``: group by config and tasks alone (the notes
    then say what was averaged anyway).

    A run without config.yaml forms its own group: it cannot be shown to be a seed of another run.
    """
    keyed: dict[str, list[RunSummary]] = {}
    parts = {id(run): comparability(run) for run in runs}
    firsts: dict[str, tuple[RunSummary, dict[str, Any]]] = {}
    notes = []
    for run in runs:
        part = parts[id(run)]
        if run.config is None:
            keyed.setdefault(f"path:{run.path.resolve()}", []).append(run)
            continue
        same_config = json.dumps([part["config"], part["tasks"]], sort_keys=True, default=str)
        key = same_config if force else json.dumps(part, sort_keys=True, default=str)
        first = firsts.setdefault(same_config, (run, part))
        differs = json.dumps(part, sort_keys=True, default=str) != json.dumps(first[1], sort_keys=True, default=str)
        if differs and (force or key not in keyed):
            why = _why_apart(run, part, *first)
            notes.append(f"--force-group: {why.replace(' is not averaged with ', ' is averaged with ')}"
                         if force else why)
        keyed.setdefault(key, []).append(run)
    members = list(keyed.values())
    bases = [_base_label(g[0]) for g in members]
    labels = []
    for i, group in enumerate(members):
        twins = [members[j][0] for j, b in enumerate(bases) if b == bases[i] and j != i]
        labels.append(bases[i] + _difference(group[0], twins))
    repeated = {label for label in labels if labels.count(label) > 1}
    for i, group in enumerate(members):  # rows kept apart with one config: told apart by their folders
        if labels[i] in repeated:
            labels[i] = f"{labels[i]} [{', '.join(str(r.path) for r in group)}]"
    return [RunGroup(label, group) for label, group in zip(labels, members, strict=True)], notes


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
