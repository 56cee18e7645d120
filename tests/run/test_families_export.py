"""On every registered model family (its tiny preset), ``cvqa export RUN --stage K`` with and without ``--merge``
writes a folder that ``AutoModelForImageTextToText.from_pretrained`` loads (the unmerged one through
transformers' PEFT integration, the adapter beside the base), and its greedy answers agree with the run's own
predictions of that stage on at least 99% of the test questions (here: all 12).

Short on purpose: two tasks of 2 training and 6 test rows, one optimizer step of batch 2 per task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from family_runs import SECOND_STAGE, TASKS, run_args, write_sequence
from test_export import predictions, regenerate

from cvqa_bench.models.families import families


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sequence(tmp_path_factory.mktemp("families-export") / "two.yaml", n_train=2, n_test=6)


def agreement(run: Path, model_dir: Path) -> float:
    """The share of the run's stage-2 test questions on which ``model_dir`` answers as the run predicted."""
    same = total = 0
    for task in TASKS:
        stored = [r["prediction"] for r in predictions(run / "predictions" / SECOND_STAGE / f"{task}.jsonl")]
        answers = regenerate(model_dir, run, task)
        assert len(answers) == len(stored) == 6
        same += sum(a == b for a, b in zip(answers, stored))
        total += len(stored)
    return same / total


@pytest.mark.parametrize("family", families.names())
def test_export_loads_and_agrees_with_the_run(cvqa: Any, sequence: Path, tmp_path: Path, family: str) -> None:
    run = tmp_path / "run"
    result = cvqa(*run_args(sequence, family, "finetune", "--set", "train.max_steps=1"), "--out", run)
    assert result.exit_code == 0, result.stderr[-2000:]
    for merge in (True, False):
        out = tmp_path / ("merged" if merge else "adapter")
        exported = cvqa("export", run, "--stage", "2", "--out", out, *(["--merge"] if merge else []))
        assert exported.exit_code == 0, exported.stderr[-2000:]
        assert (out / "adapter_config.json").is_file() != merge  # unmerged: the PEFT adapter beside the base
        assert agreement(run, out) >= 0.99
