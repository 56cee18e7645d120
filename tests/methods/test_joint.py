"""joint and cumulative: which rows each stage trains on and which weights it starts from."""

from __future__ import annotations

import torch

from cvqa_bench.methods.base import TaskContext, TaskInfo, Trainables
from cvqa_bench.methods.joint import Cumulative, Joint

TASKS = [TaskInfo(i, name, ("q",)) for i, name in enumerate(("a", "b", "c"))]
ROWS = {t.name: [{"id": f"{t.name}{k}", "image": None, "conversations": []} for k in range(2)] for t in TASKS}


class One(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0]))


def ctx(model: torch.nn.Module, i: int) -> TaskContext:
    return TaskContext(stage=i + 1, task=TASKS[i], tasks=TASKS, trainables=Trainables(model))


def ids(rows: list[dict]) -> list[str]:
    return [r["id"] for r in rows]


def test_joint_trains_once_on_every_task_from_the_base() -> None:
    model, method = One(), Joint()
    method.setup(TASKS)
    for i in (0, 1):
        assert method.train_rows(TASKS[i], ROWS[TASKS[i].name]) == []  # stages 1, 2 train nothing
        method.before_task(ctx(model, i))
        method.after_task(ctx(model, i))
    with torch.no_grad():
        model.w.fill_(5.0)  # whatever the model holds now, the trained stage starts from the base
    assert ids(method.train_rows(TASKS[2], ROWS["c"])) == ["a0", "a1", "b0", "b1", "c0", "c1"]
    method.before_task(ctx(model, 2))
    assert model.w.item() == 1.0
    method.after_task(ctx(model, 2))
    assert method.records()["trained_on"] == {"a": [], "b": [], "c": ["a", "b", "c"]}


def test_cumulative_retrains_on_all_seen_tasks_and_resumes_its_rows() -> None:
    model, method = One(), Cumulative()
    method.setup(TASKS)
    assert ids(method.train_rows(TASKS[0], ROWS["a"])) == ["a0", "a1"]
    method.before_task(ctx(model, 0))
    with torch.no_grad():
        model.w.fill_(3.0)  # stage 1 trained
    method.after_task(ctx(model, 0))
    again = Cumulative()  # a resumed run: the rows seen so far come from the saved state
    again.setup(TASKS)
    again.load_state(method.state_dict(), method.extra_state())
    assert ids(again.train_rows(TASKS[1], ROWS["b"])) == ["a0", "a1", "b0", "b1"]
    again.before_task(ctx(model, 1))
    assert model.w.item() == 1.0  # back to the base weights


def test_cumulative_start_previous_continues_from_the_last_stage_as_avalanche() -> None:
    starts = {}
    for start in ("base", "previous"):
        model, method = One(), Cumulative(Cumulative.Options(start=start))
        method.setup(TASKS)
        seen = []
        for i, trained_to in enumerate((3.0, 7.0, 9.0)):
            rows = method.train_rows(TASKS[i], ROWS[TASKS[i].name])
            method.before_task(ctx(model, i))
            seen.append((len(rows), model.w.item()))
            with torch.no_grad():
                model.w.fill_(trained_to)  # what stage i + 1 trained the weight to
            method.after_task(ctx(model, i))
        starts[start] = seen
        assert method.records()["start"] == start and method.recorded_options() == {"start": start}
    # every stage trains on all rows so far (2, 4, 6); base: each starts at the base 1.0, previous: at 3.0, 7.0
    assert starts["base"] == [(2, 1.0), (4, 1.0), (6, 1.0)]
    assert starts["previous"] == [(2, 1.0), (4, 3.0), (6, 7.0)]
