"""LLaCA: dynamic alpha by hand, fused == loop, the CoIN schedule, group loading/routing, resume."""

import json

import pytest
import safetensors.torch
import torch
from pydantic import ValidationError
from torch import nn

from cvqa_bench.methods.base import StepContext, TaskContext, TaskInfo, Trainables
from cvqa_bench.methods.ema_update import dynamic_ema_step_fused, dynamic_ema_step_loop
from cvqa_bench.methods.llaca import FALLBACK_ALPHA, LLaCA, dynamic_alpha

SQA = "Answer with the option's letter from the given choices directly."
VQA = "Answer the question using a single word or phrase."
IMAGENET = "What is the object in the image?"
GROUNDING = "Please provide the bounding box coordinate of the region this sentence describes"


class TwoTensors(nn.Module):
    """w: 2 values, v: 1 value."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.v = nn.Parameter(torch.zeros(1))


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def set_weights(model: TwoTensors, w: list[float], v: list[float]) -> None:
    with torch.no_grad():
        model.w.copy_(t(*w))
        model.v.copy_(t(*v))


def step(method: LLaCA, model: TwoTensors, task: TaskInfo, n: int, w, gw, v, gv) -> None:
    """Pretend the optimizer moved the weights to (w, v) with gradients (gw, gv), then call the hook."""
    set_weights(model, w, v)
    model.w.grad, model.v.grad = t(*gw), t(*gv)
    method.after_optimizer_step(StepContext(step=n, task=task, trainables=Trainables(model)))


def task_ctx(tasks: list[TaskInfo], i: int, model: nn.Module) -> TaskContext:
    return TaskContext(stage=i + 1, task=tasks[i], tasks=tasks, trainables=Trainables(model))


# ---------------------------------------------------------------- dynamic_alpha


def test_dynamic_alpha_in_range_by_hand() -> None:
    # a = |4-1| + |4-2| = 5; b = 1.5 + 2.5 = 4; c = |1.5-0.5| + |-2.5+0.5| = 3
    # alpha = 2 (1 + 4) / (5 * 3) = 10 / 15 = 0.6666667
    alpha = dynamic_alpha(t(4, 4), t(1, 2), t(1.5, -2.5), t(0.5, -0.5))
    assert alpha == pytest.approx(2 / 3, abs=1e-6)


def test_dynamic_alpha_fallbacks() -> None:
    p, ema, g, g_prev = t(4, 4), t(1, 2), t(1.5, -2.5), t(0.5, -0.5)
    assert dynamic_alpha(p, ema, g, None) == FALLBACK_ALPHA == 0.01  # first step
    assert dynamic_alpha(p, p.clone(), g, g_prev) == 0.01  # zero drift: a = 0, division by zero
    assert dynamic_alpha(p, ema, g, g.clone()) == 0.01  # zero gradient change: c = 0
    # a = 2/3, b = 3, c = 1 -> alpha = 2 * 4 / (2/3) = 12, outside (0, 1)
    assert dynamic_alpha(t(3.5, 3.5), t(3, 10 / 3), t(1.5, -1.5), t(1.5, -2.5)) == 0.01
    assert dynamic_alpha(p, ema, t(float("nan"), 0), g_prev) == 0.01  # non-finite
    assert dynamic_alpha(p, ema, g, None, fallback=0.05) == 0.05


# ---------------------------------------------------------------- the update, 3 steps by hand


@pytest.mark.parametrize("fused", [True, False])
def test_dynamic_ema_three_steps_by_hand(fused: bool) -> None:
    model = TwoTensors()
    tasks = [TaskInfo(0, "only", (VQA,))]
    method = LLaCA(LLaCA.Options(grouping=False, fused=fused))  # grouping off: EMA on for every task
    method.setup(tasks)
    method.before_task(task_ctx(tasks, 0, model))
    # step 1: theta* = copy(p); no previous gradient -> fallback, theta* stays p
    step(method, model, tasks[0], 1, w=[1, 2], gw=[0.5, -0.5], v=[3], gv=[1])
    assert torch.allclose(method.dynamic.ema["w"], t(1, 2)) and torch.allclose(method.dynamic.ema["v"], t(3))
    # step 2, w: a = 5, b = 4, c = 3 -> alpha = 2/3; theta*_w = 1/3 [1, 2] + 2/3 [4, 4] = [3, 10/3]
    #         v: g = g_prev -> c = 0 -> fallback; theta*_v = 0.99 * 3 + 0.01 * 5 = 3.02
    step(method, model, tasks[0], 2, w=[4, 4], gw=[1.5, -2.5], v=[5], gv=[1])
    assert torch.allclose(method.dynamic.ema["w"], t(3, 10 / 3), atol=1e-6)
    assert torch.allclose(method.dynamic.ema["v"], t(3.02), atol=1e-6)
    # step 3, w: a = 0.5 + 1/6 = 2/3, b = 3, c = 0 + 1 = 1 -> alpha = 12 -> fallback 0.01
    #            theta*_w = 0.99 [3, 10/3] + 0.01 [3.5, 3.5] = [3.005, 3.335]
    #         v: a = 7 - 3.02 = 3.98, b = 2, c = |-2 - 1| = 3 -> alpha = 6 / 11.94 = 0.5025126
    #            theta*_v = 3.02 + alpha * 3.98 = 3.02 + 2 = 5.02
    step(method, model, tasks[0], 3, w=[3.5, 3.5], gw=[1.5, -1.5], v=[7], gv=[-2])
    assert torch.allclose(method.dynamic.ema["w"], t(3.005, 3.335), atol=1e-6)
    assert torch.allclose(method.dynamic.ema["v"], t(5.02), atol=1e-6)
    assert torch.equal(method.dynamic.prev_grad["w"], t(1.5, -1.5))
    assert torch.equal(method.dynamic.prev_grad["v"], t(-2))
    method.after_task(task_ctx(tasks, 0, model))
    # the EMA weights are written into the model
    assert torch.allclose(model.w, t(3.005, 3.335), atol=1e-6) and torch.allclose(model.v, t(5.02), atol=1e-6)
    # applied alphas: 0.01, 0.01 | 2/3, 0.01 | 0.01, 0.5025126 -> 6 updates, 4 fallbacks
    stats = method.records()["tasks"][0]["alpha"]
    assert stats["n_updates"] == 6
    assert stats["fallback_fraction"] == pytest.approx(4 / 6)
    assert stats["mean"] == pytest.approx((4 * 0.01 + 2 / 3 + 6 / 11.94) / 6, abs=1e-6)
    assert stats["min"] == pytest.approx(0.01) and stats["max"] == pytest.approx(2 / 3, abs=1e-6)


def test_fused_and_loop_paths_agree_over_several_steps() -> None:
    gen = torch.Generator().manual_seed(0)
    shapes = [(3,), (4, 5), (2, 3, 4), (1,), (7, 2)]

    def rand(shape, scale=1.0):
        return torch.randn(shape, generator=gen) * scale

    params = [rand(s) for s in shapes]
    ema = {"fused": [p + rand(p.shape, 0.1) for p in params]}
    ema["loop"] = [e.clone() for e in ema["fused"]]
    prev = {"fused": [rand(s) for s in shapes]}
    prev["loop"] = [g.clone() for g in prev["fused"]]
    fell_back_seen = []
    for n in range(6):
        # drift scales vary from tiny (alpha > 1 -> fallback) to large (alpha in range)
        params = [p + rand(p.shape, 10.0 ** (n % 3 - 1)) for p in params]
        grads = [rand(s, 5.0) for s in shapes]
        if n == 2:
            grads[0] = prev["fused"][0].clone()  # zero gradient change: division by zero -> fallback
        out = {}
        for path, fn in (("fused", dynamic_ema_step_fused), ("loop", dynamic_ema_step_loop)):
            out[path] = fn(params, ema[path], [g.clone() for g in grads], prev[path])
        assert torch.allclose(out["fused"][0], out["loop"][0], atol=1e-6)
        assert torch.equal(out["fused"][1], out["loop"][1])
        for a, b in zip(ema["fused"] + prev["fused"], ema["loop"] + prev["loop"]):
            assert torch.allclose(a, b, atol=1e-6)
        fell_back_seen.extend(out["loop"][1].tolist())
    assert any(fell_back_seen) and not all(fell_back_seen)  # both branches were exercised


# ---------------------------------------------------------------- decisions


def coin_tasks() -> list[TaskInfo]:
    names = ["ScienceQA", "TextVQA", "ImageNet", "GQA", "VizWiz", "Grounding", "VQAv2", "OCRVQA"]
    instructions = [SQA, VQA, IMAGENET, VQA, VQA, GROUNDING, VQA, VQA]
    return [TaskInfo(i, n, (s,)) for i, (n, s) in enumerate(zip(names, instructions))]


def test_coin_plan_reproduces_the_official_schedule_table() -> None:
    method = LLaCA()
    method.setup(coin_tasks())
    rows = {r["task"]: r for r in method.records()["tasks"]}
    expected = {  # task: (group, dynamic EMA, starts from) -- docs/methods.md, "Instruction grouping"
        "ScienceQA": (0, False, "previous"), "TextVQA": (1, False, "previous"),
        "ImageNet": (2, False, "previous"), "GQA": (1, True, "group"), "VizWiz": (1, True, "group"),
        "Grounding": (3, False, "previous"), "VQAv2": (1, True, "group"), "OCRVQA": (1, True, "group"),
    }
    assert {n: (r["group"], r["ema"], r["start_from"]) for n, r in rows.items()} == expected
    # GQA vs ScienceQA share only "answer" among 6 + 6 words; idf(shared) = 1, idf(other) = ln(1.5) + 1
    # cosine = 1 / (1 + 5 * 1.4054651^2) = 1 / 10.876660 = 0.0919400
    assert rows["GQA"]["scores"] == pytest.approx([0.0919400, 1.0, 0.0], abs=1e-7)
    assert all(r["overridden"] == [] for r in rows.values())


def test_overrides_are_applied_and_recorded() -> None:
    overrides = {"GQA": {"ema": False}, "ImageNet": {"group": 0}, "TextVQA": {"start_from": "base"}}
    method = LLaCA(LLaCA.Options(overrides=overrides))
    method.setup(coin_tasks())
    rows = {r["task"]: r for r in method.records()["tasks"]}
    assert (rows["GQA"]["group"], rows["GQA"]["ema"], rows["GQA"]["overridden"]) == (1, False, ["ema"])
    assert (rows["ImageNet"]["group"], rows["ImageNet"]["ema"], rows["ImageNet"]["start_from"]) == (0, True, "group")
    assert rows["TextVQA"]["start_from"] == "base"
    assert rows["Grounding"]["group"] == 2  # ImageNet no longer opened a group


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"NotATask": {"ema": True}}, "not in the sequence"),
        ({"TextVQA": {"group": 5}}, "skips ahead"),
        ({"ImageNet": {"start_from": "group"}}, "no weights yet"),
        ({"GQA": {"start_from": "scratch"}}, "not an earlier task"),
        ({"GQA": {"start_from": "VQAv2"}}, "not an earlier task"),
        ({"GQA": {"eval_with": "MNIST"}}, "not a task of the sequence"),
    ],
)
def test_invalid_overrides_fail_in_setup(overrides: dict, message: str) -> None:
    method = LLaCA(LLaCA.Options(overrides=overrides))
    with pytest.raises(ValueError, match=message):
        method.setup(coin_tasks())


@pytest.mark.parametrize(
    "options",
    [
        {"threshold": 1.5},
        {"fallback": 1.0},
        {"grouping": True, "treshold": 0.3},
        {"overrides": {"A": {"emma": 1}}},
        {"variant": "neurips"},
        {"ema_dtype": "bfloat16"},
        {"alpha_gradient": "micro"},
        {"schedule": "official"},
    ],
)
def test_options_reject_invalid_values_and_typos(options: dict) -> None:
    with pytest.raises(ValidationError):
        LLaCA.Options(**options)


def test_grouping_off_puts_every_task_in_group_zero_with_ema_on() -> None:
    method = LLaCA(LLaCA.Options(grouping=False))
    method.setup(coin_tasks())
    assert {(r["group"], r["ema"]) for r in method.records()["tasks"]} == {(0, True)}


# ---------------------------------------------------------------- hooks end to end


def test_groups_load_and_route_the_right_weights() -> None:
    model = TwoTensors()
    set_weights(model, [0, 0], [0])  # the base model
    tasks = [TaskInfo(0, "A", (VQA,)), TaskInfo(1, "B", (GROUNDING,)), TaskInfo(2, "C", (VQA,))]
    unseen_match, unseen_other = TaskInfo(3, "D", (GROUNDING,)), TaskInfo(4, "E", (IMAGENET,))
    method = LLaCA()
    method.setup(tasks + [unseen_match, unseen_other])
    assert [r["group"] for r in method.records()["tasks"]][:3] == [0, 1, 0]
    assert method.eval_state(tasks[0]) is None  # zero-shot: no group yet

    method.before_task(task_ctx(tasks, 0, model))  # new group 0, EMA off
    step(method, model, tasks[0], 1, w=[1, 1], gw=[1, 1], v=[1], gv=[1])
    assert method.dynamic.ema == {}  # EMA off: nothing tracked
    method.after_task(task_ctx(tasks, 0, model))
    assert torch.equal(method.eval_state(tasks[0])["w"], t(1, 1))

    set_weights(model, [9, 9], [9])  # e.g. evaluation left other weights in the model
    method.before_task(task_ctx(tasks, 1, model))  # new group 1 starts from the previous task (A)
    assert torch.equal(model.w, t(1, 1)) and torch.equal(model.v, t(1))
    step(method, model, tasks[1], 1, w=[2, 2], gw=[1, 1], v=[2], gv=[1])
    method.after_task(task_ctx(tasks, 1, model))

    method.before_task(task_ctx(tasks, 2, model))  # joins group 0: starts from A's weights, EMA on
    assert torch.equal(model.w, t(1, 1)) and torch.equal(model.v, t(1))
    step(method, model, tasks[2], 1, w=[3, 3], gw=[1, 1], v=[3], gv=[1])  # theta* = [3, 3], [3]
    step(method, model, tasks[2], 2, w=[5, 5], gw=[1, 1], v=[5], gv=[1])  # c = 0 -> 0.01
    method.after_task(task_ctx(tasks, 2, model))
    # theta* = 0.99 * 3 + 0.01 * 5 = 3.02 everywhere, written into the model and kept as group 0
    assert torch.allclose(model.w, t(3.02, 3.02)) and torch.allclose(model.v, t(3.02))

    assert torch.allclose(method.eval_state(tasks[0])["w"], t(3.02, 3.02))  # A -> group 0, latest
    assert torch.equal(method.eval_state(tasks[1])["w"], t(2, 2))  # B -> group 1
    assert torch.equal(method.eval_state(unseen_match)["w"], t(2, 2))  # routed by its instruction
    assert torch.equal(method.eval_state(unseen_other)["v"], t(2))  # no match: last created group (1)
    assert method.codebooks() == [[VQA], [GROUNDING]]


def test_start_from_base_loads_the_base_snapshot() -> None:
    model = TwoTensors()
    set_weights(model, [7, 7], [7])
    tasks = [TaskInfo(0, "A", (VQA,)), TaskInfo(1, "B", (GROUNDING,))]
    method = LLaCA(LLaCA.Options(overrides={"B": {"start_from": "base"}}))
    method.setup(tasks)
    method.before_task(task_ctx(tasks, 0, model))
    set_weights(model, [1, 1], [1])
    method.after_task(task_ctx(tasks, 0, model))
    method.before_task(task_ctx(tasks, 1, model))
    assert torch.equal(model.w, t(7, 7)) and torch.equal(model.v, t(7))


def run_steps(method: LLaCA, model: TwoTensors, task: TaskInfo, steps: range) -> None:
    for n in steps:  # deterministic weights and gradients per step, different per tensor
        step(method, model, task, n, w=[n, 2 * n * n], gw=[n % 2, -n], v=[3 * n], gv=[(-1) ** n * n])


def test_resume_mid_task_continues_exactly() -> None:
    tasks = [TaskInfo(0, "A", (VQA,)), TaskInfo(1, "B", (VQA,))]
    reference_model, reference = TwoTensors(), LLaCA()
    reference.setup(tasks)
    for i, task in enumerate(tasks):
        reference.before_task(task_ctx(tasks, i, reference_model))
        run_steps(reference, reference_model, task, range(1, 6))
        reference.after_task(task_ctx(tasks, i, reference_model))

    model, first = TwoTensors(), LLaCA()
    first.setup(tasks)
    first.before_task(task_ctx(tasks, 0, model))
    run_steps(first, model, tasks[0], range(1, 6))
    first.after_task(task_ctx(tasks, 0, model))
    first.before_task(task_ctx(tasks, 1, model))
    run_steps(first, model, tasks[1], range(1, 3))
    tensors = safetensors.torch.load(safetensors.torch.save(first.state_dict()))  # must survive safetensors
    extra = json.loads(json.dumps(first.extra_state()))  # and JSON
    assert {"group.0.w", "group.0.v", "ema.w", "prev_grad.v", "alpha_stats.sum"} <= set(tensors)

    resumed = LLaCA()
    resumed.setup(tasks)
    resumed.load_state(tensors, extra)
    resumed.before_task(task_ctx(tasks, 1, model))  # same task in progress: the EMA state is kept
    run_steps(resumed, model, tasks[1], range(3, 6))
    resumed.after_task(task_ctx(tasks, 1, model))
    assert torch.equal(model.w, reference_model.w) and torch.equal(model.v, reference_model.v)
    assert resumed.records() == reference.records()
    assert torch.equal(resumed.eval_state(tasks[0])["w"], reference.eval_state(tasks[0])["w"])


def test_load_state_rejects_a_changed_plan() -> None:
    tasks = [TaskInfo(0, "A", (VQA,)), TaskInfo(1, "B", (VQA,))]
    saved = LLaCA()
    saved.setup(tasks)
    changed = LLaCA(LLaCA.Options(overrides={"B": {"ema": False}}))
    changed.setup(tasks)
    with pytest.raises(ValueError, match="differ from the saved"):
        changed.load_state({}, saved.extra_state())
