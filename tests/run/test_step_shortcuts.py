"""The Trainer's per-step shortcuts (run/training/step_shortcuts.py) change no byte of a run, and do what the
calls they replace do."""

from __future__ import annotations

import contextlib
import sys

import pytest
import torch

from cvqa_bench.run.training import step_shortcuts as shortcuts


def run(cvqa, out, config, sequence):
    # llaca: its EMA reads the gradients every step; max_grad_norm 0.05 makes the clipping scale them.
    result = cvqa("run", "--config", config, "--sequence", sequence, "--out", out, "--method", "llaca",
                  "--set", "train.max_steps=8", "--set", "train.max_grad_norm=0.05")
    assert result.exit_code == 0, result.output
    return out


def test_a_run_with_the_shortcuts_writes_the_same_bytes_as_without(cvqa, tmp_path, small_config, small_sequence,
                                                                    monkeypatch):
    installed = []
    real = shortcuts.step_shortcuts

    @contextlib.contextmanager
    def spy(model, single_process):
        with real(model, single_process) as params:
            installed.append(sorted(name for name in ("train", "zero_grad") if name in vars(model)))
            yield params

    monkeypatch.setattr("cvqa_bench.run.training.train.step_shortcuts", spy)
    fast = run(cvqa, tmp_path / "fast", small_config, small_sequence)
    monkeypatch.setattr(shortcuts, "ENABLED", False)
    plain = run(cvqa, tmp_path / "plain", small_config, small_sequence)
    assert installed == [["train", "zero_grad"]] * 3 + [[]] * 3
    stages = sorted(p.name for p in (fast / "stages").iterdir())
    assert len(stages) == 3
    for stage in stages:
        tensors = sorted(p.name for p in (plain / "stages" / stage).glob("*.safetensors"))
        assert "weights.safetensors" in tensors and len(tensors) >= 2  # the weights and LLaCA's state
        for name in tensors:
            assert (fast / "stages" / stage / name).read_bytes() == (plain / "stages" / stage / name).read_bytes()
    files = sorted(p.relative_to(fast) for p in (fast / "predictions").rglob("*.jsonl"))
    assert len(files) == 12
    for rel in files:
        assert (fast / rel).read_bytes() == (plain / rel).read_bytes(), rel
    assert (fast / "matrix.csv").read_bytes() == (plain / "matrix.csv").read_bytes()


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.frozen = torch.nn.Linear(3, 3)
        self.frozen.requires_grad_(False)
        self.head = torch.nn.Linear(3, 1)


def test_the_shortcuts_do_what_the_calls_they_replace_do_and_leave_nothing_behind():
    net = Net()
    with shortcuts.step_shortcuts(net, single_process=True) as params:
        assert params == [net.head.weight, net.head.bias]  # model order, trainables only
        assert sys.modules["lomo_optim"] is None
        net.head.eval()
        assert net.train() is net and net.head.training  # one module was in eval: the full call ran
        net.head(torch.ones(1, 3)).sum().backward()
        assert net.head.weight.grad is not None
        net.zero_grad()
        assert net.head.weight.grad is None and net.head.bias.grad is None
        net.train(False)
        assert not any(m.training for m in net.modules())
    assert "train" not in vars(net) and "zero_grad" not in vars(net)
    assert "lomo_optim" not in sys.modules


@pytest.mark.parametrize("reason", ["processes", "frozen-grad", "own-train"])
def test_no_shortcut_where_it_might_not_be_the_same(reason):
    net = Net()
    if reason == "frozen-grad":
        net.frozen.weight.grad = torch.ones(3, 3)  # only the full zero_grad clears it
    if reason == "own-train":
        class Cached(torch.nn.Linear):
            def train(self, mode=True):  # a side effect on every call (as peft's DoRA clears its cache)
                return super().train(mode)
        net.extra = Cached(1, 1)
    with shortcuts.step_shortcuts(net, single_process=reason != "processes") as params:
        if reason == "own-train":
            assert params is not None and "train" not in vars(net) and "zero_grad" in vars(net)
        else:
            assert params is None and "zero_grad" not in vars(net)
