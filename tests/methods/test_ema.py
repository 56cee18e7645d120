"""Fixed-weight EMA: three steps by hand, swap-in at task end, per-task reset, resume."""

import json

import pytest
import safetensors.torch
import torch
from pydantic import ValidationError
from torch import nn

from cvqa_bench.methods.base import StepContext, TaskContext, TaskInfo, Trainables
from cvqa_bench.methods.ema import FixedEMA
from cvqa_bench.methods.finetune import Finetune

TASKS = [TaskInfo(0, "A", ("q",)), TaskInfo(1, "B", ("q",))]


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def model_with(w: list[float]) -> nn.Module:
    model = nn.Module()
    model.w = nn.Parameter(t(*w))
    model.frozen = nn.Parameter(t(5.0), requires_grad=False)  # not trainable: never touched
    return model


def task_ctx(i: int, model: nn.Module) -> TaskContext:
    return TaskContext(stage=i + 1, task=TASKS[i], tasks=TASKS, trainables=Trainables(model))


def step(method: FixedEMA, model: nn.Module, task: int, n: int, w: list[float]) -> None:
    """Pretend the optimizer moved the weights to ``w``, then call the hook."""
    with torch.no_grad():
        model.w.copy_(t(*w))
    method.after_optimizer_step(StepContext(step=n, task=TASKS[task], trainables=Trainables(model)))


def test_three_steps_by_hand_with_alpha_0_1() -> None:
    model, method = model_with([0, 0]), FixedEMA(FixedEMA.Options(alpha=0.1))
    method.before_task(task_ctx(0, model))
    step(method, model, 0, 1, [1, 2])  # theta* = copy(p) = [1, 2]; the update leaves it there
    assert torch.equal(method.shadow["w"], t(1, 2))
    step(method, model, 0, 2, [3, 0])  # 0.9 [1, 2] + 0.1 [3, 0] = [1.2, 1.8]
    assert torch.allclose(method.shadow["w"], t(1.2, 1.8), atol=1e-6)
    step(method, model, 0, 3, [2, 2])  # 0.9 [1.2, 1.8] + 0.1 [2, 2] = [1.28, 1.82]
    assert torch.allclose(method.shadow["w"], t(1.28, 1.82), atol=1e-6)
    method.after_task(task_ctx(0, model))
    assert torch.allclose(model.w, t(1.28, 1.82), atol=1e-6)  # the saved stage is the EMA model
    assert torch.equal(model.frozen, t(5.0))
    assert method.records() == {"alpha": 0.1, "updates": {"A": 3}}


def test_default_alpha_is_0_01_and_the_shadow_restarts_each_task() -> None:
    model, method = model_with([0, 0]), FixedEMA()
    method.before_task(task_ctx(0, model))
    step(method, model, 0, 1, [1, 1])
    step(method, model, 0, 2, [101, -99])  # 0.99 [1, 1] + 0.01 [101, -99] = [2, 0]
    method.after_task(task_ctx(0, model))
    assert torch.allclose(model.w, t(2, 0), atol=1e-6)
    method.before_task(task_ctx(1, model))
    step(method, model, 1, 1, [40, 50])  # new task: theta* = copy(p), not the old shadow
    method.after_task(task_ctx(1, model))
    assert torch.allclose(model.w, t(40, 50))


def test_a_task_without_steps_leaves_the_model_alone() -> None:
    model, method = model_with([3, 4]), FixedEMA()
    method.before_task(task_ctx(0, model))
    method.after_task(task_ctx(0, model))
    assert torch.equal(model.w, t(3, 4))


def test_resume_mid_task_continues_exactly() -> None:
    weights = [[1, 2], [3, 0], [2, 2], [8, -4]]
    reference_model, reference = model_with([0, 0]), FixedEMA(FixedEMA.Options(alpha=0.1))
    reference.before_task(task_ctx(0, reference_model))
    for n, w in enumerate(weights, 1):
        step(reference, reference_model, 0, n, w)
    reference.after_task(task_ctx(0, reference_model))

    model, first = model_with([0, 0]), FixedEMA(FixedEMA.Options(alpha=0.1))
    first.before_task(task_ctx(0, model))
    for n, w in enumerate(weights[:2], 1):
        step(first, model, 0, n, w)
    tensors, extra = first.state_dict(), json.loads(json.dumps(first.extra_state()))
    assert set(tensors) == {"ema.w"}
    resumed = FixedEMA(FixedEMA.Options(alpha=0.1))
    resumed.load_state(safetensors.torch.load(safetensors.torch.save(tensors)), extra)
    resumed.before_task(task_ctx(0, model))  # the same task is in progress: keep the shadow
    for n, w in enumerate(weights[2:], 3):
        step(resumed, model, 0, n, w)
    resumed.after_task(task_ctx(0, model))
    assert torch.equal(model.w, reference_model.w)
    assert resumed.records() == reference.records()


@pytest.mark.parametrize("options", [{"alpha": 0.0}, {"alpha": 1.0}, {"alpha": -0.5}, {"aplha": 0.1}])
def test_options_reject_invalid_alpha_and_typos(options: dict) -> None:
    with pytest.raises(ValidationError):
        FixedEMA.Options(**options)


def test_finetune_changes_nothing() -> None:
    model, method = model_with([3, 4]), Finetune()
    rows = [{"id": "1", "image": None, "conversations": []}]
    assert method.train_rows(TASKS[0], rows) is rows
    method.before_task(task_ctx(0, model))
    method.after_task(task_ctx(0, model))
    assert torch.equal(model.w, t(3, 4)) and method.eval_state(TASKS[0]) is None
