"""Continual-learning metrics as pure functions of the accuracy matrix (NumPy only).

Conventions (0-based, as in code): ``acc`` is a T×T array in percent, ``acc[t, i]`` is the score on
task ``i`` after training stage ``t + 1`` (row ``t`` = after training task ``t``); ``zero_shot`` is the
length-T vector of the untrained model's scores (the run's stage-0 row). The docs/design.md formulas use
1-based stages ``A[t][i]``; ``A[t][i] == acc[t - 1, i - 1]``.

Metrics that compare tasks across stages (``bwt``, ``forgetting``, ``forgetting_last``, ``fwt``) are
undefined for a single task: the functions raise ``ValueError`` for T == 1 and
:func:`compute_metrics` omits them from its dict, so an undefined metric is never a number (and never a
NaN in ``metrics.json``). Averages are macro averages over tasks.

This module must not import torch, pandas or matplotlib: the CLI imports it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

# Names as the LLaCA paper prints them (docs/methods.md, "Metrics the paper reports"); metrics it does not report
# have no entry.
PAPER_NAMES: dict[str, str] = {
    "final_avg": "Avg.ACC",
    "forgetting": "Forgetting",
    "mft": "New.ACC",
    "bwt": "BWT",
}

# Other common names, for readers coming from other papers / libraries.
OTHER_NAMES: dict[str, str] = {
    "final_avg": "MFN",
    "mft": "plasticity",
    "avg_incremental": "MAA",
    "forgetting_last": "Avalanche forgetting",
}

# Display order of every metric compute_metrics can return, with a one-line formula (1-based, docs/design.md).
METRIC_FORMULAS: dict[str, str] = {
    "final_avg": "mean_i A[T][i]",
    "mft": "mean_i A[i][i]",
    "avg_incremental": "mean_t mean_{i<=t} A[t][i]",
    "bwt": "mean_{i<T} (A[T][i] - A[i][i])",
    "forgetting": "mean_{i<T} (max_{i<=t<T} A[t][i] - A[T][i])",
    "forgetting_last": "mean_{i<T} (A[i][i] - A[T][i])",
    "fwt": "mean_{i>1} (A[i-1][i] - A[0][i])",
}

HIGHER_IS_BETTER: dict[str, bool] = {
    "final_avg": True,
    "mft": True,
    "avg_incremental": True,
    "bwt": True,
    "forgetting": False,
    "forgetting_last": False,
    "fwt": True,
}


def check_matrix(acc: ArrayLike) -> np.ndarray:
    """Return ``acc`` as a new float T×T array; ``ValueError`` if it is not square, empty or non-finite."""
    try:
        arr = np.array(acc, dtype=float)  # np.array copies: callers' arrays are never touched
    except (TypeError, ValueError) as exc:
        raise ValueError(f"accuracy matrix must be a numeric T×T array: {exc}") from exc
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"accuracy matrix must be square T×T (rows = stages, columns = tasks), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("accuracy matrix is empty (T = 0)")
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        t, i = bad[0]
        raise ValueError(f"accuracy matrix has a non-finite value ({arr[t, i]}) at row {t}, column {i}")
    return arr


def _check_zero_shot(zero_shot: ArrayLike, n_tasks: int) -> np.ndarray:
    try:
        vec = np.array(zero_shot, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"zero_shot must be a numeric vector: {exc}") from exc
    if vec.shape != (n_tasks,):
        raise ValueError(f"zero_shot must have one value per task ({n_tasks}), got shape {vec.shape}")
    bad = np.flatnonzero(~np.isfinite(vec))
    if bad.size:
        raise ValueError(f"zero_shot has a non-finite value ({vec[bad[0]]}) at task {bad[0]}")
    return vec


def _need_two_tasks(arr: np.ndarray, metric: str) -> None:
    if arr.shape[0] < 2:
        raise ValueError(f"{metric} needs at least 2 tasks (it compares stages), got T = {arr.shape[0]}")


def final_avg(acc: ArrayLike) -> float:
    """Average accuracy after the last stage: ``mean_i acc[T-1, i]`` (paper "Avg.ACC")."""
    arr = check_matrix(acc)
    return float(arr[-1].mean())


def mft(acc: ArrayLike) -> float:
    """Mean accuracy on each task right after training it (plasticity): ``mean_i acc[i, i]`` (paper "New.ACC")."""
    arr = check_matrix(acc)
    return float(np.diag(arr).mean())


def seen_average_curve(acc: ArrayLike) -> np.ndarray:
    """Mean accuracy over the tasks seen so far after each stage: ``curve[t] = mean_{i<=t} acc[t, i]``."""
    arr = check_matrix(acc)
    return np.array([arr[t, : t + 1].mean() for t in range(arr.shape[0])])


def avg_incremental(acc: ArrayLike) -> float:
    """Average incremental accuracy (MAA): ``mean_t mean_{i<=t} acc[t, i]``, the mean of the seen-average curve."""
    return float(seen_average_curve(acc).mean())


def bwt(acc: ArrayLike) -> float:
    """Backward transfer: ``mean_{i<T-1} (acc[T-1, i] - acc[i, i])``; negative = forgetting. Needs T >= 2."""
    arr = check_matrix(acc)
    _need_two_tasks(arr, "bwt")
    last = arr.shape[0] - 1
    return float(np.mean([arr[last, i] - arr[i, i] for i in range(last)]))


def forgetting(acc: ArrayLike) -> float:
    """Chaudhry (max-based) forgetting: ``mean_{i<T-1} (max_{i<=t<=T-2} acc[t, i] - acc[T-1, i])``. Needs T >= 2.

    The best earlier score of task ``i`` is taken over the rows from its own stage up to the one before
    the last (1-based: ``max_{i<=t<T} A[t][i]``); positive = forgotten. Paper "Forgetting".
    """
    arr = check_matrix(acc)
    _need_two_tasks(arr, "forgetting")
    last = arr.shape[0] - 1
    return float(np.mean([arr[i:last, i].max() - arr[last, i] for i in range(last)]))


def forgetting_last(acc: ArrayLike) -> float:
    """Avalanche-style forgetting: ``mean_{i<T-1} (acc[i, i] - acc[T-1, i])`` (= ``-bwt``). Needs T >= 2."""
    arr = check_matrix(acc)
    _need_two_tasks(arr, "forgetting_last")
    last = arr.shape[0] - 1
    return float(np.mean([arr[i, i] - arr[last, i] for i in range(last)]))


def fwt(acc: ArrayLike, zero_shot: ArrayLike) -> float:
    """Forward transfer: ``mean_{1<=i<=T-1} (acc[i-1, i] - zero_shot[i])``, gain on a task before training it.

    Needs T >= 2 and the zero-shot row (1-based: ``mean_{i>1} (A[i-1][i] - A[0][i])``).
    """
    arr = check_matrix(acc)
    _need_two_tasks(arr, "fwt")
    zs = _check_zero_shot(zero_shot, arr.shape[0])
    return float(np.mean([arr[i - 1, i] - zs[i] for i in range(1, arr.shape[0])]))


def compute_metrics(acc: ArrayLike, zero_shot: ArrayLike | None = None) -> dict[str, float]:
    """Every defined metric of ``acc`` by name, in :data:`METRIC_FORMULAS` order.

    ``fwt`` only when ``zero_shot`` is given; ``bwt``, ``forgetting``, ``forgetting_last`` and ``fwt``
    are omitted when T == 1 (undefined).
    """
    arr = check_matrix(acc)
    if zero_shot is not None:
        _check_zero_shot(zero_shot, arr.shape[0])
    out = {"final_avg": final_avg(arr), "mft": mft(arr), "avg_incremental": avg_incremental(arr)}
    if arr.shape[0] >= 2:
        out.update(bwt=bwt(arr), forgetting=forgetting(arr), forgetting_last=forgetting_last(arr))
        if zero_shot is not None:
            out["fwt"] = fwt(arr, zero_shot)
    return out
