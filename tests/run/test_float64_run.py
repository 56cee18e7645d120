"""A float64 run of the tiny model end to end: ``model.dtype: float64`` trains, evaluates and saves in float64.

The issue it pins: LLaCA's dynamic alpha raised on float64 tensors, so no float64 run could finish.
A short llaca run on color → count → position turns the dynamic EMA on in stage 2 (count joins
colour's group), so the float64 alpha math runs on every optimizer step of that stage.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import LLACA_TASKS, invoke
from safetensors.torch import load_file

STEPS = 3
# 12 trainable tensors: LoRA A and B of q_proj and v_proj in 2 layers, the projector's 2 weights + 2 biases.
TRAINABLE_TENSORS = 12


def run_args(sequence: Path, out: Path) -> list[str | Path]:
    """``cvqa run`` arguments of the float64 llaca run into ``out``."""
    return ["--sequence", sequence, "--method", "llaca", "--out", out, "--set", "model.dtype=float64",
            "--set", f"train.max_steps={STEPS}", "--set", "train.batch_size=4", "--set", "eval.batch_size=8"]


@pytest.fixture(scope="module")
def float64_run(tmp_path_factory: pytest.TempPathFactory, llaca_sequence: Path) -> Path:
    """A finished 3-step-per-task llaca run in float64; returns its folder."""
    out = tmp_path_factory.mktemp("float64") / "run"
    result = invoke("run", *run_args(llaca_sequence, out))
    assert result.exit_code == 0, result.stderr
    return out


def test_float64_run_writes_the_full_matrix(float64_run: Path) -> None:
    with open(float64_run / "matrix.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["stage", "trained_task", *LLACA_TASKS]
    assert [r[:2] for r in rows[1:]] == [["0", "zero-shot"], *([str(k), t] for k, t in enumerate(LLACA_TASKS, start=1))]
    values = [float(v) for r in rows[1:] for v in r[2:]]
    assert len(values) == 4 * 3
    assert all(0.0 <= v <= 100.0 for v in values)


def test_float64_run_saves_float64_stage_weights(float64_run: Path) -> None:
    stages = sorted((float64_run / "stages").glob("*/weights.safetensors"))
    assert [p.parent.name for p in stages] == [f"{k}-{t}" for k, t in enumerate(LLACA_TASKS, start=1)]
    for path in stages:
        weights = load_file(str(path))
        assert len(weights) == TRAINABLE_TENSORS
        assert {t.dtype for t in weights.values()} == {torch.float64}
        # trained in float64, not float32 values widened on save: some value is not a float32 number
        assert any(not torch.equal(t, t.float().double()) for t in weights.values())
        state = load_file(str(path.parent / "method_state.safetensors"))
        assert {t.dtype for t in state.values()} == {torch.float64}
        assert math.isfinite(json.loads((path.parent / "DONE.json").read_text())["train_loss"])
    manifest = json.loads((float64_run / "manifest.json").read_text())
    assert manifest["model"]["dtype"] == "float64"


def test_float64_run_records_finite_alphas_where_the_ema_ran(float64_run: Path) -> None:
    records = json.loads((float64_run / "method_records.json").read_text())
    tasks = {r["task"]: r for r in records["tasks"]}
    assert {t: r["ema"] for t, r in tasks.items()} == {"color": False, "count": True, "position": False}
    alpha = tasks["count"]["alpha"]
    assert alpha["n_updates"] == TRAINABLE_TENSORS * STEPS
    for key in ("mean", "min", "max"):
        assert math.isfinite(alpha[key]), (key, alpha)
    assert 0.0 <= alpha["min"] <= alpha["mean"] <= alpha["max"] <= 1.0
    # step 1 has no previous gradient: its 12 alphas are all the fallback
    assert alpha["fallback_fraction"] * alpha["n_updates"] >= TRAINABLE_TENSORS
    assert tasks["color"]["alpha"]["n_updates"] == tasks["position"]["alpha"]["n_updates"] == 0


def test_float64_run_resumes_from_its_saved_stages(float64_run: Path, llaca_sequence: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(float64_run, tmp_path / "run"))
    result = invoke("run", "--resume", *run_args(llaca_sequence, copy))
    assert result.exit_code == 0, result.stderr
    for k, task in enumerate(LLACA_TASKS, start=1):
        assert f"stage {k} ({task}): done earlier, restored" in result.stderr
    assert (copy / "matrix.csv").read_text() == (float64_run / "matrix.csv").read_text()
