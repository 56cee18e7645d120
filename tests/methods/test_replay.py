"""Replay: seeded selection, budgets as count and fraction, reservoir bound, resume from state."""

import json

import pytest
from pydantic import ValidationError
from torch import nn

from cvqa_bench.methods.base import TaskContext, TaskInfo, Trainables
from cvqa_bench.methods.replay import Replay, rows_to_keep

TASKS = [TaskInfo(i, name, ("q",)) for i, name in enumerate(["A", "B", "C"])]


def rows(n: int, tag: str) -> list[dict]:
    # ids repeat across tasks on purpose (buffers key rows by (task, id))
    return [
        {"id": str(i), "image": None, "conversations": [{"from": "human", "value": f"{tag}{i}"}]} for i in range(n)
    ]


def ctx(i: int) -> TaskContext:
    model = nn.Linear(1, 1)
    return TaskContext(stage=i + 1, task=TASKS[i], tasks=TASKS, trainables=Trainables(model))


def run(method: Replay, sizes: list[int]) -> list[list[dict]]:
    """Train every task with ``sizes[i]`` rows; return the rows each stage was given."""
    given = []
    for i, n in enumerate(sizes):
        given.append(method.train_rows(TASKS[i], rows(n, TASKS[i].name)))
        method.after_task(ctx(i))
    return given


def test_same_seed_same_selection_other_seed_other_selection() -> None:
    methods = [Replay(Replay.Options(budget=10), seed=s) for s in (1, 1, 2)]
    for method in methods:
        run(method, [100, 100])
    first, again, other = (m.records()["selected"] for m in methods)
    assert len(first) == 20 and len(set(map(tuple, first))) == 20
    assert first == again
    assert first != other


def test_budget_as_count_and_as_fraction() -> None:
    assert rows_to_keep(5, 20) == 5 and rows_to_keep(50, 20) == 20  # a count, capped at the task size
    assert rows_to_keep(0.25, 20) == 5 and rows_to_keep(0.01, 20) == 1  # rounded, at least one row
    for budget in (5, 0.25):
        method = Replay(Replay.Options(budget=budget), seed=0)
        given = run(method, [20, 20, 20])
        assert [len(g) for g in given] == [20, 20 + 5, 20 + 10]
        assert [task for task, _ in method.records()["buffer"]] == ["A"] * 5 + ["B"] * 5 + ["C"] * 5


def test_train_rows_adds_copies_of_earlier_rows_and_selects_from_originals_only() -> None:
    method = Replay(Replay.Options(budget=3), seed=0)
    run(method, [10])
    own = rows(4, "B")
    given = method.train_rows(TASKS[1], own)
    assert given[:4] == own
    replayed = given[4:]
    assert len(replayed) == 3 and all(r["conversations"][0]["value"].startswith("A") for r in replayed)
    replayed[0]["conversations"][0]["value"] = "changed by the trainer"
    assert all(e["row"]["conversations"][0]["value"] != "changed by the trainer" for e in method.buffer)
    method.after_task(ctx(1))
    b_entries = [e for e in method.buffer if e["task"] == "B"]
    assert len(b_entries) == 3 and all(e["row"]["conversations"][0]["value"].startswith("B") for e in b_entries)


def test_reservoir_never_exceeds_its_size() -> None:
    method = Replay(Replay.Options(strategy="reservoir", budget=1, max_buffer=7), seed=3)
    given = run(method, [20, 20, 20])
    assert [len(g) for g in given] == [20, 27, 27]
    assert len(method.buffer) == 7 and method.n_seen == 60
    # 7 of 60 rows kept uniformly: with this seed the later tasks displaced some of A's rows
    assert {e["task"] for e in method.buffer} != {"A"}


def test_reservoir_size_defaults_to_an_integer_budget() -> None:
    method = Replay(Replay.Options(strategy="reservoir", budget=4), seed=0)
    run(method, [10, 10])
    assert len(method.buffer) == 4


def test_resume_from_extra_state_repeats_exactly() -> None:
    options = Replay.Options(strategy="reservoir", max_buffer=5)
    reference = Replay(options, seed=7)
    run(reference, [12, 12, 12])
    first = Replay(options, seed=7)
    run(first, [12])
    resumed = Replay(options, seed=7)
    resumed.load_state({}, json.loads(json.dumps(first.extra_state())))
    for i in (1, 2):
        resumed.train_rows(TASKS[i], rows(12, TASKS[i].name))
        resumed.after_task(ctx(i))
    assert resumed.records() == reference.records()
    assert resumed.buffer == reference.buffer


def test_after_task_without_train_rows_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="without its train_rows"):
        Replay().after_task(ctx(0))


def test_a_row_without_id_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="row 1 of task 'A'"):
        Replay().train_rows(TASKS[0], [{"id": "0"}, {"image": None}])


@pytest.mark.parametrize(
    "options",
    [
        {"budget": 0},
        {"budget": 1.5},
        {"budget": 0.0},
        {"budget": True},
        {"budget": 3, "max_buffer": 10},  # max_buffer is for the reservoir only
        {"strategy": "reservoir", "budget": 0.5},  # a reservoir needs a size
        {"strategy": "fifo"},
        {"budgett": 3},
    ],
)
def test_options_reject_invalid_values(options: dict) -> None:
    with pytest.raises(ValidationError):
        Replay.Options(**options)


def test_fixed_memory_is_experience_balanced_as_avalanche() -> None:
    from cvqa_bench.methods.replay import balanced_lengths

    # Avalanche get_group_lengths(adaptive): max_size // n each, the remainder to the first groups
    assert [balanced_lengths(7, n) for n in (1, 2, 3)] == [[7], [4, 3], [3, 2, 2]]
    method = Replay(Replay.Options(memory="fixed", max_buffer=7), seed=3)
    given = run(method, [10, 10, 1])
    replayed = [[r["conversations"][0]["value"][0] for r in stage[n:]] for stage, n in zip(given, [10, 10, 1])]
    # stage 1 replays nothing; stage 2: 7 rows of A; stage 3: 4 of A + 3 of B
    assert [[r.count(t) for t in "AB"] for r in replayed] == [[0, 0], [7, 0], [4, 3]]
    # after C: shares 3, 2, 2, but C has one row: 3 + 2 + 1 rows kept
    assert [e["task"] for e in method.buffer] == ["A"] * 3 + ["B"] * 2 + ["C"]
    # a shrinking share keeps the first rows of the task's own draw
    stage2_a = [r["id"] for r in given[1][10:]]
    stage3_a = [r["id"] for r in given[2][1:5]]
    assert stage3_a == stage2_a[:4] and [str(e["row"]["id"]) for e in method.buffer[:3]] == stage2_a[:3]
    assert method.recorded_options() == {"memory": "fixed"}


def test_fixed_memory_needs_the_random_strategy_and_a_size() -> None:
    with pytest.raises(ValidationError, match="set max_buffer"):
        Replay.Options(memory="fixed")
    with pytest.raises(ValidationError, match="set max_buffer"):
        Replay.Options(memory="fixed", strategy="reservoir", max_buffer=5)
