"""Online EWC by hand on tiny tensors: the penalty, the empirical Fisher and its accumulation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from cvqa_bench.methods.base import LossContext, TaskContext, TaskInfo, Trainables
from cvqa_bench.methods.ewc import EWC, EWCOptions, accumulate_fisher, ewc_penalty


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_penalty_is_fisher_weighted_squared_distance() -> None:
    params = {"a": t(1, 2), "b": torch.tensor([[0.5]])}
    anchors = {"a": t(0, 1), "b": torch.tensor([[1.5]])}
    fisher = {"a": t(2, 3), "b": torch.tensor([[4.0]])}
    # a: 2 * 1^2 + 3 * 1^2 = 5; b: 4 * (-1)^2 = 4
    assert float(ewc_penalty(params, anchors, fisher)) == pytest.approx(9.0, abs=1e-6)


def test_fisher_accumulates_with_decay() -> None:
    out = accumulate_fisher({"a": t(1, 2)}, {"a": t(0.5, 0.5), "b": t(3)}, gamma=0.5)
    assert torch.allclose(out["a"], t(1.0, 1.5), atol=1e-6)
    assert torch.allclose(out["b"], t(3), atol=1e-6)  # no old entry: the new Fisher alone


class Linear(torch.nn.Module):
    """loss = (w . x - y)^2, so the gradient is 2 (w . x - y) x."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(t(1, 2))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(loss=((self.w * x).sum() - y) ** 2)


BATCHES = [{"x": t(1, 0), "y": t(0)[0]}, {"x": t(1, 1), "y": t(0)[0]}]


def context(model: Linear, index: int) -> TaskContext:
    info = TaskInfo(index=index, name=f"task{index}", instructions=("q",))
    return TaskContext(stage=index + 1, task=info, tasks=[info], trainables=Trainables(model), model=model,
                       batches=lambda n: iter(BATCHES[:n]))


def test_online_ewc_over_two_tasks_by_hand() -> None:
    model = Linear()
    method = EWC(EWCOptions(ewc_lambda=2.0, gamma=0.5, fisher_batches=2))
    method.after_task(context(model, 0))
    # w = [1, 2]: batch 1 pred 1 -> g = [2, 0]; batch 2 pred 3 -> g = [6, 6]; F = mean g^2 = [20, 18]
    assert torch.allclose(method.fisher["w"], t(20, 18), atol=1e-6)
    assert torch.equal(method.anchors["w"], t(1, 2))
    with torch.no_grad():
        model.w.copy_(t(0, 1))
    method.after_task(context(model, 1))
    # w = [0, 1]: batch 1 pred 0 -> g = 0; batch 2 pred 1 -> g = [2, 2]; F_new = [2, 2]
    # F = 0.5 [20, 18] + [2, 2] = [12, 11]; the penalty at task end used the old F: 20 * 1 + 18 * 1 = 38
    assert torch.allclose(method.fisher["w"], t(12, 11), atol=1e-6)
    assert method.penalties["task1"] == pytest.approx(38.0, abs=1e-6)
    assert model.w.grad is None  # the Fisher never touches .grad
    with torch.no_grad():
        model.w.copy_(t(0.5, 1))
    ctx = LossContext(step=1, task=context(model, 2).task, trainables=Trainables(model), model=model)
    # (lambda / 2) * (12 * 0.5^2 + 11 * 0^2) = 1 * 3 = 3
    loss = method.extra_loss(model, {}, None, ctx)
    assert float(loss.detach()) == pytest.approx(3.0, abs=1e-6)
    loss.backward()
    assert torch.allclose(model.w.grad, t(12.0, 0.0), atol=1e-6)  # lambda * F * (w - w*) = 2 * 12 * 0.5


def test_fisher_batches_limits_the_estimate() -> None:
    model = Linear()
    method = EWC(EWCOptions(fisher_batches=1))
    method.after_task(context(model, 0))
    assert torch.allclose(method.fisher["w"], t(4, 0), atol=1e-6)  # batch 1 only: g = [2, 0]


def test_no_penalty_during_the_first_task_and_state_round_trip() -> None:
    model = Linear()
    method = EWC()
    ctx = LossContext(step=1, task=context(model, 0).task, trainables=Trainables(model), model=model)
    assert method.extra_loss(model, {}, None, ctx) is None
    method.after_task(context(model, 0))
    again = EWC()
    again.load_state(method.state_dict(), method.extra_state())
    assert torch.equal(again.fisher["w"], method.fisher["w"]) and torch.equal(again.anchors["w"], t(1, 2))
