"""EProj: one projector per task, shared LoRA, test-time projector chosen by instructions or (oracle) by name."""

import pytest
import torch

from cvqa_bench.methods.base import TaskContext, TaskInfo, Trainables
from cvqa_bench.methods.eproj import EProj, prompt_scores, route_projector, select_projector

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


def test_a_tie_is_broken_by_the_prompts_and_named_when_it_cannot_be():
    # one vectorizer on the three prompts: the query's vector is book 0's (cosine 1), book 1 shares no word (0)
    assert prompt_scores(["red apple"], [["red apple"], ["green pear"]]) == pytest.approx([1.0, 0.0])
    books = [[COLOR], [COLOR], [COUNT]]
    prompt_books = [["Is the green pear ripe?"], ["Is the red apple ripe?"], ["How many?"]]
    decided = route_projector((COLOR,), books, 0.0, ["<image>\nIs the  red apple sweet?"], prompt_books)
    assert (decided.index, decided.tied, decided.ambiguous) == (1, [0, 1], False)
    assert decided.prompt_scores[1] > decided.prompt_scores[0]
    # no prompts to tell them apart: the first, and the decision says it was a guess
    guess = route_projector((COLOR,), books, 0.0)
    assert (guess.index, guess.tied, guess.ambiguous) == (0, [0, 1], True)
    assert guess.record(["a", "b", "c"])["ambiguous"] is True
    # a single best instruction score is never second-guessed by the prompts
    assert select_projector((COUNT,), books, 0.0, ["Is the red apple sweet?"], prompt_books) == 2


def test_coin8_standin_routing_table():
    """The coin8 stand-in: which tasks EProj tells apart (docs/methods.md, "EProj routing on CoIN")."""
    from coin_standins import TASKS, _test_rows, _train_rows

    from cvqa_bench.config import load_sequence
    from cvqa_bench.data.coin import extract_instruction

    rules = {t.name: t.instruction for t in load_sequence("coin8")[0].tasks}
    infos = [TaskInfo(i, name, tuple(dict.fromkeys(extract_instruction(r["conversations"][0]["value"], rules[name])
                                                   for r in _train_rows(name))),
                      test_prompts=tuple(r["text"] for r in _test_rows(name))) for i, name in enumerate(TASKS)]
    method = EProj()
    method.setup(infos)
    for info in infos:
        method.train_rows(info, _train_rows(info.name))
        method.trained.append(info)
    decisions = method.records()["decisions"]
    vqa_style = ["TextVQA", "GQA", "VizWiz", "VQAv2", "OCRVQA"]  # one shared instruction: an exact tie
    for name in ("ScienceQA", "ImageNet", "Grounding"):  # an instruction of their own
        assert decisions[name]["to"] == name and "tied" not in decisions[name]
    for name in vqa_style:
        assert decisions[name]["tied"] == vqa_style and decisions[name]["ambiguous"] is False
    # VizWiz's own instruction line and OCR-VQA's book questions win the tie-break
    assert decisions["VizWiz"]["to"] == "VizWiz" and decisions["OCRVQA"]["to"] == "OCRVQA"
    # TextVQA, GQA and VQAv2 ask open image questions: they are confused among themselves only
    for name in ("TextVQA", "GQA", "VQAv2"):
        assert decisions[name]["to"] in {"TextVQA", "GQA", "VQAv2"}


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
