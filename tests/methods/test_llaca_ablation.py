"""LLaCA's ablation switches (ema: dynamic|stable|off, grouping) and the alpha statistics, by hand."""

from __future__ import annotations

import pytest
import torch

from cvqa_bench.methods.base import StepContext, TaskInfo, Trainables
from cvqa_bench.methods.llaca import LLaCA
from test_llaca import GROUNDING, VQA, TwoTensors, set_weights, step, t, task_ctx

# the three steps of test_llaca.test_dynamic_ema_three_steps_by_hand: applied alphas
#   w: 0.01 (first step) | 2/3 (dynamic) | 0.01 (alpha = 12 >= 1)
#   v: 0.01 (first step) | 0.01 (c = 0: alpha not finite) | 6 / 11.94 (dynamic)
A_V = 6 / 11.94


def three_steps(method: LLaCA, model: TwoTensors, tasks: list[TaskInfo]) -> None:
    method.before_task(task_ctx(tasks, 0, model))
    step(method, model, tasks[0], 1, w=[1, 2], gw=[0.5, -0.5], v=[3], gv=[1])
    step(method, model, tasks[0], 2, w=[4, 4], gw=[1.5, -2.5], v=[5], gv=[1])
    step(method, model, tasks[0], 3, w=[3.5, 3.5], gw=[1.5, -1.5], v=[7], gv=[-2])
    method.after_task(task_ctx(tasks, 0, model))


@pytest.mark.parametrize("fused", [True, False])
def test_alpha_statistics_by_hand(fused: bool) -> None:
    model, tasks = TwoTensors(), [TaskInfo(0, "only", (VQA,))]
    method = LLaCA(LLaCA.Options(grouping=False, fused=fused))
    method.setup(tasks)
    three_steps(method, model, tasks)
    stats = method.records()["tasks"][0]["alpha"]
    assert stats["fallback_by_cause"] == pytest.approx({"first_step": 2 / 6, "alpha_ge_1": 1 / 6, "non_finite": 1 / 6})
    w, v = stats["tensors"]["w"], stats["tensors"]["v"]
    assert w["numel"] == 2 and v["numel"] == 1
    # retained = prod(1 - alpha) over the updates after the first step
    assert w["retained"] == pytest.approx((1 - 2 / 3) * 0.99, abs=1e-6)
    assert v["retained"] == pytest.approx(0.99 * (1 - A_V), abs=1e-6)
    assert stats["retained"]["min"] == pytest.approx(0.33, abs=1e-6)
    # w's alphas sorted: 0.01, 0.01, 2/3; linear interpolation at position q * 2
    spread = 2 / 3 - 0.01
    assert w["quantiles"] == pytest.approx({"p5": 0.01, "p25": 0.01, "p50": 0.01, "p75": 0.01 + 0.5 * spread,
                                            "p95": 0.01 + 0.9 * spread}, abs=1e-6)
    assert w["fallback_by_cause"] == pytest.approx({"first_step": 1 / 3, "alpha_ge_1": 1 / 3, "non_finite": 0})
    # all six: 0.01 x4, A_V, 2/3; the median sits at position 2.5 -> 0.01, p75 at 3.75
    assert stats["quantiles"]["p50"] == pytest.approx(0.01, abs=1e-6)
    assert stats["quantiles"]["p75"] == pytest.approx(0.01 + 0.75 * (A_V - 0.01), abs=1e-6)
    assert stats["steps"]["step"] == [1, 2, 3]
    assert stats["steps"]["fallback_fraction"] == pytest.approx([1.0, 0.5, 0.5])
    assert stats["steps"]["p50"] == pytest.approx([0.01, (2 / 3 + 0.01) / 2, (0.01 + A_V) / 2], abs=1e-6)


def test_stable_ema_uses_a_fixed_weight_of_099_on_the_old_weights() -> None:
    model, tasks = TwoTensors(), [TaskInfo(0, "only", (VQA,))]
    method = LLaCA(LLaCA.Options(grouping=False, ema="stable"))
    method.setup(tasks)
    three_steps(method, model, tasks)
    # theta* = [1, 2] -> 0.99 [1, 2] + 0.01 [4, 4] = [1.03, 2.02] -> 0.99 [1.03, 2.02] + 0.01 [3.5, 3.5]
    assert torch.allclose(model.w.detach(), t(0.99 * 1.03 + 0.035, 0.99 * 2.02 + 0.035), atol=1e-6)
    # v: 3 -> 0.99 * 3 + 0.05 = 3.02 -> 0.99 * 3.02 + 0.07
    assert torch.allclose(model.v.detach(), t(0.99 * 3.02 + 0.07), atol=1e-6)
    stats = method.records()["tasks"][0]["alpha"]
    assert stats["fallback_fraction"] == pytest.approx(2 / 6)  # only the first step's copy
    assert stats["tensors"]["w"]["retained"] == pytest.approx(0.99**2, abs=1e-6)


def test_ema_off_keeps_the_trained_weights() -> None:
    model, tasks = TwoTensors(), [TaskInfo(0, "only", (VQA,))]
    method = LLaCA(LLaCA.Options(grouping=False, ema="off"))
    method.setup(tasks)
    three_steps(method, model, tasks)
    assert torch.equal(model.w.detach(), t(3.5, 3.5)) and torch.equal(model.v.detach(), t(7))
    assert method.records()["tasks"][0]["ema_applied"] is False


def test_grouping_with_ema_off_isolates_grouping() -> None:
    model = TwoTensors()
    tasks = [TaskInfo(0, "a", (VQA,)), TaskInfo(1, "b", (GROUNDING,)), TaskInfo(2, "c", (VQA,))]
    method = LLaCA(LLaCA.Options(ema="off", threshold=0.9))
    method.setup(tasks)
    for i, (w, v) in enumerate([([1, 1], [1]), ([2, 2], [2]), ([3, 3], [3])]):
        method.before_task(task_ctx(tasks, i, model))
        if i == 2:  # c joins a's group: it starts from a's weights, not from b's
            assert torch.equal(model.w.detach(), t(1, 1))
        set_weights(model, w, v)
        model.w.grad, model.v.grad = t(1, 1), t(1)
        method.after_optimizer_step(StepContext(step=1, task=tasks[i], trainables=Trainables(model)))
        method.after_task(task_ctx(tasks, i, model))
    records = method.records()
    assert [r["group"] for r in records["tasks"]] == [0, 1, 0]
    assert [r["ema_applied"] for r in records["tasks"]] == [False, False, False]
    assert records["ema"] == "off" and records["grouping"] is True
    assert torch.equal(method.eval_state(tasks[0])["w"], t(3, 3))  # a is evaluated with its group's latest
    assert torch.equal(method.eval_state(tasks[1])["w"], t(2, 2))


def test_ablation_experiment_plans_every_table6_row_and_grouping_only() -> None:
    from cvqa_bench.config import PROJECT_ROOT
    from cvqa_bench.run.experiment import load_experiment, planned_runs

    runs = planned_runs(load_experiment(PROJECT_ROOT / "configs" / "ablation.yaml"))
    plan = {folder.name: (config.method.name, config.method.options or None) for folder, config in runs}
    assert len(plan) == 15  # 5 rows x 3 seeds
    assert plan["lora-seed0"] == ("finetune", None)
    for label, ema, grouping in (("stable-ema", "stable", False), ("dynamic-ema", "dynamic", False),
                                 ("llaca", "dynamic", True), ("grouping-only", "off", True)):
        method, options = plan[f"{label}-seed2"]
        assert method == "llaca" and (options["ema"], options["grouping"]) == (ema, grouping)
