"""Running statistics of the applied EMA alphas, kept as tensors and read only at task end.

Updating them never reads a value back to the host (no GPU sync per step); ``summary`` does, once.
"""

from __future__ import annotations

from typing import Any

import torch

_FIELDS = ("sum", "min", "max", "count", "fallbacks")


class AlphaStats:
    """Sum, min, max, count and fallback count of the alphas applied during one task."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        """Forget everything (start of a task)."""
        self.tensors = {}

    @torch.no_grad()
    def update(self, alphas: torch.Tensor, fell_back: torch.Tensor) -> None:
        """Add one step's applied alphas (one per tensor) and their fallback flags."""
        alphas = alphas.detach().to(torch.float64)
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

    def summary(self) -> dict[str, Any]:
        """``{"mean", "min", "max", "n_updates", "fallback_fraction"}`` (None values without updates).

        ``n_updates`` counts tensor updates (tensors x steps); the first step of a task always
        counts as a fallback (no previous gradient yet).
        """
        if not self.tensors:
            return {"mean": None, "min": None, "max": None, "n_updates": 0, "fallback_fraction": None}
        count = int(self.tensors["count"].item())
        return {
            "mean": self.tensors["sum"].item() / count,
            "min": self.tensors["min"].item(),
            "max": self.tensors["max"].item(),
            "n_updates": count,
            "fallback_fraction": int(self.tensors["fallbacks"].item()) / count,
        }

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        """The running tensors under ``prefix + field`` (empty before the first update)."""
        return {prefix + name: value.detach().clone() for name, value in self.tensors.items()}

    def load(self, tensors: dict[str, torch.Tensor], prefix: str) -> None:
        """Restore what ``state_dict(prefix)`` returned (nothing under ``prefix`` = no updates)."""
        found = {name: tensors[prefix + name] for name in _FIELDS if prefix + name in tensors}
        if found and len(found) != len(_FIELDS):
            missing = sorted(set(_FIELDS) - set(found))
            raise ValueError(f"method state has partial alpha statistics: missing {prefix}{missing}")
        self.tensors = {name: value.clone() for name, value in found.items()}

    def to(self, device: torch.device) -> None:
        """Move the running tensors to ``device`` (after loading a saved state)."""
        self.tensors = {name: value.to(device) for name, value in self.tensors.items()}
