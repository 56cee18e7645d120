"""The dynamic alpha and the EMA update on float16, bfloat16, float32 and float64 tensors.

Norms and alphas are taken in float32 for half precision and float32, in float64 for float64 (never
narrowing); the EMA keeps the parameter's dtype. Expected numbers of the float64 ``nn.Linear`` run
are computed here with plain Python floats from the formula, not with the code under test.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvqa_bench.methods.base import Trainables
from cvqa_bench.methods.dynamic_ema import DynamicEMA
from cvqa_bench.methods.ema_update import dynamic_ema_step_fused, dynamic_ema_step_loop
from cvqa_bench.methods.llaca import FALLBACK_ALPHA, dynamic_alpha

Matrix = list[list[float]]


def same_values(seed: int, *scales: float) -> list[torch.Tensor]:
    """Float32 tensors (16 values each) of the given scales; float32 so .double() keeps them exactly."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 4, generator=gen) * s for s in scales]


# ---------------------------------------------------------------- dynamic_alpha: float32 == float64


def test_in_range_alpha_is_the_same_for_float32_and_float64() -> None:
    p, drift, g, g_prev = same_values(0, 1.0, 1.0, 1.0, 1.0)
    args32 = (p, p + drift, g, g_prev)
    alpha32 = dynamic_alpha(*args32)
    alpha64 = dynamic_alpha(*(t.double() for t in args32))
    assert 0 < alpha64 < 1 and alpha64 != FALLBACK_ALPHA
    assert alpha32 == pytest.approx(alpha64, rel=1e-6)


def test_fallback_alpha_is_the_same_for_float32_and_float64() -> None:
    p, g, g_prev = same_values(1, 1.0, 1.0, 1.0)
    for dtype in (torch.float32, torch.float64):
        q, grad, prev = p.to(dtype), g.to(dtype), g_prev.to(dtype)
        assert dynamic_alpha(q, q.clone(), grad, prev) == FALLBACK_ALPHA  # zero drift: a = 0
        assert dynamic_alpha(q, q + 1e-3, grad, prev) == FALLBACK_ALPHA  # tiny drift: alpha > 1


def test_first_step_alpha_is_the_fallback_in_both_dtypes() -> None:
    p, drift, g = same_values(2, 1.0, 1.0, 1.0)
    for dtype in (torch.float32, torch.float64):
        assert dynamic_alpha(p.to(dtype), (p + drift).to(dtype), g.to(dtype), None) == FALLBACK_ALPHA


# ---------------------------------------------------------------- the fused path agrees with dynamic_alpha


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_fused_alphas_agree_with_dynamic_alpha(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    shapes = [(8, 8), (8,), (3, 5, 2), (6,)]
    params = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
    drifts = [1.0, 1e-3, 2.0, 3.0]  # the tiny drift of tensor 1 makes its alpha > 1: a fallback
    ema = [(p.float() + torch.randn(p.shape, generator=gen) * d).to(dtype) for p, d in zip(params, drifts)]
    grads = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
    prev = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
    expected = [dynamic_alpha(*args) for args in zip(params, ema, grads, prev)]

    alphas, fell_back = dynamic_ema_step_fused(params, [e.clone() for e in ema], grads, [g.clone() for g in prev])
    assert alphas.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert alphas.tolist() == pytest.approx(expected, rel=1e-6)
    assert fell_back.tolist() == [a == FALLBACK_ALPHA for a in expected] == [False, True, False, False]


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_fused_and_loop_updates_keep_the_parameter_dtype(dtype: torch.dtype) -> None:
    p, drift, g, g_prev = (t.to(dtype) for t in same_values(4, 1.0, 1.0, 1.0, 1.0))
    for step in (dynamic_ema_step_fused, dynamic_ema_step_loop):
        ema, prev = [p + drift], [g_prev.clone()]
        alphas, _ = step([p], ema, [g], prev)
        assert ema[0].dtype == prev[0].dtype == dtype
        assert torch.equal(prev[0], g)
        assert alphas.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)


def test_mixed_float64_and_float32_tensors_keep_their_own_norm_dtype() -> None:
    p, drift, g, g_prev = same_values(5, 1.0, 1.0, 1.0, 1.0)
    params = [p.double(), p, p.bfloat16()]
    ema = [(p + drift).to(q.dtype) for q in params]
    grads, prev = [g.to(q.dtype) for q in params], [g_prev.to(q.dtype) for q in params]
    expected = [dynamic_alpha(*args) for args in zip(params, ema, grads, prev)]
    alphas, fell_back = dynamic_ema_step_fused(params, ema, grads, prev)
    assert alphas.dtype == torch.float64 and not fell_back.any()
    assert alphas.tolist() == pytest.approx(expected, rel=1e-6)
    assert [e.dtype for e in ema] == [torch.float64, torch.float32, torch.bfloat16]


# ---------------------------------------------------------------- a float64 nn.Linear(4, 4), 3 steps by hand


