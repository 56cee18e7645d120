"""Multi-process runs: 2 CPU processes (torchrun, gloo) against a single process, evaluation shards,
the DeepSpeed refusals and the accelerate launch configs.

The acceptance test launches ``tests/distributed_run.py`` (the library's ``prepare`` + ``execute``,
each process dumping its method state) with ``torch.distributed.run --standalone --nproc_per_node 2``
for two stages of ``llaca`` (count joins colour's group, so the dynamic EMA runs in stage 2), then
evaluates the same saved stages in one process and compares the prediction files byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import N_TEST, N_TRAIN, small_sequence_dict
from safetensors.torch import load_file

from cvqa_bench.config import PROJECT_ROOT, ConfigError
from cvqa_bench.run.training.distributed import check_deepspeed, deepspeed_zero_stage, gather_to_main, merge_indexed, run_on_main
from cvqa_bench.run.evaluation.evaluate import shard_rows

TASKS = ("color", "count")  # count shares colour's instruction: one group, dynamic EMA on in stage 2
STEPS = 6
TRAIN_BATCH = 4  # per process: 8 rows per optimizer step with 2 processes
EVAL_BATCH = 3  # 8 test rows -> batches of 3, 3, 2: process 0 evaluates rows 0-2 and 6-7, process 1 rows 3-5
SCRIPT = Path(__file__).with_name("distributed_run.py")


# -- the 2-process run --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("distributed")
    sequence = folder / "dist2.yaml"
    sequence.write_text(yaml.safe_dump(small_sequence_dict("dist2", TASKS), sort_keys=False))
    config = {
        "sequence": str(sequence), "seed": 0, "method": {"name": "llaca"},
        "train": {"max_steps": STEPS, "batch_size": TRAIN_BATCH, "lr": 5.0e-3, "scheduler": "constant",
                  "warmup_ratio": 0.0},
        "eval": {"batch_size": EVAL_BATCH},
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def two_processes(run_config: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The finished 2-process run: its folder, each process's dumps, and the launcher's result."""
    folder = tmp_path_factory.mktemp("two-processes")
    out, dump = folder / "run", folder / "dump"
    # CVQA_CACHE (the session's cache folder, set by conftest) is inherited; one thread per process.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(SCRIPT), "--config", str(run_config), "--out", str(out), "--dump", str(dump)]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    return SimpleNamespace(out=out, dump=dump, proc=proc)


def test_two_processes_run_with_gloo(two_processes: SimpleNamespace) -> None:
    assert two_processes.proc.returncode == 0, two_processes.proc.stderr[-4000:]
    seen = [json.loads((two_processes.dump / f"rank{r}.json").read_text()) for r in (0, 1)]
    # `accelerate launch --cpu` would silently start one process; these really were two
    assert [(s["rank"], s["world_size"], s["backend"]) for s in seen] == [(0, 2, "gloo"), (1, 2, "gloo")]
    # data parallel: in the first epoch (4 steps of 8 rows) the processes batch disjoint halves of the
    # 32 training rows (without DDP each would batch the same 16 rows)
    first_epoch = [[row for batch in s["collated"][:4] for row in batch] for s in seen]
    assert [len(batch) for s in seen for batch in s["collated"][:4]] == [TRAIN_BATCH] * 8
    assert len(set(first_epoch[0])) == len(set(first_epoch[1])) == 16
    assert len(set(first_epoch[0]) | set(first_epoch[1])) == N_TRAIN
    manifest = json.loads((two_processes.out / "manifest.json").read_text())
    assert manifest["distributed"] == {"world_size": 2, "backend": "gloo", "rows_per_step": 2 * TRAIN_BATCH}
    assert {t: p["rows_per_step"] for t, p in manifest["protocol"]["tasks"].items()} == {t: 2 * TRAIN_BATCH for t in TASKS}
    assert manifest["model"]["base"] is None and manifest["model"]["base_kind"] == "tiny"


def test_ema_state_identical_on_both_ranks(two_processes: SimpleNamespace) -> None:
    assert two_processes.proc.returncode == 0, two_processes.proc.stderr[-4000:]
    dump = two_processes.dump
    ema0, ema1 = (load_file(str(dump / f"rank{r}-stage2-ema.safetensors")) for r in (0, 1))
    ema_names = [k for k in ema0 if k.startswith("ema.")]
    assert len(ema_names) == 12  # q/v LoRA A and B of 2 layers (8) + the projector copy's 2 weights and 2 biases
    assert int(ema0["alpha_stats.count"]) == STEPS * len(ema_names)  # one alpha per tensor and step
    assert ema0.keys() == ema1.keys()
    assert all(torch.equal(ema0[k], ema1[k]) for k in ema0), "EMA / previous gradients / alpha stats differ"
    final0, final1 = (load_file(str(dump / f"rank{r}-final.safetensors")) for r in (0, 1))
    assert final0.keys() == final1.keys() and all(torch.equal(final0[k], final1[k]) for k in final0)
    extra = [json.loads((dump / f"rank{r}.json").read_text())["extra_state"] for r in (0, 1)]
    assert extra[0] == extra[1]
    assert extra[0]["task_stats"]["count"]["n_updates"] == STEPS * len(ema_names)
    # the stage saved once is the EMA the processes computed: LLaCA writes theta* into the model at task end
    saved = load_file(str(two_processes.out / "stages" / "2-count" / "weights.safetensors"))
    assert all(torch.equal(saved[name], ema0[f"ema.{name}"]) for name in saved)


