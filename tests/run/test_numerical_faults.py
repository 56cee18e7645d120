"""A NaN during training stops the stage loudly; --resume continues from the last good checkpoint."""

from __future__ import annotations

import os

import pytest
import torch
import yaml

from cvqa_bench.run.loop import execute
from cvqa_bench.run.prepare import prepare
from cvqa_bench.config import load_run_config
from cvqa_bench.errors import NonFiniteError
from cvqa_bench.methods import methods
from cvqa_bench.methods.base import Method, StepContext
from kill_resume import SEQUENCE

NAN_TASK, NAN_STEP = "shape", 5


class PoisonOnce(Method):
    """Test-only: writes NaN into one trainable tensor at one step of one task, the first time only."""

    armed = True

    def after_optimizer_step(self, ctx: StepContext) -> None:
        if PoisonOnce.armed and ctx.task.name == NAN_TASK and ctx.step == NAN_STEP:
            PoisonOnce.armed = False
            with torch.no_grad():
                ctx.trainables.params[0].fill_(float("nan"))


@pytest.fixture
def poison_method(monkeypatch):
    """Register the test-only method for this test only (the registry is restored afterwards)."""
    monkeypatch.setattr(methods, "_entries", dict(methods._entries))
    methods.register("poison_once", "test only: NaN into the weights once")(PoisonOnce)


def _config(tmp_path):
    seq = tmp_path / "seq.yaml"
    seq.write_text(yaml.safe_dump(SEQUENCE, sort_keys=False))
    return load_run_config(None, {
        "sequence": str(seq), "method.name": "poison_once", "train.max_steps": 9, "train.batch_size": 8,
        "train.checkpoint_every": 3, "eval.batch_size": 8,
    })


def test_nan_stops_the_stage_and_resume_continues_from_last_good_checkpoint(tmp_path, monkeypatch, poison_method):
    monkeypatch.setenv("CVQA_CACHE", str(tmp_path / "cache"))
    config = _config(tmp_path)

    PoisonOnce.armed = False  # the uninterrupted reference: same config, no fault
    execute(prepare(config), tmp_path / "reference")

    PoisonOnce.armed = True
    out = tmp_path / "faulty"
    with pytest.raises(NonFiniteError, match=r"'shape'.*non-finite gradient at step 6"):
        execute(prepare(config), out)
    stage = out / "stages" / "2-shape"
    assert not (stage / "DONE.json").exists()  # nothing of the bad stage was declared finished
    assert sorted(p.name for p in (stage / "trainer").glob("checkpoint-*")) == ["checkpoint-3"]
    assert (out / "stages" / "1-color" / "DONE.json").is_file()

    execute(prepare(config), out, resume=True)
    assert (out / "matrix.csv").read_bytes() == (tmp_path / "reference" / "matrix.csv").read_bytes()
    for ref in sorted((tmp_path / "reference" / "predictions").rglob("*.jsonl")):
        assert (out / ref.relative_to(tmp_path / "reference")).read_bytes() == ref.read_bytes()
    assert os.listdir(stage / "..") == os.listdir(tmp_path / "reference" / "stages")
