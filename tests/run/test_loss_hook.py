"""The loss hook in the Trainer: the extra term is added once per micro-batch, weighted per optimizer step."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import TrainingArguments

from cvqa_bench.methods.base import LossContext, Method, TaskInfo, Trainables
from cvqa_bench.run.training.loss_hook import MethodTrainer, has_loss_hook


class Scalar(torch.nn.Module):
    """loss = w * x, as a model whose forward takes ``num_items_in_batch`` (the Trainer then scales for GA)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        return {"loss": self.w * x.sum(), "logits": x}


class Constant(Method):
    name = "constant"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[LossContext] = []

    def extra_loss(self, model: torch.nn.Module, inputs: dict, outputs: Any, ctx: LossContext) -> torch.Tensor:
        self.seen.append(ctx)
        return 3.0 * ctx.trainables.params[0]  # 3 w


def trainer(tmp_path, method: Method, model: Scalar) -> MethodTrainer:
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    return MethodTrainer(model=model, args=args, method=method, task=TaskInfo(0, "t", ()), trainables=Trainables(model))


@pytest.mark.parametrize(("num_items", "expected"), [(4, 2.0 * 5 + 3.0 * 2 / 2), (None, 2.0 * 5 + 3.0 * 2)])
def test_extra_term_is_divided_by_the_accumulation_only_when_the_trainer_does_not(tmp_path, num_items, expected):
    model, method = Scalar(), Constant()
    t = trainer(tmp_path, method, model)
    t.current_gradient_accumulation_steps = 2
    loss = t.compute_loss(model, {"x": torch.tensor([5.0])}, num_items_in_batch=num_items)
    # task loss w x = 10; extra 3 w = 6, halved when the Trainer will not divide by the 2 micro-batches
    assert float(loss.detach()) == pytest.approx(expected, abs=1e-6)
    assert len(method.seen) == 1 and method.seen[0].step == 1 and method.seen[0].model is model


def test_a_method_without_the_hook_gets_the_trainers_own_loss(tmp_path) -> None:
    model = Scalar()
    plain = Method()
    assert not has_loss_hook(plain) and has_loss_hook(Constant())
    loss = trainer(tmp_path, plain, model).compute_loss(model, {"x": torch.tensor([5.0])})
    assert float(loss.detach()) == 10.0
