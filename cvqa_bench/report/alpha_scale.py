"""The alpha regime against tensor size (configs/alpha-scale.yaml): fallback fraction, median alpha and
retained fraction per trainable tensor, plotted against the tensor's entry count.

Points come from the runs' ``method_records.json`` (per task and tensor, ``methods/alpha_stats.py``),
one per (run, task with EMA applied, tensor). A 7B LoRA r=128 tensor (128 x 4096 = 524,288 entries) is
marked on the entry axis as extrapolated: no run of that size is measured here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cvqa_bench.report.plots import DPI, _save

SEVEN_B_LORA_ENTRIES = 128 * 4096  # one LoRA A (r x in) or B (out x r) matrix of a 7B model at r=128


@dataclass(frozen=True)
class TensorPoint:
    """One tensor's alpha figures over one task of one run."""

    run: str
    task: str
    tensor: str
    numel: int
    median_alpha: float
    fallback_fraction: float
    retained: float


def alpha_scale_points(run_dirs: list[Path]) -> list[TensorPoint]:
    """Every (run, task, tensor) with alpha statistics in the runs' method records."""
    points = []
    for run in run_dirs:
        records = json.loads((Path(run) / "method_records.json").read_text())
        for row in records.get("tasks", []):
            stats = row.get("alpha") or {}
            for name, tensor in (stats.get("tensors") or {}).items():
                if tensor.get("numel") is None:
                    continue
                fallback = sum(tensor["fallback_by_cause"].values())
                points.append(TensorPoint(Path(run).name, row["task"], name, int(tensor["numel"]),
                                          tensor["quantiles"]["p50"], fallback, tensor["retained"]))
    return points


def plot_alpha_scale(points: list[TensorPoint], path: Path, title: str = "alpha against tensor size") -> Path:
    """Three panels (fallback fraction, median alpha, retained fraction) against entries per tensor."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4), dpi=DPI)
    panels = (("fallback_fraction", "fallback fraction", False), ("median_alpha", "median alpha", True),
              ("retained", "retained fraction prod(1 - alpha)", True))
    for i, (field, label, log) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.scatter([p.numel for p in points], [max(getattr(p, field), 1e-12) for p in points], s=8, alpha=0.5)
        ax.axvline(SEVEN_B_LORA_ENTRIES, color="tab:red", linestyle="--", linewidth=1)
        ax.text(SEVEN_B_LORA_ENTRIES, 0.5, " 7B LoRA r=128\n (extrapolated,\n  not measured)", color="tab:red",
                fontsize=7, transform=ax.get_xaxis_transform())
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("entries per tensor")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
