"""Mixed precision (cvqa_bench.models.precision) on the tiny model: a bf16 base with float32 trainable
tensors and autocast forwards, as the official CoIN/LLaCA run trains; float32 runs are left untouched.

fp16 is checked on a plain module only: on CPU accelerate neither autocasts nor scales gradients for
fp16 (it needs a GPU), so the Trainer's fp16 path cannot run here.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from conftest import one_torch_thread

from cvqa_bench.bench.common import load_task_rows
from cvqa_bench.config import ModelSpec, TrainSpec
from cvqa_bench.methods.base import TaskInfo, Trainables
from cvqa_bench.methods.finetune import Finetune
from cvqa_bench.models.load import LoadedModel, load_model
from cvqa_bench.models.precision import (
    COMPUTE_DTYPE_ATTR,
    autocast_for,
    compute_dtype,
    keep_trainables_fp32,
    trainable_dtype,
)
from cvqa_bench.models.prompting import TrainCollator
from cvqa_bench.run.evaluation.evaluate import generate_predictions
from cvqa_bench.run.training.train import train_stage

LR = 2e-5  # the official projector learning rate
PROJECTOR_WEIGHT = "multi_modal_projector.modules_to_save.default.linear_1.weight"
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def load(dtype: str) -> LoadedModel:
    torch.manual_seed(0)  # the LoRA init
    return load_model(ModelSpec(dtype=dtype), CPU)


@pytest.fixture(scope="module")
def rows(small_sequence: Path) -> list[dict]:
    return load_task_rows(str(small_sequence), "color", "train")[:8]


@pytest.fixture(scope="module")
def test_rows(small_sequence: Path) -> list[dict]:
    return load_task_rows(str(small_sequence), "color", "test")


def batch_of(loaded: LoadedModel, rows: list[dict]) -> dict[str, torch.Tensor]:
    return TrainCollator(loaded.processor, TrainSpec().max_length, False)(rows[:4])


def param(model: torch.nn.Module, suffix: str) -> torch.nn.Parameter:
    (found,) = [p for n, p in model.named_parameters() if n.endswith(suffix)]
    return found


def test_bf16_keeps_the_trainable_tensors_float32_and_the_frozen_base_bf16() -> None:
    loaded = load("bfloat16")
    params = list(loaded.model.parameters())
    trainable = [p for p in params if p.requires_grad]
    frozen = [p for p in params if not p.requires_grad]
    assert trainable and frozen
    assert {p.dtype for p in trainable} == {torch.float32}
    assert {p.dtype for p in frozen} == {torch.bfloat16}
    assert (loaded.compute_dtype, loaded.trainable_dtype) == (torch.bfloat16, torch.float32)
    assert compute_dtype(loaded.model) == torch.bfloat16 and trainable_dtype(loaded.model) == torch.float32
    # the frozen original of peft's projector copy stays bf16, its trainable copy is float32
    assert param(loaded.model, "original_module.linear_1.weight").dtype == torch.bfloat16
    assert param(loaded.model, PROJECTOR_WEIGHT).dtype == torch.float32


def test_bf16_forward_autocasts_and_backward_gives_float32_gradients(rows: list[dict]) -> None:
    loaded = load("bfloat16")
    seen: list[tuple[bool, torch.dtype]] = []
    projector = loaded.model.get_base_model().model.multi_modal_projector
    projector.register_forward_hook(lambda m, a, out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype)))
    out = loaded.model(**batch_of(loaded, rows))  # no context: the model's forward autocasts by itself
    assert seen == [(True, torch.bfloat16)]  # float32 projector weights, bf16 matmul
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)
    out.loss.backward()
    trainables = Trainables(loaded.model)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainables.params)
    lora_b = [p for n, p in trainables.items() if "lora_B" in n]
    assert lora_b and all(bool(p.grad.abs().sum() > 0) for p in lora_b)  # gradients reach the LoRA layers
    with autocast_for(loaded.model):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def adamw_step(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``weight`` after one AdamW step at lr 2e-5 with gradient ``grad`` (in ``weight``'s dtype)."""
    p = torch.nn.Parameter(weight.detach().clone())
    p.grad = grad.to(p.dtype)
    torch.optim.AdamW([p], lr=LR, weight_decay=0.0).step()
    return p.detach()


