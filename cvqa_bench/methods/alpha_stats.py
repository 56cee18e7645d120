"""Statistics of the EMA alphas applied during one task, kept as tensors and read only at task end.

Per step the applied alpha of every tensor and why it was applied (its cause: the dynamic value, the
fallback on the task's first step, the fallback because the dynamic value was >= 1 (or <= 0), the
fallback because it was not finite, or a fixed alpha) are appended on the device; updating never reads
a value back to the host (no GPU sync per step), ``summary`` does, once. The summary answers: how are
the alphas distributed (quantiles 5/25/50/75/95 %, over all updates and per tensor), how often and
why the fallback applies, and how much of the EMA's start weights survive the task: the retained
fraction ``prod(1 - alpha)`` over the updates after the first step (the first step copies the weights
into the EMA instead of averaging, so its alpha changes nothing).
"""

from __future__ import annotations

from typing import Any

import torch

_FIELDS = ("sum", "min", "max", "count", "fallbacks")
_HISTORY = ("history", "causes")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# cause codes of one applied alpha
DYNAMIC, FIRST_STEP, OUT_OF_RANGE, NON_FINITE, FIXED = 0, 1, 2, 3, 4
FALLBACK_CAUSES = {"first_step": FIRST_STEP, "alpha_ge_1": OUT_OF_RANGE, "non_finite": NON_FINITE}
MAX_STEP_POINTS = 500  # the per-step series in the summary is subsampled to at most this many steps


def fallback_causes(raw: torch.Tensor, fell_back: torch.Tensor) -> torch.Tensor:
    """Cause codes of one step's alphas from the raw dynamic values and the fallback flags."""
    finite = torch.isfinite(raw)
    code = torch.where(finite, torch.full_like(raw, OUT_OF_RANGE), torch.full_like(raw, NON_FINITE)).to(torch.int8)
    return torch.where(fell_back, code, torch.zeros_like(code))


def _quantiles(values: torch.Tensor) -> dict[str, float]:
    q = torch.quantile(values.to(torch.float64), torch.tensor(QUANTILES, dtype=torch.float64, device=values.device))
    return {f"p{round(p * 100)}": float(v) for p, v in zip(QUANTILES, q.tolist())}


