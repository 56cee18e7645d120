"""The EMA tensor math of ``ema`` and ``llaca``: the dynamic alpha, its fused and loop updates.

Dynamic EMA (docs/methods.md, "Dynamic EMA"), for every trainable tensor after every optimizer step::

    a = ||p - ema||_1     b = ||g||_1     c = ||g - g_prev||_1
    alpha = scale (1 + b) / (a c),  and alpha := fallback unless 0 < alpha < 1   (scale 2, fallback 0.01)
    ema <- (1 - alpha) ema + alpha p;   g_prev <- g

Two implementations of one step: ``dynamic_ema_step_fused`` (``torch._foreach_*`` ops and one
stacked set of norms, so no host sync per tensor) and ``dynamic_ema_step_loop`` (the plain per-tensor
reference that calls ``dynamic_alpha``). Norms and alphas are computed in float32 for float16,
bfloat16 and float32 tensors and in float64 for float64 tensors (never narrower than the tensor), in
both paths, so they agree. The EMA copy has the dtype of the tensors it is given (``DynamicEMA`` gives
float32 masters, or their copies in the model's dtype under ``ema_dtype: param``).
"""

from __future__ import annotations

import math
from functools import reduce

import torch

ALPHA_NUMERATOR_SCALE = 2.0  # the factor 2 in alpha = 2 (1 + b) / (a c), as in the official code
FALLBACK_ALPHA = 0.01  # the fixed alpha (EMA decay 0.99) used whenever the dynamic one is unusable
NORM_DTYPE = torch.float32  # the narrowest dtype norms and alphas are computed in


