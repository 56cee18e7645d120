"""O-LoRA: the orthogonality term, the per-task LoRA layer and the per-task trainable set, by hand."""

import math

import pytest
import torch

from cvqa_bench.config import ConfigError
from cvqa_bench.methods.base import LossContext, TaskContext, TaskInfo, Trainables
from cvqa_bench.methods.olora import OLoRA, orthogonality_loss
from peft_tiny import Tiny, peft_tiny

TASKS = [TaskInfo(i, name, ("q",)) for i, name in enumerate(["A", "B", "C"])]


def test_orthogonality_loss_by_hand():
    current = torch.tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 1.0]])
    first = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # current @ first.T = [[1, 2], [-1, 1]] -> 5
    second = torch.tensor([[2.0, 0.0, 0.0]])  # current @ second.T = [[2], [0]] -> 2
    assert float(orthogonality_loss([first, second], current)) == pytest.approx(7.0, abs=1e-6)
    assert float(orthogonality_loss([], current)) == 0.0
    assert float(orthogonality_loss([torch.tensor([[0.0, 2.0, 1.0]])], torch.tensor([[1.0, 0.0, 0.0]]))) == 0.0


def test_layer_sums_the_active_task_loras_by_hand():
    model = peft_tiny()
    method = OLoRA(OLoRA.Options())
    method.prepare_model(model, TASKS)
    (layer,) = method.layers
    with torch.no_grad():
        layer.base_layer.weight.copy_(torch.eye(2))
        for t, (a, b) in enumerate([([1.0, 2.0], [1.0, 0.0]), ([3.0, -1.0], [1.0, 2.0]), ([5.0, 5.0], [9.0, 9.0])]):
            layer.lora_A[t].copy_(torch.tensor([a]))
            layer.lora_B[t].copy_(torch.tensor([b]).T)
    x = torch.tensor([[1.0, 1.0]])
    assert layer.scaling == 2.0  # alpha / r
    layer.active = 0
    assert torch.allclose(layer(x), x)
    layer.active = 2  # x + 2 * (B0 (A0 x) + B1 (A1 x)) = [1, 1] + 2 * (3 * [1, 0] + 2 * [1, 2])
    assert torch.allclose(layer(x), torch.tensor([[11.0, 9.0]]), atol=1e-6)


def test_extra_loss_is_lambda1_orthogonality_plus_lambda2_norms():
    model = peft_tiny()
    method = OLoRA(OLoRA.Options(lambda1=0.5, lambda2=0.1))
    method.prepare_model(model, TASKS)
    (layer,) = method.layers
    with torch.no_grad():
        layer.lora_A[0].copy_(torch.tensor([[1.0, 2.0]]))
        layer.lora_A[1].copy_(torch.tensor([[3.0, -1.0]]))
        layer.lora_B[1].copy_(torch.tensor([[1.0], [2.0]]))
    ctx = LossContext(step=1, task=TASKS[1], trainables=Trainables(model), model=model)
    # |A1 A0^T| = |3 - 2| = 1; ||A1|| = sqrt(10), ||B1|| = sqrt(5)
    expected = 0.5 * 1.0 + 0.1 * (math.sqrt(10) + math.sqrt(5))
    assert method.extra_loss(model, {}, None, ctx).item() == pytest.approx(expected, abs=1e-6)
    first_task = LossContext(step=1, task=TASKS[0], trainables=ctx.trainables, model=model)
    assert OLoRA(OLoRA.Options(lambda2=0.0)).extra_loss(model, {}, None, first_task) is None  # nothing to add


def test_each_task_trains_its_own_lora_and_keeps_earlier_ones_active():
    model = peft_tiny()
    method = OLoRA(OLoRA.Options())
    method.prepare_model(model, TASKS)
    trainables = Trainables(model)
    # three tasks' A and B plus the projector's weight and bias
    assert len(trainables.names) == 3 * 2 + 2
    method.before_task(TaskContext(stage=2, task=TASKS[1], tasks=TASKS, trainables=trainables))
    lora = sorted(n.split("q_proj.")[1] for n in trainables.active_names() if "lora" in n)
    assert lora == ["lora_A.1", "lora_B.1"]
    assert sum("multi_modal_projector" in n for n in trainables.active_names()) == 2
    assert method.layers[0].active == 2
    # the state of a saved stage puts the same LoRAs back in the forward
    again = OLoRA(OLoRA.Options())
    again.prepare_model(peft_tiny(), TASKS)
    again.load_state({}, method.extra_state())
    assert again.layers[0].active == 2


def test_full_training_is_refused():
    with pytest.raises(ConfigError, match="model.lora"):
        OLoRA(OLoRA.Options()).prepare_model(Tiny(), TASKS)