def test_one_step_at_lr_2e5_moves_every_float32_element_but_few_bf16_ones(rows: list[dict]) -> None:
    loaded = load("bfloat16")
    weight = param(loaded.model, PROJECTOR_WEIGHT)
    before = weight.detach().clone()
    with autocast_for(loaded.model):
        loss = loaded.model(**batch_of(loaded, rows)).loss
    loss.backward()
    grad = weight.grad.detach().clone()
    nonzero = grad != 0
    assert int(nonzero.sum()) > 0.9 * grad.numel()
    optimizer = torch.optim.AdamW([p for p in loaded.model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
    optimizer.step()
    moved = weight.detach() != before
    assert bool(moved[nonzero].all())  # float32 master weights: every element with a gradient moved

    # The same step on a bf16 copy of the tensor (no float32 master): most updates round away.
    bf16_before = before.to(torch.bfloat16)
    bf16_after = adamw_step(bf16_before, grad)
    unchanged = int((bf16_after == bf16_before)[nonzero].sum())
    total = int(nonzero.sum())
    print(f"bf16 copy: {unchanged} of {total} elements with a non-zero gradient unchanged after one step")
    assert unchanged > total // 2
    assert unchanged == int((bf16_after == bf16_before).sum()) - int((~nonzero).sum())


def test_trainer_turns_on_bf16_autocast_for_a_bf16_model_by_itself(rows: list[dict], tmp_path: Path) -> None:
    loaded = load("bfloat16")
    base = loaded.model.get_base_model()
    del base.forward  # the class's forward: only the Trainer's autocast is left
    seen: list[tuple[bool, torch.dtype]] = []
    base.model.multi_modal_projector.register_forward_pre_hook(
        lambda m, a: seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))))
    trainables = Trainables(loaded.model)
    before = trainables.snapshot()
    spec = TrainSpec(max_steps=2, batch_size=4, lr=LR, scheduler="constant", warmup_ratio=0.0)
    result = train_stage(loaded.model, loaded.processor, rows, Finetune(), TaskInfo(0, "color", ()), trainables,
                         spec, tmp_path / "trainer", seed=0)
    assert result.steps == 2
    assert seen == [(True, torch.bfloat16)] * 2
    assert {p.dtype for p in trainables.params} == {torch.float32}  # the Trainer casts nothing back
    after = trainables.snapshot()
    assert any(not torch.equal(before[n], after[n]) for n in trainables.names)


def test_greedy_generation_on_the_bf16_model_returns_strings(test_rows: list[dict]) -> None:
    loaded = load("bfloat16")
    training = loaded.model.training
    records = generate_predictions(loaded.model, loaded.processor, test_rows, batch_size=4, max_new_tokens=4)
    assert [r["id"] for r in records] == [r["question_id"] for r in test_rows]
    assert all(isinstance(r["prediction"], str) for r in records)
    assert loaded.model.training == training
    assert {p.dtype for p in loaded.model.parameters() if p.requires_grad} == {torch.float32}


def test_float32_is_left_untouched(rows: list[dict]) -> None:
    loaded = load("float32")
    model = loaded.model
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert (loaded.compute_dtype, loaded.trainable_dtype) == (torch.float32, torch.float32)
    assert getattr(model, COMPUTE_DTYPE_ATTR, None) is None
    assert "forward" not in vars(model.get_base_model())  # the class's own forward
    assert isinstance(autocast_for(model), contextlib.nullcontext)
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = [p.data_ptr() for p in model.parameters()]
    assert keep_trainables_fp32(model) == torch.float32  # a second call is a no-op too
    assert [p.data_ptr() for p in model.parameters()] == data
    assert all(torch.equal(state[n], p) for n, p in model.named_parameters())
    seen: list[bool] = []
    model.get_base_model().model.multi_modal_projector.register_forward_pre_hook(
        lambda m, a: seen.append(torch.is_autocast_enabled("cpu")))
    model(**batch_of(loaded, rows))
    assert seen == [False]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_plain_module_low_precision(dtype: torch.dtype) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4)).to(dtype)
    model[0].requires_grad_(False)
    assert keep_trainables_fp32(model) == torch.float32
    assert (model[0].weight.dtype, model[1].weight.dtype) == (dtype, torch.float32)
    assert compute_dtype(model) == dtype
    out = model(torch.randn(2, 8, dtype=dtype))
    assert out.dtype == dtype  # the float32 layer ran under autocast
    out.float().sum().backward()
    assert model[1].weight.grad.dtype == torch.float32 and model[0].weight.grad is None
    forward = model.forward
    keep_trainables_fp32(model)  # idempotent: the forward is not wrapped twice
    assert model.forward == forward