class AlphaStats:
    """Running sum, min, max, count and fallback count, plus the per-step alphas and causes of one task."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self._steps: list[tuple[torch.Tensor, torch.Tensor]] = []  # appended since the last stack

    def reset(self) -> None:
        """Forget everything (start of a task)."""
        self.tensors, self._steps = {}, []

    @torch.no_grad()
    def update(self, alphas: torch.Tensor, fell_back: torch.Tensor, causes: torch.Tensor | None = None) -> None:
        """Add one step's applied alphas (one per tensor), their fallback flags and cause codes
        (default: ``FIRST_STEP`` where a fallback applied, else ``DYNAMIC``)."""
        alphas = alphas.detach().to(torch.float64)
        if causes is None:
            causes = torch.where(fell_back, FIRST_STEP, DYNAMIC).to(torch.int8)
        if not self.tensors:
            zero = torch.zeros((), dtype=torch.float64, device=alphas.device)
            self.tensors = {
                "sum": zero.clone(),
                "min": torch.full_like(zero, float("inf")),
                "max": torch.full_like(zero, float("-inf")),
                "count": torch.zeros((), dtype=torch.int64, device=alphas.device),
                "fallbacks": torch.zeros((), dtype=torch.int64, device=alphas.device),
            }
        t = self.tensors
        t["sum"] += alphas.sum()
        t["min"] = torch.minimum(t["min"], alphas.min())
        t["max"] = torch.maximum(t["max"], alphas.max())
        t["count"] += alphas.numel()
        t["fallbacks"] += fell_back.sum()
        self._steps.append((alphas.clone(), causes.to(torch.int8).clone()))

    def _history(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(alphas, causes), each ``[steps, tensors]``, with the appended steps stacked in."""
        if self._steps:
            alphas = torch.stack([a for a, _ in self._steps])
            causes = torch.stack([c for _, c in self._steps])
            if "history" in self.tensors:
                alphas = torch.cat([self.tensors["history"], alphas])
                causes = torch.cat([self.tensors["causes"], causes])
            self.tensors["history"], self.tensors["causes"] = alphas, causes
            self._steps = []
        if "history" not in self.tensors:
            return None
        return self.tensors["history"], self.tensors["causes"]

    def summary(self, names: list[str] | None = None, numels: list[int] | None = None) -> dict[str, Any]:
        """Mean, min, max, ``n_updates`` (tensors x steps), ``fallback_fraction`` and, from the per-step
        history: quantiles, the fallback fraction by cause, the retained fraction (over tensors), the same
        per tensor under ``names`` (with its entry count from ``numels``) and a per-step series (p5/p50/p95
        over tensors, fallback fraction)."""
        if not self.tensors:
            return {"mean": None, "min": None, "max": None, "n_updates": 0, "fallback_fraction": None}
        count = int(self.tensors["count"].item())
        out: dict[str, Any] = {
            "mean": self.tensors["sum"].item() / count,
            "min": self.tensors["min"].item(),
            "max": self.tensors["max"].item(),
            "n_updates": count,
            "fallback_fraction": int(self.tensors["fallbacks"].item()) / count,
        }
        history = self._history()
        if history is None:
            return out
        alphas, causes = history
        retained = torch.prod(1 - alphas[1:], dim=0) if alphas.shape[0] > 1 else torch.ones_like(alphas[0])
        out["quantiles"] = _quantiles(alphas.flatten())
        out["fallback_by_cause"] = {k: float((causes == c).double().mean()) for k, c in FALLBACK_CAUSES.items()}
        out["retained"] = {"min": float(retained.min()), "median": float(retained.median()),
                           "max": float(retained.max())}
        n_tensors = alphas.shape[1]
        labels = names if names is not None and len(names) == n_tensors else [str(i) for i in range(n_tensors)]
        out["tensors"] = {
            label: {"numel": numels[i] if numels else None, "quantiles": _quantiles(alphas[:, i]),
                    "retained": float(retained[i]),
                    "fallback_by_cause": {k: float((causes[:, i] == c).double().mean())
                                          for k, c in FALLBACK_CAUSES.items()}}
            for i, label in enumerate(labels)
        }
        out["steps"] = self._series(alphas, causes)
        return out

    @staticmethod
    def _series(alphas: torch.Tensor, causes: torch.Tensor) -> dict[str, list[float]]:
        """Per step (subsampled): the 5/50/95 % quantiles over tensors and the fallback fraction."""
        n = alphas.shape[0]
        pick = torch.linspace(0, n - 1, min(n, MAX_STEP_POINTS), device=alphas.device).round().long()
        rows = alphas[pick]
        q = torch.quantile(rows, torch.tensor([0.05, 0.5, 0.95], dtype=rows.dtype, device=rows.device), dim=1)
        fallback = ((causes[pick] != DYNAMIC) & (causes[pick] != FIXED)).double().mean(dim=1)
        return {"step": (pick + 1).tolist(), "p5": q[0].tolist(), "p50": q[1].tolist(), "p95": q[2].tolist(),
                "fallback_fraction": fallback.tolist()}

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        """The running tensors and the history under ``prefix + field`` (empty before the first update)."""
        self._history()
        return {prefix + name: value.detach().clone() for name, value in self.tensors.items()}

    def load(self, tensors: dict[str, torch.Tensor], prefix: str) -> None:
        """Restore what ``state_dict(prefix)`` returned (nothing under ``prefix`` = no updates)."""
        found = {name: tensors[prefix + name] for name in _FIELDS if prefix + name in tensors}
        if found and len(found) != len(_FIELDS):
            missing = sorted(set(_FIELDS) - set(found))
            raise ValueError(f"method state has partial alpha statistics: missing {prefix}{missing}")
        found.update({name: tensors[prefix + name] for name in _HISTORY if prefix + name in tensors})
        self.tensors = {name: value.clone() for name, value in found.items()}
        self._steps = []

    def to(self, device: torch.device) -> None:
        """Move the running tensors to ``device`` (after loading a saved state)."""
        self._history()
        self.tensors = {name: value.to(device) for name, value in self.tensors.items()}
