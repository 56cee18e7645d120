"""LwF by hand: the T^2-scaled KL over masked positions, the answer-position mask, the teacher."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from cvqa_bench.methods.base import LossContext, TaskContext, TaskInfo, Trainables
from cvqa_bench.methods.lwf import LwF, LwFOptions, answer_positions, distillation_loss

LN3 = math.log(3)


def test_distillation_with_temperature_two_and_a_masked_position() -> None:
    student = torch.tensor([[[0.0, 0.0], [2 * LN3, 0.0], [50.0, -50.0]]])
    teacher = torch.tensor([[[2 * LN3, 0.0], [0.0, 0.0], [-50.0, 50.0]]])
    mask = torch.tensor([[True, True, False]])
    # T = 2. Position 1: p_t = softmax([ln 3, 0]) = [3/4, 1/4], p_s = [1/2, 1/2]
    kl1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    # position 2: p_t = [1/2, 1/2], p_s = [3/4, 1/4]; position 3 is masked out (it would dominate)
    kl2 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    expected = 4 * (kl1 + kl2) / 2
    assert float(distillation_loss(student, teacher, mask, temperature=2.0)) == pytest.approx(expected, abs=1e-6)


def test_distillation_at_temperature_one_and_with_nothing_masked_in() -> None:
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2 * LN3, 0.0]])  # T = 1: p_t = [9/10, 1/10]
    expected = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert float(distillation_loss(student, teacher, torch.tensor([True]), 1.0)) == pytest.approx(expected, abs=1e-6)
    assert float(distillation_loss(student, teacher, torch.tensor([False]), 1.0)) == 0.0


def test_answer_positions_are_the_logits_that_predict_a_label() -> None:
    labels = torch.tensor([[-100, -100, 5, 6, -100]])
    assert answer_positions(labels).tolist() == [[False, True, True, False, False]]


class Logits(torch.nn.Module):
    """logits = input_ids one-hot * w: the teacher's and the student's logits differ only through w."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.0, 0.0]))

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> SimpleNamespace:
        return SimpleNamespace(logits=self.w.expand(*input_ids.shape, 2) * 1.0)


def test_teacher_is_the_previous_task_weights_substituted_functionally() -> None:
    model = Logits()
    method = LwF(LwFOptions(lwf_lambda=3.0, temperature=2.0))
    info = [TaskInfo(index=i, name=f"t{i}", instructions=("q",)) for i in range(2)]
    ctx = lambda i: TaskContext(stage=i + 1, task=info[i], tasks=info, trainables=Trainables(model))  # noqa: E731
    method.before_task(ctx(0))
    assert method.teacher == {}  # the first task has no teacher
    method.after_task(ctx(0))
    with torch.no_grad():
        model.w.copy_(torch.tensor([2 * LN3, 0.0]))  # the weights task 0 left: the teacher
    method.before_task(ctx(1))
    with torch.no_grad():
        model.w.zero_()  # the student moved
    inputs = {"input_ids": torch.zeros(1, 2, dtype=torch.long), "labels": torch.tensor([[-100, 7]])}
    outputs = model(**inputs)
    loss = method.extra_loss(model, inputs, outputs, LossContext(1, info[1], Trainables(model), model))
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # one answer position, T = 2
    assert float(loss.detach()) == pytest.approx(3.0 * 4 * kl, abs=1e-6)
    assert torch.equal(model.w.detach(), torch.zeros(2))  # the live weights were never swapped
