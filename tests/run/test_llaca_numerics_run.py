"""Issue 27: LLaCA's numerics switches through real runs of the tiny model (the hand-computed alphas are in
tests/methods/test_llaca_numerics.py).

A one-task synthetic sequence with grouping off, so the dynamic EMA runs on every step of the task.
``ema_dtype``: the in-stage checkpoints (one per step) hold the method's saved state, its EMA copy and
previous gradient. In a bf16 run (frozen tensors bf16, trainable masters float32) ``param`` saves them in
bf16 and the default in float32; the EMA is written into the float32 masters at the task's end, so with
``param`` every saved stage weight is a bf16 number. ``alpha_gradient: micro_batch``: with two micro-batches
per step, the gradient alpha reads is the second backward's alone, and the Trainer's accumulated ``p.grad``
is the sum of the two.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import invoke, small_sequence_dict

STEPS = 2


@pytest.fixture(scope="module")
def one_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sequence") / "bf16one.yaml"
    path.write_text(yaml.safe_dump(small_sequence_dict("bf16one", ("color",)), sort_keys=False))
    return path


@pytest.mark.parametrize(("ema_dtype", "saved"), [("param", torch.bfloat16), ("float32", torch.float32)])
def test_a_bf16_run_saves_the_ema_in_the_dtype_ema_dtype_names(one_task, tmp_path, monkeypatch, ema_dtype, saved):
    import cvqa_bench.run.training.train as train
    from cvqa_bench.run.state.checkpoint import METHOD_TENSORS, load_tensors

    kept = tmp_path / "kept"
    kept.mkdir()
    real_save = train.save_method_state

    def save_and_keep(folder: Path, method) -> None:  # the in-stage checkpoints are removed with the stage
        real_save(folder, method)
        shutil.copy(folder / METHOD_TENSORS, kept / f"{folder.name}.safetensors")

    monkeypatch.setattr(train, "save_method_state", save_and_keep)
    out = tmp_path / "run"
    result = invoke("run", "--sequence", one_task, "--method", "llaca", "--out", out,
                    "--set", "model.dtype=bfloat16", "--set", "method.options.grouping=false",
                    "--set", f"method.options.ema_dtype={ema_dtype}", "--set", f"train.max_steps={STEPS}",
                    "--set", "train.checkpoint_every=1", "--set", "train.batch_size=4",
                    "--set", "eval.limit=1", "--set", "eval.max_new_tokens=1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in kept.iterdir()) == [f"checkpoint-{k}.safetensors" for k in range(1, STEPS + 1)]
    for path in kept.iterdir():
        state = load_tensors(path)
        ema = {k: t for k, t in state.items() if k.startswith(("ema.", "prev_grad."))}
        assert ema and {t.dtype for t in ema.values()} == {saved}, path.name
    weights = load_tensors(out / "stages" / "1-color" / "weights.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float32}  # the masters stay float32
    as_bf16 = [torch.equal(t, t.bfloat16().float()) for t in weights.values()]
    # param: the bf16 EMA written into the masters; float32: trained float32 values, not all bf16 numbers
    assert all(as_bf16) if ema_dtype == "param" else not all(as_bf16)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["dtype"] == "bfloat16" and config["method"]["options"]["ema_dtype"] == ema_dtype
    records = json.loads((out / "method_records.json").read_text())
    assert records["numerics"]["ema_dtype"] == ema_dtype
    assert records["tasks"][0]["alpha"]["n_updates"] > 0  # the EMA ran


def test_micro_batch_alpha_reads_the_last_of_two_micro_batches_in_a_trainer_run(one_task, tmp_path, monkeypatch):
    from cvqa_bench.methods.dynamic_ema import DynamicEMA

    backwards: dict[int, list[torch.Tensor]] = {}  # id(param) -> its gradient of each backward since the last step
    steps: list[tuple[list[int], list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]]]] = []
    keeper, gradients = DynamicEMA._keeper, DynamicEMA._gradients

    def spy_keeper(self, key: int):
        keep = keeper(self, key)

        def both(grad: torch.Tensor) -> None:
            backwards.setdefault(key, []).append(grad.detach().clone())
            keep(grad)
        return both

    def spy_gradients(self, trainables):
        read = gradients(self, trainables)
        keys = [id(p) for p in trainables.params]
        steps.append((keys, [g.clone() for g in read], [g.detach().clone() for g in trainables.grads()],
                      [backwards.pop(k, []) for k in keys]))
        return read

    monkeypatch.setattr(DynamicEMA, "_keeper", spy_keeper)
    monkeypatch.setattr(DynamicEMA, "_gradients", spy_gradients)
    out = tmp_path / "run"
    result = invoke("run", "--sequence", one_task, "--method", "llaca", "--out", out,
                    "--set", "method.options.grouping=false", "--set", "method.options.alpha_gradient=micro_batch",
                    "--set", "train.max_steps=2", "--set", "train.batch_size=2", "--set", "train.grad_accum=2",
                    "--set", "train.max_grad_norm=0",  # no clipping: p.grad is the plain sum of the micro-batches
                    "--set", "eval.limit=1", "--set", "eval.max_new_tokens=1")
    assert result.exit_code == 0, result.output
    assert len(steps) == 2  # one EMA update per optimizer step
    for _, read, accumulated, per_backward in steps:
        assert all(len(grads) == 2 for grads in per_backward)  # two micro-batches, one backward each
        for alpha_reads, step_grad, (first, last) in zip(read, accumulated, per_backward):
            assert torch.equal(alpha_reads, last)  # the last micro-batch's gradient alone
            assert torch.allclose(step_grad, first + last, atol=1e-6, rtol=1e-5)  # the step's: their sum
        assert any(not torch.allclose(r, a) for r, a in zip(read, accumulated))
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"]["options"]["alpha_gradient"] == "micro_batch"
