"""PNG plots of a run: the accuracy-matrix heatmap and the seen-task average after each stage.

matplotlib is imported inside the functions (and only its object-oriented Agg canvas, never pyplot's
global state), so importing this module is cheap and never changes a caller's backend.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvqa_bench.io import atomic_write_bytes

DPI = 150
MAX_WIDTH_IN = 12.5  # 12.5 in × 150 dpi = 1875 px: readable on a screen, fits a README


@dataclass(frozen=True)
class Curve:
    """One line of the seen-average plot: a label, the mean per stage and an optional std band."""

    label: str
    mean: np.ndarray
    std: np.ndarray | None = None


def _save(fig: object, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)  # type: ignore[arg-type]
    return atomic_write_bytes(path, buf.getvalue())


def plot_heatmap(
    matrix: np.ndarray,
    tasks: Sequence[str],
    scorers: Sequence[str],
    path: str | Path,
    *,
    title: str = "Accuracy after each stage",
    std: np.ndarray | None = None,
) -> Path:
    """Write a (T+1)×T accuracy heatmap (row 0 = zero-shot) with values in the cells and a colour bar."""
    from matplotlib import patheffects
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    matrix = np.asarray(matrix, dtype=float)
    n_rows, n_tasks = matrix.shape
    if n_rows != n_tasks + 1 or len(tasks) != n_tasks or len(scorers) != n_tasks:
        raise ValueError(f"heatmap needs a (T+1)×T matrix and T task/scorer names, got {matrix.shape}, "
                         f"{len(tasks)} tasks, {len(scorers)} scorers")
    width = float(np.clip(3.2 + 1.05 * n_tasks, 5.5, MAX_WIDTH_IN))
    height = float(np.clip(2.2 + 0.55 * n_rows, 3.8, 9.0))
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=100.0, aspect="auto")
    cbar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    cbar.set_label("accuracy (%)")

    font = 9 if n_tasks <= 8 else 7
    for r in range(n_rows):
        for c in range(n_tasks):
            value = matrix[r, c]
            # dark text on the bright end of viridis, white on the dark end
            colour = "black" if value >= 60 else "white"
            text = f"{value:.2f}"  # as the tables print it: 64 questions make steps of 1.5625 (6.25, not 6.2)
            if std is not None:
                text += f"\n±{std[r, c]:.2f}"
            ax.text(c, r, text, ha="center", va="center", color=colour, fontsize=font if std is None else font - 1)
    # white lines with a black halo stay visible on both ends of the colour map
    halo = [patheffects.withStroke(linewidth=3.2, foreground="black")]
    # outline the cell of the task each stage just trained (the diagonal of the T×T part)
    for k in range(1, n_rows):
        box = Rectangle((k - 1.44, k - 0.44), 0.88, 0.88, fill=False, edgecolor="white", linewidth=1.4)
        box.set_path_effects(halo)
        ax.add_patch(box)
    ax.axhline(0.5, color="white", linewidth=2.0, path_effects=halo)  # zero-shot row apart from the stages

    longest = max(len(t) for t in tasks)
    ax.set_xticks(range(n_tasks), [f"{t}\n({s})" for t, s in zip(tasks, scorers, strict=True)],
                  rotation=0 if n_tasks * max(longest, 12) <= 60 else 35 if longest <= 14 else 55,
                  ha="center" if n_tasks * max(longest, 12) <= 60 else "right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(n_rows), ["0 zero-shot", *(f"{k} {t}" for k, t in enumerate(tasks, start=1))], fontsize=8)
    ax.set_xlabel("evaluated task (scorer)")
    ax.set_ylabel("after stage (trained task)")
    ax.set_title(title, fontsize=10)
    ax.tick_params(length=0)
    return _save(fig, Path(path))


def plot_seen_average(curves: Sequence[Curve], path: str | Path, *, stage_labels: Sequence[str] | None = None,
                      title: str = "Mean accuracy on the tasks seen so far") -> Path:
    """Write a line plot of the seen-task average after each stage, one line (± std band) per curve."""
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_seen_average needs at least one curve")
    n_stages = max(len(c.mean) for c in curves)
    fig = Figure(figsize=(float(np.clip(4.5 + 0.6 * n_stages, 7.0, MAX_WIDTH_IN)), 4.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^vP*X"
    for i, curve in enumerate(curves):
        x = np.arange(1, len(curve.mean) + 1)
        line, = ax.plot(x, curve.mean, marker=markers[i % len(markers)], linewidth=1.8, markersize=5, label=curve.label)
        if curve.std is not None:
            ax.fill_between(x, curve.mean - curve.std, curve.mean + curve.std, color=line.get_color(), alpha=0.18,
                            linewidth=0)
    ticks = range(1, n_stages + 1)
    if stage_labels is not None and len(stage_labels) == n_stages:
        ax.set_xticks(ticks, [f"{k} {t}" for k, t in zip(ticks, stage_labels, strict=True)],
                      rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
    else:
        ax.set_xticks(ticks)
    ax.set_xlim(0.7, n_stages + 0.3)
    ax.set_ylim(0, 100)
    ax.set_xlabel("after stage (trained task)")
    ax.set_ylabel("mean accuracy on seen tasks (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if any(c.std is not None for c in curves):
        ax.plot([], [], " ", label="shaded: ± 1 sample std (ddof=1) over seeds")
    ax.legend(fontsize=8, loc="best", frameon=False)
    return _save(fig, Path(path))
