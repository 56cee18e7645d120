"""Issue 27: LLaCA's numerics switches (ema_dtype, alpha_gradient, alpha_scale / fallback and their variant),
each against values computed by hand from the reference code's formula."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvqa_bench.methods.base import StepContext, TaskContext, TaskInfo, Trainables
from cvqa_bench.methods.llaca import LLaCA
from cvqa_bench.methods.ema_update import dynamic_alpha


class OneTensor(nn.Module):
    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3, dtype=dtype))


TASK = TaskInfo(0, "A", ("Answer.",))


def start(method: LLaCA, model: nn.Module) -> Trainables:
    trainables = Trainables(model)
    method.setup([TASK])
    method.before_task(TaskContext(1, TASK, [TASK], trainables, model=model))
    return trainables


def sgd_step(method: LLaCA, model: nn.Module, trainables: Trainables, step: int, micro_batches: list[list[float]]
             ) -> None:
    """One optimizer step of plain SGD (lr 1) over micro-batches whose loss is (w . x) / 2 each: the
    gradient of micro-batch k is x_k / 2 and p.grad their sum."""
    model.w.grad = None
    for x in micro_batches:
        (model.w * torch.tensor(x, dtype=model.w.dtype)).sum().div(2).backward()
    with torch.no_grad():
        model.w -= model.w.grad
    method.after_optimizer_step(StepContext(step, TASK, trainables))


@pytest.mark.parametrize(("gradient", "alpha"), [
    # step 2: p1 = -(x1 + x2)/2 = [-0.5, -0.5, 4.5], p2 = p1 - (x3 + x4)/2 = p1 - [3, 1, 3]: a = ||p2 - p1||_1 = 7
    # micro_batch: g = x4/2 = [1, -1, 1] (b = 3), g_prev = x2/2 = [0, 0, -5] (c = ||[1, -1, 6]||_1 = 8):
    #   alpha = 2 (1 + 3) / (7 * 8) = 1/7
    ("micro_batch", 8 / 56),
    # step: g = (x3 + x4)/2 = [3, 1, 3] (b = 7), g_prev = (x1 + x2)/2 = [0.5, 0.5, -4.5] (c = 2.5 + 0.5 + 7.5 = 10.5):
    #   alpha = 2 (1 + 7) / (7 * 10.5) = 16 / 73.5
    ("step", 16 / 73.5),
])
def test_alpha_reads_the_last_micro_batch_gradient_or_the_step_gradient(gradient: str, alpha: float) -> None:
    model = OneTensor()
    method = LLaCA(LLaCA.Options(grouping=False, alpha_gradient=gradient))
    trainables = start(method, model)
    sgd_step(method, model, trainables, 1, [[1, 1, 1], [0, 0, -10]])  # first step: the EMA copies p1
    p1 = model.w.detach().clone()
    assert torch.equal(p1, torch.tensor([-0.5, -0.5, 4.5]))
    sgd_step(method, model, trainables, 2, [[4, 4, 4], [2, -2, 2]])
    p2 = model.w.detach().clone()
    assert torch.allclose(method.dynamic.ema["w"], p1 + alpha * (p2 - p1), atol=1e-6, rtol=0)
    stats = method.dynamic.summary()
    assert stats["max"] == pytest.approx(alpha, abs=1e-6)


def test_continual_next_variant_scales_by_001_and_falls_back_to_0001() -> None:
    p, ema = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.0])  # a = 1.5
    grad, prev = torch.tensor([0.2, -0.1]), torch.tensor([0.1, 0.1])  # b = 0.3, c = 0.1 + 0.2 = 0.3
    # ICML: 2 * 1.3 / (1.5 * 0.3) = 5.78 >= 1 -> 0.01; Continual-NExT: 0.01 * 1.3 / 0.45 = 0.028888...
    assert dynamic_alpha(p, ema, grad, prev) == 0.01
    assert dynamic_alpha(p, ema, grad, prev, fallback=0.001, scale=0.01) == pytest.approx(1.3 / 45, rel=1e-6)  # float32 norms
    # a = 0.001: 0.01 * 1.3 / (0.001 * 0.3) = 43.3 >= 1 -> the Continual-NExT fallback 0.001
    assert dynamic_alpha(p, p - torch.tensor([0.001, 0.0]), grad, prev, fallback=0.001, scale=0.01) == 0.001
    method = LLaCA(LLaCA.Options(variant="continual-next"))
    assert (method.alpha_scale, method.fallback) == (0.01, 0.001)
    assert method.recorded_options() == {"schedule": "pinned", "variant": "continual-next", "alpha_scale": 0.01,
                                         "fallback": 0.001, "ema_dtype": "float32", "alpha_gradient": "step"}
    explicit = LLaCA(LLaCA.Options(variant="continual-next", fallback=0.05))
    assert (explicit.alpha_scale, explicit.fallback) == (0.01, 0.05)
    assert (LLaCA().alpha_scale, LLaCA().fallback) == (2.0, 0.01)


def test_continual_next_alpha_through_the_hooks() -> None:
    model = OneTensor()
    method = LLaCA(LLaCA.Options(grouping=False, variant="continual-next"))
    trainables = start(method, model)
    sgd_step(method, model, trainables, 1, [[1, 1, 1], [0, 0, -10]])
    p1 = model.w.detach().clone()
    sgd_step(method, model, trainables, 2, [[4, 4, 4], [2, -2, 2]])
    alpha = 0.01 * 8 / 73.5  # the step-gradient case above with the factor 0.01 instead of 2
    assert torch.allclose(method.dynamic.ema["w"], p1 + alpha * (model.w.detach() - p1), atol=1e-7, rtol=0)


def test_ema_dtype_param_keeps_a_bf16_ema_in_a_bf16_run() -> None:
    """A bf16 model as a bf16 run loads it (frozen tensors bf16, trainables float32 masters, compute dtype bf16):
    ``ema_dtype: param`` keeps the EMA and previous gradient in bf16 and averages the bf16-rounded weights in;
    the default keeps them float32."""
    from cvqa_bench.models.precision import keep_trainables_fp32

    for ema_dtype, expected in (("param", torch.bfloat16), ("float32", torch.float32)):
        model = OneTensor()
        model.frozen = nn.Parameter(torch.ones(2, dtype=torch.bfloat16), requires_grad=False)
        model.get_base_model = lambda m=model: m  # where keep_trainables_fp32 wraps the forward
        assert keep_trainables_fp32(model) == torch.float32 and model.w.dtype == torch.float32
        method = LLaCA(LLaCA.Options(grouping=False, ema_dtype=ema_dtype))
        trainables = start(method, model)
        sgd_step(method, model, trainables, 1, [[1, 1, 1], [0, 0, -10]])
        p1 = model.w.detach().clone().to(expected)
        sgd_step(method, model, trainables, 2, [[4, 4, 4], [2, -2, 2]])
        ema, prev = method.dynamic.ema["w"], method.dynamic.prev_grad["w"]
        assert ema.dtype == prev.dtype == expected
        p2 = model.w.detach().to(expected)
        by_hand = torch.lerp(p1, p2, 16 / 73.5)  # the step case's alpha, the update rounded to the EMA's dtype
        assert torch.equal(ema, by_hand) if expected == torch.bfloat16 else torch.allclose(ema, by_hand, atol=1e-6)


def test_new_options_enter_the_stage_hash_only_away_from_their_default() -> None:
    """config.yaml records every new option resolved; at its default an option leaves the stage hash of
    a run made before it unchanged, any other value changes it."""
    from cvqa_bench.config.run import OPTIONS_HASHED_WHEN_CHANGED, RunConfig

    assert LLaCA().recorded_options() == OPTIONS_HASHED_WHEN_CHANGED["llaca"]
    before = RunConfig(method={"name": "llaca"}).stable_hash()
    assert RunConfig(method={"name": "llaca", "options": LLaCA().recorded_options()}).stable_hash() == before
    changed = {"schedule": "computed", "variant": "continual-next", "alpha_scale": 3.0, "fallback": 0.02,
               "ema_dtype": "param", "alpha_gradient": "micro_batch"}
    hashes = {RunConfig(method={"name": "llaca", "options": {k: v}}).stable_hash() for k, v in changed.items()}
    assert len(hashes) == len(changed) and before not in hashes
