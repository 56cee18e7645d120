"""The dynamic-EMA state of one task: EMA copies, previous gradients and running alpha statistics.

The EMA copy is taken at the task's first optimizer step (theta* = p; with no previous gradient the
alpha falls back to 0.01, which leaves theta* = p), then every step runs the fused or the loop update
of ``ema_update``. Memory: two copies of the trainable tensors. With ``fixed_alpha`` set (LLaCA's
``ema: stable`` ablation) every later step is ``theta* <- (1 - alpha) theta* + alpha p`` with that alpha
and no gradient is kept (one copy).

``ema_dtype: param`` keeps the EMA copy and the gradients in the model's compute dtype (bf16 in a bf16 run,
as the official code's deepcopy of the bf16 parameter), and averages the parameter rounded to that dtype
in. ``alpha_gradient: micro_batch`` reads, instead of the step's accumulated gradient, the gradient of
the step's last backward alone (a tensor hook per trainable tensor keeps the latest one), which is
what ``p.grad`` holds under DeepSpeed's bf16 optimizer with gradient accumulation (docs/protocol.md).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from cvqa_bench.methods.alpha_stats import FIRST_STEP, FIXED, AlphaStats, fallback_causes
from cvqa_bench.methods.base import Trainables
from cvqa_bench.methods.ema_update import (
    ALPHA_NUMERATOR_SCALE,
    alpha_dtype,
    dynamic_ema_step_fused,
    dynamic_ema_step_loop,
    fixed_ema_step,
    on_one_device,
)


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose name starts with ``prefix``, under the rest of their name."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class DynamicEMA:
    """EMA weights theta*, previous gradients and alpha statistics, keyed by trainable tensor name."""

    def __init__(self, fallback_alpha: float, fused: bool, fixed_alpha: float | None = None, *,
                 alpha_scale: float = ALPHA_NUMERATOR_SCALE, ema_dtype: Literal["float32", "param"] = "float32",
                 alpha_gradient: Literal["step", "micro_batch"] = "step") -> None:
        self.fallback_alpha = fallback_alpha
        self.fused = fused
        self.fixed_alpha = fixed_alpha
        self.alpha_scale = alpha_scale
        self.ema_dtype = ema_dtype
        self.alpha_gradient = alpha_gradient
        self.dtype: torch.dtype | None = None  # the EMA's dtype under ema_dtype: param (set by ``watch``)
        self._last_grads: dict[int, torch.Tensor] = {}  # id(param) -> its gradient of the latest backward
        self._hooks: list[Any] = []
        self.names: list[str] = []  # the tensors in the order of the alpha history's columns
        self.ema: dict[str, torch.Tensor] = {}
        self.prev_grad: dict[str, torch.Tensor] = {}
        self.stats = AlphaStats()
        self._placed = True  # False after load: tensors may sit on another device than the model

    def reset(self) -> None:
        """Forget the task's state (start or end of a task), freeing both copies; stop watching gradients."""
        self.ema, self.prev_grad = {}, {}
        self.stats.reset()
        for hook in self._hooks:
            hook.remove()
        self._hooks, self._last_grads = [], {}

    def watch(self, trainables: Trainables, compute_dtype: torch.dtype | None = None) -> None:
        """Before a task's first step: fix the EMA dtype (``compute_dtype``, else each tensor's own, under
        ``ema_dtype: param``) and, under ``alpha_gradient: micro_batch``, hook every trainable tensor."""
        self.dtype = compute_dtype if self.ema_dtype == "param" else None
        if self.alpha_gradient == "micro_batch" and not self._hooks:
            self._hooks = [p.register_hook(self._keeper(id(p))) for p in trainables.params]

    def _keeper(self, key: int) -> Any:
        def keep(grad: torch.Tensor) -> None:
            self._last_grads[key] = grad.detach().clone()
        return keep

    def _gradients(self, trainables: Trainables) -> list[torch.Tensor]:
        if self.alpha_gradient == "step":
            return [g.detach() for g in trainables.grads()]
        grads = [self._last_grads.get(id(p), torch.zeros_like(p)) for p in trainables.params]
        self._last_grads = {}
        return grads

    def _narrow(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """The tensors in the EMA's dtype under ``ema_dtype: param`` (as they are otherwise)."""
        if self.ema_dtype == "float32":
            return tensors
        return [t if t.dtype == (self.dtype or t.dtype) else t.to(self.dtype) for t in tensors]

    @torch.no_grad()
    def step(self, trainables: Trainables) -> None:
        """One update of every trainable tensor, right after ``optimizer.step()``."""
        names = trainables.names
        self.names = list(names)
        params = self._narrow([p.detach() for p in trainables.params])
        grads = self._narrow(self._gradients(trainables))
        device = params[0].device
        if not self._placed:
            self._place(device)
        first_alpha = self.fallback_alpha if self.fixed_alpha is None else self.fixed_alpha
        if not self.ema:  # first step of the task: theta* = copy(p); no g_prev, so alpha falls back
            self.ema = {n: p.clone() for n, p in zip(names, params)}
            if self.fixed_alpha is None:
                self.prev_grad = {n: g.clone() for n, g in zip(names, grads)}
            alphas = torch.full((len(params),), first_alpha, dtype=alpha_dtype(params), device=device)
            flags = torch.ones(len(params), dtype=torch.bool, device=device)
            self.stats.update(alphas, flags, torch.full((len(params),), FIRST_STEP, dtype=torch.int8, device=device))
            return
        ema = [self.ema[n] for n in names]
        if self.fixed_alpha is not None:
            fixed_ema_step(ema, params, self.fixed_alpha)
            alphas = torch.full((len(params),), self.fixed_alpha, dtype=alpha_dtype(params), device=device)
            flags = torch.zeros(len(params), dtype=torch.bool, device=device)
            self.stats.update(alphas, flags, torch.full((len(params),), FIXED, dtype=torch.int8, device=device))
            return
        prev = [self.prev_grad[n] for n in names]
        # the loop applies alpha as a Python float, as the official code does (the fused path would round it
        # to a bf16 EMA's dtype first)
        fused = self.fused and self.ema_dtype == "float32" and on_one_device(params + ema + grads + prev)
        update = dynamic_ema_step_fused if fused else dynamic_ema_step_loop
        alphas, fell_back, raw = update(params, ema, grads, prev, self.fallback_alpha, return_raw=True,
                                        scale=self.alpha_scale)
        self.stats.update(alphas, fell_back, fallback_causes(raw, fell_back))

    def _place(self, device: torch.device) -> None:
        self.ema = {n: t.to(device) for n, t in self.ema.items()}
        self.prev_grad = {n: t.to(device) for n, t in self.prev_grad.items()}
        self.stats.to(device)
        self._placed = True

    def summary(self) -> dict[str, Any]:
        """The task's alpha statistics (``AlphaStats.summary``), per tensor by name and entry count."""
        names = self.names or list(self.ema)  # a loaded state's dict order is not the columns' order
        return self.stats.summary(names, [self.ema[n].numel() for n in names] if self.ema else None)

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