def test_files_written_once(two_processes: SimpleNamespace) -> None:
    assert two_processes.proc.returncode == 0, two_processes.proc.stderr[-4000:]
    out = two_processes.out
    stages = sorted(p.name for p in (out / "stages").iterdir())
    assert stages == ["1-color", "2-count"]
    for stage in stages:
        files = sorted(p.name for p in (out / "stages" / stage).iterdir())
        # the stage's weights and method state, and the same weights in PEFT layout (run/state/adapters.py)
        assert [f for f in files if f != "routing.json"] == [
            "DONE.json", "adapter", "adapters", "method_state.json", "method_state.safetensors",
            "non_lora.safetensors", "weights.safetensors"]
        assert json.loads((out / "stages" / stage / "DONE.json").read_text())["world_size"] == 2
    assert not list(out.rglob(".*.tmp")), "a temporary file of an atomic write was left behind"
    assert len(list(out.glob("predictions/*/*.jsonl"))) == 3 * len(TASKS)


def test_merged_predictions_equal_single_process(two_processes: SimpleNamespace, run_config: Path, cvqa,
                                                 tmp_path: Path) -> None:
    """One process evaluates the same saved stages; its prediction files are the 2-process ones, byte for byte."""
    assert two_processes.proc.returncode == 0, two_processes.proc.stderr[-4000:]
    single = Path(shutil.copytree(two_processes.out, tmp_path / "single"))
    for name in ("predictions", "scores"):
        shutil.rmtree(single / name)
    result = cvqa("run", "--config", run_config, "--out", single, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "restored" in result.stderr  # nothing was retrained: the same weights were evaluated
    merged = sorted(p.relative_to(two_processes.out) for p in two_processes.out.glob("predictions/*/*.jsonl"))
    assert merged == sorted(p.relative_to(single) for p in single.glob("predictions/*/*.jsonl"))
    for rel in merged:
        lines = (two_processes.out / rel).read_text().splitlines()
        assert len(lines) == N_TEST
        assert (two_processes.out / rel).read_bytes() == (single / rel).read_bytes(), rel
    zero_shot = [json.loads(line)["prediction"] for line in
                 (single / "predictions" / "0-zero-shot" / "color.jsonl").read_text().splitlines()]
    assert len(set(zero_shot)) > 1  # the random base model's answers differ per row: a meaningful comparison


def test_resume_refuses_another_process_count(two_processes: SimpleNamespace, run_config: Path, cvqa,
                                              tmp_path: Path) -> None:
    """Retraining a stage of a 2-process run with one process would change the rows per optimizer step."""
    assert two_processes.proc.returncode == 0, two_processes.proc.stderr[-4000:]
    copy = Path(shutil.copytree(two_processes.out, tmp_path / "copy"))
    (copy / "stages" / "2-count" / "DONE.json").unlink()
    result = cvqa("run", "--config", run_config, "--out", copy, "--resume")
    assert result.exit_code == 2
    assert "trains with 2 process(es), this launch has 1" in result.stderr
    assert not (copy / "stages" / "2-count" / "DONE.json").exists()


# -- evaluation shards ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "batch", "world", "expected"), [
    (8, 3, 2, [[0, 1, 2, 6, 7], [3, 4, 5]]),  # batches [0-2] [3-5] [6-7]: the short one is rank 0's last
    (10, 2, 3, [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5]]),
    (3, 4, 2, [[0, 1, 2], []]),  # fewer batches than processes
    (5, 2, 1, [[0, 1, 2, 3, 4]]),
])
def test_shard_rows_deals_whole_batches(n: int, batch: int, world: int, expected: list[list[int]]) -> None:
    assert [shard_rows(n, batch, r, world) for r in range(world)] == expected


def test_shard_rows_rejects_a_rank_outside_the_world() -> None:
    with pytest.raises(ValueError, match="rank"):
        shard_rows(8, 3, 2, 2)


