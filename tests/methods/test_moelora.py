"""MoELoRA: router mixing of two experts with fixed weights, by hand; the surgery on a peft model."""

import math

import pytest
import torch

from cvqa_bench.config import ConfigError
from cvqa_bench.methods.base import Trainables
from cvqa_bench.methods.moelora import MoELoRA
from cvqa_bench.models.moelora import mixed_delta, router_weights
from peft_tiny import peft_tiny

X = torch.tensor([[1.0, 2.0]])
ROUTER = torch.eye(2)  # logits = x = [1, 2]
# two experts of rank 1, stacked: expert e's A is row e of A, its B column e of B
A = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # expert e reads x_e
B = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # and writes output e
LOW = math.exp(1) / (math.exp(1) + math.exp(2))  # 0.2689414213699951


def test_router_is_a_softmax_over_the_layer_input():
    assert router_weights(X, ROUTER).tolist()[0] == pytest.approx([LOW, 1 - LOW], abs=1e-6)
    assert router_weights(X, ROUTER, top_k=1).tolist()[0] == pytest.approx([0.0, 1.0], abs=1e-6)


def test_two_experts_are_mixed_by_the_router_weights():
    # expert 0 gives [x0, 0] = [1, 0], expert 1 gives [0, x1] = [0, 2]; scaling 2
    delta = mixed_delta(X, A, B, ROUTER, scaling=2.0)
    assert delta.tolist()[0] == pytest.approx([2 * LOW * 1.0, 2 * (1 - LOW) * 2.0], abs=1e-6)
    assert mixed_delta(X, A, B, ROUTER, scaling=2.0, top_k=1).tolist()[0] == pytest.approx([0.0, 4.0], abs=1e-6)


def test_surgery_splits_the_rank_over_the_experts_and_starts_as_the_base_model():
    model = peft_tiny(r=4)
    before = model(X).detach()
    method = MoELoRA(MoELoRA.Options(experts=2))
    method.prepare_model(model, [])
    (layer,) = method.layers
    assert tuple(layer.lora_A.shape) == (4, 2) and tuple(layer.lora_B.shape) == (2, 4)  # 2 experts of rank 2
    assert method.records()["rank_per_expert"] == 2
    assert tuple(layer.lora_router.shape) == (2, 2)
    assert layer.scaling == 2.0  # alpha / r of the whole LoRA, as CoIN
    assert torch.equal(model(X), before)  # B = 0: the experts add nothing yet
    # experts, router and projector are the trainable tensors; peft's own LoRA is gone
    names = Trainables(model).names
    assert len(names) == 3 + 2 and not any("default" in n and "lora" in n for n in names)
    with torch.no_grad():
        layer.lora_B.normal_()
    # expert by expert, as CoIN's loop: base + scaling * sum_e gate_e * B_e A_e x
    gate = router_weights(X, layer.lora_router)
    expected = layer.base_layer(X)
    for e in range(2):
        a, b = layer.lora_A[2 * e:2 * e + 2], layer.lora_B[:, 2 * e:2 * e + 2]
        expected = expected + 2.0 * gate[:, e:e + 1] * (X @ a.T @ b.T)
    assert torch.allclose(layer(X), expected, atol=1e-6)


def test_rank_must_be_a_multiple_of_the_expert_count():
    with pytest.raises(ConfigError, match="multiple"):
        MoELoRA(MoELoRA.Options(experts=3)).prepare_model(peft_tiny(r=4), [])


def test_cvqa_run_refuses_a_rank_the_experts_do_not_divide(cvqa, small_sequence, tmp_path):
    result = cvqa("run", "--sequence", small_sequence, "--method", "moelora", "--set", "method.options.experts=3",
                  "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "model.lora.r (16) must be a multiple of experts (3)" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_llacas_moe_baseline_has_two_experts_mixed_by_a_two_wide_gate():
    """``experts: 2`` (the preset moelora-llaca: JingyangQiao/CoIN scripts/CoIN/Train_MOE, --expert_num 2) on a
    rank-2 LoRA: two experts of rank 1, a 2-wide router, and a forward on hand tensors."""
    model = peft_tiny(r=2)
    method = MoELoRA(MoELoRA.Options(experts=2))
    method.prepare_model(model, [])
    (layer,) = method.layers
    assert tuple(layer.lora_A.shape) == (2, 2) and tuple(layer.lora_B.shape) == (2, 2)  # expert e: row / column e
    assert tuple(layer.lora_router.shape) == (2, 2) and layer.scaling == 2.0  # lora_alpha 4 / r 2
    assert method.records() == {"experts": 2, "rank_per_expert": 1, "top_k": None, "layers": 1}
    with torch.no_grad():
        layer.base_layer.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))  # W x = [3, 2]
        layer.lora_A.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))  # A_0 x = 1, A_1 x = 3
        layer.lora_B.copy_(torch.tensor([[1.0, 0.0], [2.0, 1.0]]))  # B_0 = [1, 2], B_1 = [0, 1]
        layer.lora_router.copy_(ROUTER)  # logits [1, 2]
    gate = router_weights(X, layer.lora_router)
    assert tuple(gate.shape) == (1, 2) and gate[0].tolist() == pytest.approx([LOW, 1 - LOW], abs=1e-6)
    # [3, 2] + 2 (LOW * 1 * [1, 2] + (1 - LOW) * 3 * [0, 1]) = [3 + 2 LOW, 2 + 4 LOW + 6 (1 - LOW)]
    #   = [3.5378828, 7.4621172]
    assert layer(X)[0].tolist() == pytest.approx([3.5378828, 7.4621172], abs=1e-6)
    assert layer.eval()(X)[0].tolist() == pytest.approx([3.5378828, 7.4621172], abs=1e-6)  # dropout 0 either way
