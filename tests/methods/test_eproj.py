"""EProj: one projector per task, shared LoRA, test-time projector chosen by instructions or (oracle) by name."""

import pytest
import torch

from cvqa_bench.methods.base import TaskContext, TaskInfo, Trainables
from cvqa_bench.methods.eproj import EProj, select_projector

COLOR = "What is the color of the shape?"
COUNT = "How many shapes are there?"
GLYPH = "Name the glyph."
TASKS = [TaskInfo(0, "color", (COLOR,)), TaskInfo(1, "count", (COUNT,)), TaskInfo(2, "glyph", (GLYPH,))]


def test_select_projector_by_instructions():
    books = [[COLOR], [COUNT]]
    assert select_projector((COUNT,), books, 0.0) == 1  # identical strings: similarity 1 against 0
    assert select_projector((COLOR,), books, 0.0) == 0
    assert select_projector((GLYPH,), books, 0.0) == 1  # no shared word: the newest projector
    assert select_projector((COLOR,), [[COLOR], [COLOR]], 0.0) == 0  # ties: the first
    # "red apple" vs "red car": TF-IDF (smooth idf: red 1, apple/car 1 + ln 1.5) cosine = 1 / (1 + (1 + ln 1.5)^2)
    assert select_projector(("red apple",), [["red car"], ["green pear"]], 0.33) == 0
    assert select_projector(("red apple",), [["red car"], ["green pear"]], 0.34) == 1


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.multi_modal_projector = torch.nn.Linear(1, 1, bias=False)
        self.lora = torch.nn.Linear(1, 1, bias=False)


def train(method: EProj, model: Tiny, trainables: Trainables, task: TaskInfo, projector: float, lora: float) -> None:
    """One fake stage: before_task, 'training' sets the weights, after_task."""
    ctx = TaskContext(stage=task.index + 1, task=task, tasks=TASKS, trainables=trainables)
    method.before_task(ctx)
    assert model.multi_modal_projector.weight.item() == 0.5  # every projector starts as the base one
    with torch.no_grad():
        model.multi_modal_projector.weight.fill_(projector)
        model.lora.weight.fill_(lora)
    method.after_task(ctx)


def values(state: dict[str, torch.Tensor]) -> tuple[float, float]:
    return state["multi_modal_projector.weight"].item(), state["lora.weight"].item()


@pytest.mark.parametrize("oracle", [False, True])
def test_each_task_gets_its_own_projector_and_the_shared_lora(oracle):
    model = Tiny()
    with torch.no_grad():
        model.multi_modal_projector.weight.fill_(0.5)
    trainables = Trainables(model)
    method = EProj(EProj.Options(oracle=oracle))
    method.setup(TASKS)
    assert method.eval_state(TASKS[0]) is None  # nothing trained: the base model
    train(method, model, trainables, TASKS[0], projector=1.0, lora=10.0)
    train(method, model, trainables, TASKS[1], projector=2.0, lora=20.0)
    assert values(method.eval_state(TASKS[0])) == (1.0, 20.0)  # its projector, the latest LoRA
    assert values(method.eval_state(TASKS[1])) == (2.0, 20.0)
    assert values(method.eval_state(TASKS[2])) == (2.0, 20.0)  # untrained, no shared word: the newest
    # a task named like a trained one but with another's instructions: the oracle goes by name
    renamed = TaskInfo(0, "color", (COUNT,))
    assert values(method.eval_state(renamed)) == ((1.0, 20.0) if oracle else (2.0, 20.0))
    # saved and restored, it routes the same
    again = EProj(EProj.Options(oracle=oracle))
    again.setup(TASKS)
    again.load_state(method.state_dict(), method.extra_state())
    assert values(again.eval_state(TASKS[0])) == (1.0, 20.0)
    assert again.records()["routing"] == {"color": "color", "count": "count", "glyph": "count"}


def test_cvqa_run_refuses_eproj_without_a_trainable_projector(cvqa, small_sequence, tmp_path):
    result = cvqa("run", "--sequence", small_sequence, "--method", "eproj", "--set", "model.train_projector=false",
                  "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "needs model.train_projector: true" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()