def weights(step: int) -> tuple[Matrix, list[float]]:
    """The (weight, bias) the optimizer is pretended to have reached at ``step`` (1, 2, 3)."""
    weight = [[(i - j) / 4 for j in range(4)] for i in range(4)]
    bias = [0.5, -0.5, 1.0, 0.0]
    if step >= 2:  # weight: a large drift; bias: a small one
        weight = [[w + 1 + j / 4 for j, w in enumerate(row)] for row in weight]
        bias = [b + 0.125 for b in bias]
    if step >= 3:  # bias: a large drift
        weight = [[w + 0.0625 for w in row] for row in weight]
        bias = [b + s for b, s in zip(bias, [2, -2, 2, -2])]
    return weight, bias


def gradients(step: int) -> tuple[Matrix, list[float]]:
    """The (weight, bias) gradients of ``step``."""
    weight = [[(i + j) / 8 - 0.25 for j in range(4)] for i in range(4)]
    bias = [0.25, 0.25, -0.25, 0.0]
    if step >= 2:  # weight: each entry changes by 0.5; bias: a small change
        weight = [[w + (0.5 if (i + j) % 2 else -0.5) for j, w in enumerate(row)] for i, row in enumerate(weight)]
        bias = [b + 0.0625 for b in bias]
    if step >= 3:  # weight: no change (c = 0); bias: a large one
        bias = [b + s for b, s in zip(bias, [1, -1, 1, -1])]
    return weight, bias


def flat(value: Matrix | list[float]) -> list[float]:
    return [x for row in value for x in row] if isinstance(value[0], list) else list(value)  # type: ignore[misc]


def reference_run() -> tuple[dict[str, list[float]], list[float]]:
    """The EMA values after 3 steps and every applied alpha, in Python floats, straight from the formula."""
    names = ("weight", "bias")
    ema: dict[str, list[float]] = {}
    prev: dict[str, list[float]] = {}
    applied: list[float] = []
    for step in (1, 2, 3):
        p = dict(zip(names, (flat(x) for x in weights(step))))
        g = dict(zip(names, (flat(x) for x in gradients(step))))
        for name in names:
            if step == 1:  # theta* = copy(p), no previous gradient: the fallback, theta* stays p
                ema[name], alpha = list(p[name]), FALLBACK_ALPHA
            else:
                a = sum(abs(x - e) for x, e in zip(p[name], ema[name]))
                b = sum(abs(x) for x in g[name])
                c = sum(abs(x - y) for x, y in zip(g[name], prev[name]))
                alpha = 2 * (1 + b) / (a * c) if a * c else float("inf")
                alpha = alpha if 0 < alpha < 1 else FALLBACK_ALPHA
                ema[name] = [e + alpha * (x - e) for x, e in zip(p[name], ema[name])]
            prev[name] = list(g[name])
            applied.append(alpha)
    return ema, applied


def test_the_reference_run_covers_both_branches() -> None:
    _, applied = reference_run()  # (weight, bias) per step
    assert applied[:2] == [FALLBACK_ALPHA] * 2  # step 1: no previous gradient
    # weight, step 2: a = 4 (4 + 6/4) = 22, b = 8 (16 entries, |x| summed), c = 16 * 0.5 = 8
    assert applied[2] == 2 * (1 + 8) / (22 * 8)
    # bias, step 2: a = 0.5, b = 0.875, c = 0.25 -> alpha = 2 * 1.875 / 0.125 = 30, outside (0, 1)
    assert applied[3] == FALLBACK_ALPHA
    assert applied[4] == FALLBACK_ALPHA  # weight, step 3: g = g_prev, c = 0
    # bias, step 3: a = 2.12375 + 1.87625 + 2.12375 + 1.87625 = 8, b = 3.75, c = 4
    assert applied[5] == 2 * (1 + 3.75) / (8 * 4) == 0.296875


@pytest.mark.parametrize("fused", [True, False])
def test_float64_linear_three_steps_match_the_formula(fused: bool) -> None:
    model = nn.Linear(4, 4).double()
    dynamic = DynamicEMA(FALLBACK_ALPHA, fused)
    for step in (1, 2, 3):
        (w, b), (gw, gb) = weights(step), gradients(step)
        with torch.no_grad():
            model.weight.copy_(torch.tensor(w, dtype=torch.float64))
            model.bias.copy_(torch.tensor(b, dtype=torch.float64))
        model.weight.grad = torch.tensor(gw, dtype=torch.float64)
        model.bias.grad = torch.tensor(gb, dtype=torch.float64)
        dynamic.step(Trainables(model))

    expected, applied = reference_run()
    for name in ("weight", "bias"):
        assert dynamic.ema[name].dtype == torch.float64
        assert dynamic.ema[name].flatten().tolist() == pytest.approx(expected[name], rel=1e-12, abs=1e-15)
    assert dynamic.prev_grad["bias"].tolist() == flat(gradients(3)[1])
    summary = dynamic.summary()
    assert summary["n_updates"] == 6 and summary["fallback_fraction"] == pytest.approx(4 / 6)
    assert summary["mean"] == pytest.approx(sum(applied) / 6, rel=1e-12)
    assert summary["min"] == FALLBACK_ALPHA and summary["max"] == pytest.approx(max(applied), rel=1e-12)
