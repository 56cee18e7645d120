"""The dynamic-EMA state of one task: EMA copies, previous gradients and running alpha statistics.

The EMA copy is taken at the task's first optimizer step (theta* = p; with no previous gradient the
alpha falls back to 0.01, which leaves theta* = p), then every step runs the fused or the loop update
of ``ema_update``. Memory: two copies of the trainable tensors.
"""

from __future__ import annotations

from typing import Any

import torch

from cvqa_bench.methods.alpha_stats import AlphaStats
from cvqa_bench.methods.base import Trainables
from cvqa_bench.methods.ema_update import (
    alpha_dtype,
    dynamic_ema_step_fused,
    dynamic_ema_step_loop,
    on_one_device,
)


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose name starts with ``prefix``, under the rest of their name."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class DynamicEMA:
    """EMA weights theta*, previous gradients and alpha statistics, keyed by trainable tensor name."""

    def __init__(self, fallback_alpha: float, fused: bool) -> None:
        self.fallback_alpha = fallback_alpha
        self.fused = fused
        self.ema: dict[str, torch.Tensor] = {}
        self.prev_grad: dict[str, torch.Tensor] = {}
        self.stats = AlphaStats()
        self._placed = True  # False after load: tensors may sit on another device than the model

    def reset(self) -> None:
        """Forget the task's state (start or end of a task), freeing both copies."""
        self.ema, self.prev_grad = {}, {}
        self.stats.reset()

    @torch.no_grad()
    def step(self, trainables: Trainables) -> None:
        """One update of every trainable tensor, right after ``optimizer.step()``."""
        names = trainables.names
        params = [p.detach() for p in trainables.params]
        grads = [g.detach() for g in trainables.grads()]
        device = params[0].device
        if not self._placed:
            self._place(device)
        if not self.ema:  # first step of the task: theta* = copy(p); no g_prev, so alpha falls back
            self.ema = {n: p.clone() for n, p in zip(names, params)}
            self.prev_grad = {n: g.clone() for n, g in zip(names, grads)}
            alphas = torch.full((len(params),), self.fallback_alpha, dtype=alpha_dtype(params), device=device)
            self.stats.update(alphas, torch.ones(len(params), dtype=torch.bool, device=device))
            return
        ema = [self.ema[n] for n in names]
        prev = [self.prev_grad[n] for n in names]
        fused = self.fused and on_one_device(params + ema + grads + prev)
        update = dynamic_ema_step_fused if fused else dynamic_ema_step_loop
        alphas, fell_back = update(params, ema, grads, prev, self.fallback_alpha)
        self.stats.update(alphas, fell_back)

    def _place(self, device: torch.device) -> None:
        self.ema = {n: t.to(device) for n, t in self.ema.items()}
        self.prev_grad = {n: t.to(device) for n, t in self.prev_grad.items()}
        self.stats.to(device)
        self._placed = True

    def summary(self) -> dict[str, Any]:
        """The task's alpha statistics (mean, min, max, n_updates, fallback_fraction)."""
        return self.stats.summary()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``ema.<name>``, ``prev_grad.<name>`` and ``alpha_stats.<field>`` tensors."""
        out = {f"ema.{n}": t for n, t in self.ema.items()}
        out.update({f"prev_grad.{n}": t for n, t in self.prev_grad.items()})
        out.update(self.stats.state_dict("alpha_stats."))
        return out

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what ``state_dict`` returned (other keys are ignored)."""
        self.ema = strip_prefix(tensors, "ema.")
        self.prev_grad = strip_prefix(tensors, "prev_grad.")
        self.stats.load(tensors, "alpha_stats.")
        self._placed = False