def test_cvqa_run_refuses_olora_without_lora(cvqa, small_sequence, tmp_path):
    result = cvqa("run", "--sequence", small_sequence, "--method", "olora", "--set", "model.lora=null",
                  "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "needs model.lora" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_set_trainable_switches_requires_grad_and_refuses_unknown_names():
    model = peft_tiny()
    trainables = Trainables(model)
    first = trainables.names[0]
    trainables.set_trainable([first])
    assert trainables.active_names() == [first] and len(trainables.names) == 4  # the set itself is unchanged
    assert [p.requires_grad for p in trainables.params] == [True, False, False, False]
    with pytest.raises(KeyError, match="not a trainable tensor"):
        trainables.set_trainable(["no.such.tensor"])


class TwoLayers(torch.nn.Module):
    """q_proj and k_proj, both with a peft LoRA (the variants choose which keep one)."""

    def __init__(self) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(2, 2, bias=False)
        self.k_proj = torch.nn.Linear(2, 2, bias=False)


def two_layer_peft(r: int) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(TwoLayers(), LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "k_proj"]))


def test_original_variant_is_rank_8_on_q_and_v_with_lambda1_half():
    model = two_layer_peft(r=4)
    method = OLoRA(OLoRA.Options(variant="original"))
    method.prepare_model(model, TASKS)
    (layer,) = method.layers  # k_proj lost its LoRA: the frozen base layer alone
    assert isinstance(model.get_submodule("base_model.model.k_proj"), torch.nn.Linear)
    assert layer.lora_A[1].shape == (8, 2) and layer.scaling == 32 / 8  # cmnfriend/O-LoRA: r 8, lora_alpha 32
    with torch.no_grad():
        layer.lora_A[0].zero_()
        layer.lora_A[0][0] = torch.tensor([1.0, 2.0])
        layer.lora_A[1].zero_()
        layer.lora_A[1][0] = torch.tensor([3.0, -1.0])
        layer.lora_A[1][1] = torch.tensor([1.0, 1.0])
        layer.lora_B[1].fill_(1.0)  # lambda2 = 0: the norms add nothing
    ctx = LossContext(step=1, task=TASKS[1], trainables=Trainables(model), model=model)
    # A1 A0^T: [3 - 2, 1 + 2] = [1, 3] -> sum |.| = 4; 0.5 * 4
    assert method.extra_loss(model, {}, None, ctx).item() == pytest.approx(2.0, abs=1e-6)
    assert method.records()["lambda1"] == 0.5 and method.records()["lambda2"] == 0.0


def test_mcitlib_variant_splits_the_rank_weights_005_and_has_no_l2_term():
    model = two_layer_peft(r=3)
    method = OLoRA(OLoRA.Options(variant="mcitlib"))
    method.prepare_model(model, TASKS)
    assert len(method.layers) == 2 and all(layer.lora_A[0].shape == (1, 2) for layer in method.layers)  # 3 / 3
    q, k = method.layers
    with torch.no_grad():
        q.lora_A[0].copy_(torch.tensor([[1.0, 2.0]]))
        q.lora_A[1].copy_(torch.tensor([[2.0, 0.0]]))
        q.lora_A[2].copy_(torch.tensor([[1.0, -1.0]]))
        k.lora_A[0].copy_(torch.tensor([[0.0, 1.0]]))
        k.lora_A[1].copy_(torch.tensor([[1.0, 0.0]]))
        k.lora_A[2].copy_(torch.tensor([[2.0, 3.0]]))
        q.lora_B[2].fill_(5.0)  # no L2 term: the norms add nothing
    ctx = LossContext(step=1, task=TASKS[2], trainables=Trainables(model), model=model)
    # q: |1 - 2| + |2 - 0| = 3; k: |0 + 3| + |2 + 0| = 5; 0.05 * 8
    assert method.extra_loss(model, {}, None, ctx).item() == pytest.approx(0.4, abs=1e-6)
    with pytest.raises(ValueError, match="no L2 term"):
        OLoRA.Options(variant="mcitlib", lambda2=0.1)
    with pytest.raises(ConfigError, match="multiple of the task count"):
        OLoRA(OLoRA.Options(variant="mcitlib")).prepare_model(two_layer_peft(r=4), TASKS)


def test_mcitlib_variant_trains_through_the_current_lora_only():
    model = two_layer_peft(r=3)
    method = OLoRA(OLoRA.Options(variant="mcitlib"))
    method.prepare_model(model, TASKS)
    layer = method.layers[0]
    with torch.no_grad():
        layer.base_layer.weight.copy_(torch.eye(2))
        layer.lora_A[0].copy_(torch.tensor([[1.0, 2.0]]))
        layer.lora_B[0].copy_(torch.tensor([[1.0], [0.0]]))
        layer.lora_A[1].copy_(torch.tensor([[3.0, -1.0]]))
        layer.lora_B[1].copy_(torch.tensor([[1.0], [2.0]]))
    x = torch.tensor([[1.0, 1.0]])
    layer.active = 2
    assert layer.scaling == 2.0  # MCITlib: lora_alpha / the whole rank
    layer.train()  # x + 2 * B1 (A1 x) = [1, 1] + 2 * 2 * [1, 2]
    assert torch.allclose(layer(x), torch.tensor([[5.0, 9.0]]), atol=1e-6)
    layer.eval()  # x + 2 * (B0 (A0 x) + B1 (A1 x)) = [1, 1] + 2 * (3 * [1, 0] + 2 * [1, 2])
    assert torch.allclose(layer(x), torch.tensor([[11.0, 9.0]]), atol=1e-6)
