"""Every method completes a very short run on every registered model family (its tiny preset), in process; each
family's exported stage loads with ``AutoModelForImageTextToText`` and regenerates the run's own predictions.

Very short on purpose: two tasks of 8 training and 2 test rows, one optimizer step of batch 2 per task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SKILLS
from test_export import predictions, regenerate

from cvqa_bench.methods import methods
from cvqa_bench.models.families import families

TASKS = ("color", "shape")


def tiny_preset(family: str) -> str:
    """The tiny preset of a family in configs/models/ (LLaVA-1.5's is the default tiny.yaml)."""
    return "configs/models/tiny.yaml" if family == "llava" else f"configs/models/tiny-{family}.yaml"


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("families") / "two.yaml"
    path.write_text(yaml.safe_dump({
        "name": "families-two", "description": "two tiny synthetic tasks for the per-family runs",
        "image_folder": "images",
        "generator": {"name": "synthetic", "seed": 0, "n_train": 8, "n_test": 2, "image_size": 32},
        "tasks": [{"name": t, "train": f"{t}/train.json", "test": f"{t}/test.json", "scorer": SKILLS[t][0],
                   "instruction": SKILLS[t][1], "max_new_tokens": 3} for t in TASKS],
    }, sort_keys=False))
    return path


def run(cvqa: Any, sequence: Path, family: str, method: str, out: Path) -> Any:
    return cvqa("run", "--sequence", str(sequence), "--method", method, "--seed", "0", "--out", str(out),
                "--set", f"model.tiny={tiny_preset(family)}", "--set", "model.lora.target_modules=null",
                "--set", "train.max_steps=1", "--set", "train.batch_size=2", "--set", "eval.batch_size=4")


@pytest.mark.parametrize("method", methods.names())
@pytest.mark.parametrize("family", families.names())
def test_every_method_completes_a_short_run(cvqa: Any, sequence: Path, tmp_path: Path, family: str,
                                            method: str) -> None:
    result = run(cvqa, sequence, family, method, tmp_path / "run")
    assert result.exit_code == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "matrix.csv").is_file()


@pytest.mark.parametrize("family", families.names())
def test_export_loads_and_agrees_with_the_run(cvqa: Any, sequence: Path, tmp_path: Path, family: str) -> None:
    result = run(cvqa, sequence, family, "finetune", tmp_path / "run")
    assert result.exit_code == 0, result.stderr[-2000:]
    for merge in (True, False):
        out = tmp_path / f"export-{merge}"
        exported = cvqa("export", str(tmp_path / "run"), "--stage", "2", "--out", str(out),
                        *(["--merge"] if merge else []))
        assert exported.exit_code == 0, exported.stderr[-2000:]
        for task in TASKS:
            stored = predictions(tmp_path / "run" / "predictions" / "2-shape" / f"{task}.jsonl")
            assert regenerate(out, tmp_path / "run", task) == [r["prediction"] for r in stored]


@pytest.mark.parametrize("family", families.names())
def test_sigkill_mid_stage_then_resume_is_byte_identical(tmp_path: Path, family: str) -> None:
    """llaca, SIGKILLed after an in-stage checkpoint of its second stage, resumes to the uninterrupted run's
    matrix and predictions, byte for byte (tests/run/test_method_resume.py's check, on the family's tiny preset)."""
    from test_method_resume import SEQUENCE, check_kill_resume

    (tmp_path / "seq.yaml").write_text(yaml.safe_dump(SEQUENCE, sort_keys=False))
    check_kill_resume(tmp_path, "llaca", "--set", f"model.tiny={tiny_preset(family)}",
                      "--set", "model.lora.target_modules=null")
