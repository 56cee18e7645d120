"""On every registered model family (its tiny preset), llaca SIGKILLed in the middle of its second stage (right
after an in-stage checkpoint) resumes with ``--resume`` to the uninterrupted run's matrix and predictions, byte
for byte (tests/run/test_method_resume.py's check, per family).

Short on purpose: two tasks of 4 training and 2 test rows, 2 optimizer steps of batch 2 per task, a checkpoint
after every step: the kill lands after step 1 of stage 2 and the resumed run restores the optimizer, the
scheduler, the data order and llaca's state to take step 2. The uninterrupted and the resumed runs go in
process; the killed one is forked from a server that imported cvqa once (``family_runs.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from family_runs import kill_mid_second_stage, run_args, write_sequence
from kill_resume import fingerprint

from cvqa_bench.models.families import families


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sequence(tmp_path_factory.mktemp("families-resume") / "two.yaml", n_train=4, n_test=2)


@pytest.mark.parametrize("family", families.names())
def test_sigkill_mid_stage_then_resume_is_byte_identical(cvqa: Any, sequence: Path, tmp_path: Path,
                                                         family: str) -> None:
    args = run_args(sequence, family, "llaca", "--set", "train.max_steps=2", "--set", "train.checkpoint_every=1")
    reference = cvqa(*args, "--out", tmp_path / "reference")
    assert reference.exit_code == 0, reference.stderr[-2000:]
    killed = tmp_path / "killed"
    kill_mid_second_stage(args, killed)
    assert not (killed / "matrix.csv").exists()
    resumed = cvqa(*args, "--out", killed, "--resume")
    assert resumed.exit_code == 0, resumed.stderr[-2000:]
    assert "stage 2/2: training on shape (4 rows, method llaca, resuming from checkpoint-1)" in resumed.stderr
    assert fingerprint(killed) == fingerprint(tmp_path / "reference")