def test_merge_indexed_restores_row_order() -> None:
    assert merge_indexed([[(0, "a"), (1, "b"), (4, "e")], [(2, "c"), (3, "d")]], 5) == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(("shards", "message"), [
    ([[(0, "a")], [(2, "c")]], "1 of 3 items missing, e.g. index 1"),
    ([[(0, "a"), (1, "b")], [(1, "b"), (2, "c")]], "index 1 came from two processes"),
    ([[(0, "a"), (1, "b"), (3, "d")]], "index 3 outside 0..2"),
])
def test_merge_indexed_refuses_incomplete_shards(shards: list, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        merge_indexed(shards, 3)


def test_single_process_helpers_pass_through() -> None:
    assert run_on_main(lambda a, b: a + b, 2, b=3) == 5
    assert gather_to_main({"x": 1}) == [{"x": 1}]
    with pytest.raises(ConfigError, match="refused"):
        run_on_main(lambda: (_ for _ in ()).throw(ConfigError("refused")))


# -- DeepSpeed ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("env", "stage"), [
    ({}, None),
    ({"ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, None),  # not a DeepSpeed launch
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "1"}, 1),
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, 2),  # accelerate's default stage
])
def test_deepspeed_zero_stage_from_accelerate_env(env: dict[str, str], stage: int | None) -> None:
    assert deepspeed_zero_stage(env) == stage


def test_deepspeed_zero_stage_from_config_file(tmp_path: Path) -> None:
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    env = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(path)}
    assert deepspeed_zero_stage(env) == 3
    env["ACCELERATE_DEEPSPEED_CONFIG_FILE"] = str(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="missing.json"):
        deepspeed_zero_stage(env)


def test_deepspeed_refusals() -> None:
    zero = {2: {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"},
            3: {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}}
    with pytest.raises(ConfigError, match="'llaca' cannot run under DeepSpeed ZeRO-3.*plain DDP"):
        check_deepspeed("llaca", True, zero[3])
    with pytest.raises(ConfigError, match=r"'ema' is not supported under DeepSpeed \(ZeRO-2\)"):
        check_deepspeed("ema", True, zero[2])
    for stage in (2, 3):
        check_deepspeed("finetune", False, zero[stage])  # no step hook: allowed
    check_deepspeed("llaca", True, {})  # no DeepSpeed


def test_cli_refuses_llaca_under_zero3_before_anything(cvqa, monkeypatch: pytest.MonkeyPatch, small_sequence: Path,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    result = cvqa("run", "--sequence", small_sequence, "--method", "llaca", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "cannot run under DeepSpeed ZeRO-3" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def _callback(method_name: str) -> tuple:
    from cvqa_bench.run.watching.signals import NO_INTERRUPT
    from cvqa_bench.methods import methods
    from cvqa_bench.methods.base import TaskInfo, Trainables
    from cvqa_bench.run.training.train import MethodCallback

    model = torch.nn.Linear(2, 2)
    trainables = Trainables(model)
    callback = MethodCallback(methods.get(method_name)(), TaskInfo(0, "color", ("q",)), trainables, NO_INTERRUPT)
    callback.trainer = SimpleNamespace(accelerator=SimpleNamespace(optimizer_step_was_skipped=False))
    return callback, model


@pytest.mark.parametrize("method", ["ema", "llaca"])
def test_step_hook_without_gradients_is_refused(method: str) -> None:
    """As under DeepSpeed: every gradient already freed when the step hook would read it."""
    callback, _ = _callback(method)
    with pytest.raises(ConfigError, match=f"method '{method}'.*DeepSpeed is not supported"):
        callback.on_optimizer_step(None, SimpleNamespace(global_step=0), None)


def test_no_gradients_without_step_hook_skips_the_finite_check() -> None:
    callback, _ = _callback("finetune")
    callback.on_optimizer_step(None, SimpleNamespace(global_step=0), None)  # no error


def test_finite_check_still_runs_with_gradients() -> None:
    from cvqa_bench.errors import NonFiniteError

    callback, model = _callback("finetune")
    model.weight.grad = torch.tensor([[1.0, float("nan")], [0.0, 0.0]])
    with pytest.raises(NonFiniteError, match="non-finite gradient at step 4"):
        callback.on_optimizer_step(None, SimpleNamespace(global_step=3), None)


# -- accelerate launch configs and base provenance --------------------------------------------------------
@pytest.mark.parametrize(("name", "kind", "zero"), [
    ("ddp", "MULTI_GPU", None), ("deepspeed-zero1", "DEEPSPEED", 1), ("deepspeed-zero2", "DEEPSPEED", 2),
])
def test_accelerate_configs_load(name: str, kind: str, zero: int | None) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(PROJECT_ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    assert str(config.distributed_type).endswith(kind)
    assert config.mixed_precision == "no"  # precision comes from the run config's model.dtype
    assert (config.deepspeed_config or {}).get("zero_stage") == zero


def test_base_provenance(tmp_path: Path) -> None:
    from cvqa_bench.config import ModelSpec
    from cvqa_bench.models.load import base_provenance

    record = {"llm": {"path": "/models/vicuna"}, "dtype": "float16"}
    (tmp_path / "cvqa_base.json").write_text(json.dumps(record))
    assert base_provenance(ModelSpec(path=str(tmp_path)), tmp_path) == {"base": record, "base_kind": "assembled"}
    plain = tmp_path / "plain"
    plain.mkdir()
    assert base_provenance(ModelSpec(path=str(plain)), plain) == {"base": None, "base_kind": "llava-hf checkpoint"}
    assert base_provenance(ModelSpec(tiny="configs/models/tiny.yaml"), plain) == {"base": None, "base_kind": "tiny"}
