"""Every method completes a very short run on every registered model family (its tiny preset), in process, with
the default LoRA targets; each run's manifest and run log say whether the family's vision-feature cache is off
and why.

Very short on purpose: two tasks of 2 training rows and 1 test row, one optimizer step of batch 2 per task.
The families are split over two classes so that pytest-xdist's ``--dist loadscope`` can give them to two
processes (a class is one scope).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from family_runs import run_args, write_sequence

from cvqa_bench.methods import methods
from cvqa_bench.models.families import families

FAMILIES = families.names()
HALF = (len(FAMILIES) + 1) // 2


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sequence(tmp_path_factory.mktemp("families-methods") / "two.yaml", n_train=2, n_test=1)


def check_short_run(cvqa: Any, sequence: Path, out: Path, family: str, method: str) -> None:
    result = cvqa(*run_args(sequence, family, method, "--set", "train.max_steps=1"), "--out", out)
    assert result.exit_code == 0, result.stderr[-2000:]
    header, *rows = (out / "matrix.csv").read_text().splitlines()
    assert len(rows) == 3  # the zero-shot row and one row per stage
    reason = families.get(family).no_vision_cache
    manifest = json.loads((out / "manifest.json").read_text())
    log = (out / "run.log").read_text()
    if reason is None:
        assert manifest["model"]["vision_cache_off"] is None and "vision-feature cache off" not in log
    else:  # e.g. InternVL: said in the manifest and the run log, with the family's reason
        assert manifest["model"]["vision_cache_off"] == f"{family}: {reason}"
        assert f"vision-feature cache off (eval.vision_cache, train.vision_cache): {family}: {reason}" in log


@pytest.mark.parametrize("method", methods.names())
@pytest.mark.parametrize("family", FAMILIES[:HALF])
class TestFirstFamilies:
    def test_every_method_completes_a_short_run(self, cvqa: Any, sequence: Path, tmp_path: Path, family: str,
                                                method: str) -> None:
        check_short_run(cvqa, sequence, tmp_path / "run", family, method)


@pytest.mark.parametrize("method", methods.names())
@pytest.mark.parametrize("family", FAMILIES[HALF:])
class TestOtherFamilies:
    def test_every_method_completes_a_short_run(self, cvqa: Any, sequence: Path, tmp_path: Path, family: str,
                                                method: str) -> None:
        check_short_run(cvqa, sequence, tmp_path / "run", family, method)