def norm_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype the norms and alpha of ``tensor`` are computed in: float32, or float64 for float64."""
    return torch.promote_types(tensor.dtype, NORM_DTYPE)


def alpha_dtype(tensors: list[torch.Tensor]) -> torch.dtype:
    """The dtype that holds the alphas of all ``tensors`` without rounding any of them."""
    return reduce(torch.promote_types, (norm_dtype(t) for t in tensors), NORM_DTYPE)


def _l1(tensor: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(tensor, ord=1, dtype=norm_dtype(tensor))


def _raw_alpha(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, scale: float = ALPHA_NUMERATOR_SCALE
               ) -> torch.Tensor:
    # a * c == 0 gives inf (or nan), which the range check below rejects: no exception path needed
    return scale * (1 + b) / (a * c)


def _checked_alpha(
    param: torch.Tensor, ema: torch.Tensor, grad: torch.Tensor, prev_grad: torch.Tensor | None, scale: float
) -> float | None:
    """The dynamic alpha of one tensor as a Python float, or None where the fallback applies."""
    if prev_grad is None:
        return None
    alpha = _raw_alpha(_l1(param - ema), _l1(grad), _l1(grad - prev_grad), scale).item()
    return _in_range(alpha)


def _in_range(alpha: float) -> float | None:
    return alpha if math.isfinite(alpha) and 0.0 < alpha < 1.0 else None


@torch.no_grad()
def dynamic_alpha(
    param: torch.Tensor,
    ema: torch.Tensor,
    grad: torch.Tensor,
    prev_grad: torch.Tensor | None,
    fallback: float = FALLBACK_ALPHA,
    scale: float = ALPHA_NUMERATOR_SCALE,
) -> float:
    """The official LLaCA alpha of one tensor, with the fixed fallback.

    Args:
        param: the live weights p (after ``optimizer.step()``).
        ema: the EMA weights theta*.
        grad: the gradient g of this step.
        prev_grad: the gradient of the previous step; None on the first step of a task.
        fallback: the alpha used when the dynamic one is unusable (0.01; Continual-NExT: 0.001).
        scale: the factor in front (2; Continual-NExT: 0.01).

    Returns:
        ``scale (1 + ||g||_1) / (||p - ema||_1 * ||g - prev_grad||_1)`` if that is finite and in the open
        interval (0, 1); otherwise ``fallback`` (first step, zero drift, zero gradient change, nan/inf).
        Computed in float32, or in float64 for float64 tensors (``norm_dtype``).
    """
    alpha = _checked_alpha(param, ema, grad, prev_grad, scale)
    return fallback if alpha is None else alpha


@torch.no_grad()
def dynamic_ema_step_loop(
    params: list[torch.Tensor],
    ema: list[torch.Tensor],
    grads: list[torch.Tensor],
    prev_grads: list[torch.Tensor],
    fallback: float = FALLBACK_ALPHA,
    return_raw: bool = False,
    scale: float = ALPHA_NUMERATOR_SCALE,
) -> tuple[torch.Tensor, ...]:
    """One dynamic-EMA step, tensor by tensor (the reference path); updates ``ema`` and ``prev_grads``.

    Each alpha is ``dynamic_alpha``'s own computation, read back as a Python float as the official
    code does (one host sync per tensor).

    Returns:
        (alphas, fell_back): the alpha applied to each tensor and whether it was the fallback,
        as 1-D tensors on the parameters' device; with ``return_raw`` also the raw dynamic alphas.
    """
    applied: list[float] = []
    fell_back: list[bool] = []
    raws: list[float] = []
    for p, e, g, gp in zip(params, ema, grads, prev_grads, strict=True):
        raws.append(_raw_alpha(_l1(p - e), _l1(g), _l1(g - gp), scale).item())
        alpha = _in_range(raws[-1])
        fell_back.append(alpha is None)
        applied.append(fallback if alpha is None else alpha)
        e.lerp_(p, applied[-1])
        gp.copy_(g)
    device = params[0].device
    out = (
        torch.tensor(applied, dtype=alpha_dtype(params), device=device),
        torch.tensor(fell_back, dtype=torch.bool, device=device),
    )
    return (*out, torch.tensor(raws, dtype=alpha_dtype(params), device=device)) if return_raw else out


@torch.no_grad()
def dynamic_ema_step_fused(
    params: list[torch.Tensor],
    ema: list[torch.Tensor],
    grads: list[torch.Tensor],
    prev_grads: list[torch.Tensor],
    fallback: float = FALLBACK_ALPHA,
    return_raw: bool = False,
    scale: float = ALPHA_NUMERATOR_SCALE,
) -> tuple[torch.Tensor, ...]:
    """One dynamic-EMA step with ``torch._foreach_*`` ops; same result and return as the loop path.

    Every tensor must be on one device (the caller falls back to the loop otherwise). Never reads a
    value back to the host, so it does not synchronise a GPU.
    """
    dtypes = [norm_dtype(p) for p in params]
    widest = alpha_dtype(params)
    if all(d == widest for d in dtypes):
        alphas, in_range, raw = _fused_alphas(params, ema, grads, prev_grads, fallback, widest, scale)
    else:  # float64 next to narrower tensors: each keeps its own norm dtype, as in dynamic_alpha
        alphas = torch.empty(len(params), dtype=widest, device=params[0].device)
        raw = torch.empty(len(params), dtype=widest, device=params[0].device)
        in_range = torch.empty(len(params), dtype=torch.bool, device=params[0].device)
        for dtype in dict.fromkeys(dtypes):
            idx = [i for i, d in enumerate(dtypes) if d == dtype]
            pick = [[ts[i] for i in idx] for ts in (params, ema, grads, prev_grads)]
            part, ok, part_raw = _fused_alphas(*pick, fallback, dtype, scale)
            where = torch.tensor(idx, device=alphas.device)
            alphas[where], in_range[where], raw[where] = part.to(widest), ok, part_raw.to(widest)
    weights = [w if w.dtype == e.dtype else w.to(e.dtype) for w, e in zip(alphas.unbind(), ema)]
    torch._foreach_lerp_(ema, params, weights)
    torch._foreach_copy_(prev_grads, grads)
    return (alphas, ~in_range, raw) if return_raw else (alphas, ~in_range)


def _fused_alphas(
    params: list[torch.Tensor],
    ema: list[torch.Tensor],
    grads: list[torch.Tensor],
    prev_grads: list[torch.Tensor],
    fallback: float,
    dtype: torch.dtype,
    scale: float = ALPHA_NUMERATOR_SCALE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The alphas (fallback applied), in-range flags and raw alphas of tensors whose norms are taken in ``dtype``."""
    a = torch.stack(torch._foreach_norm(torch._foreach_sub(params, ema), 1, dtype=dtype))
    b = torch.stack(torch._foreach_norm(grads, 1, dtype=dtype))
    c = torch.stack(torch._foreach_norm(torch._foreach_sub(grads, prev_grads), 1, dtype=dtype))
    raw = _raw_alpha(a, b, c, scale)
    in_range = (raw > 0) & (raw < 1)  # nan and inf compare False, so they fall back too
    return torch.where(in_range, raw, torch.full_like(raw, fallback)), in_range, raw


def on_one_device(tensors: list[torch.Tensor]) -> bool:
    """Whether every tensor lives on the same device (the fused path needs that)."""
    return len({t.device for t in tensors}) <= 1


@torch.no_grad()
def fixed_ema_step(ema: list[torch.Tensor], params: list[torch.Tensor], alpha: float) -> None:
    """``ema <- (1 - alpha) ema + alpha p`` for every tensor, in place."""
    if on_one_device(params):
        torch._foreach_lerp_(ema, [p.detach() for p in params], alpha)
        return
    for e, p in zip(ema, params, strict=True):
        e.lerp_(p.detach(), alpha)
