"""What a run folder already holds, and whether a run may continue in it (``--resume``).

Shared by the run loop and the stage runner: the config check of an existing folder, the hash a
stage's DONE.json must carry to be skipped, and the completeness test of a predictions file.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import yaml

from cvqa_bench.config import ConfigError, RunConfig, SequenceSpec
from cvqa_bench.io import atomic_write_text, read_jsonl
from cvqa_bench.rundir import RunDir
from cvqa_bench.run.prepare import PreparedRun


def init_run_dir(run: RunDir, prepared: PreparedRun, resume: bool) -> None:
    """Create the run folder, or check that the one being resumed was made with the same config.

    Call it on the main process only (``execute`` does): the others would find its config.yaml.
    """
    config_yaml = yaml.safe_dump(prepared.config.model_dump(mode="json"), sort_keys=True)
    if run.config.is_file():
        if not resume:
            raise ConfigError(f"{run.root}: a run already exists here; pass --resume to continue it or choose --out")
        old = yaml.safe_load(run.config.read_text())
        new = yaml.safe_load(config_yaml)
        changed = sorted(_changed_keys(old, new))
        if changed:
            raise ConfigError(f"{run.config}: cannot resume, the config changed in: {', '.join(changed)}")
    else:
        atomic_write_text(run.config, config_yaml)
    atomic_write_text(run.sequence, yaml.safe_dump(prepared.sequence.model_dump(mode="json"), sort_keys=False))


def _changed_keys(old: Any, new: Any, prefix: str = "") -> set[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = set(old) | set(new)
        return set().union(*(_changed_keys(old.get(k), new.get(k), f"{prefix}{k}.") for k in keys)) if keys else set()
    return set() if old == new else {prefix.rstrip(".")}


def stage_hash(config: RunConfig, sequence: SequenceSpec, stage: int) -> str:
    """What a stage's result depends on: the whole config, the tasks up to it, and its number."""
    payload = config.stable_hash() + yaml.safe_dump(sequence.model_dump(mode="json")["tasks"][:stage]) + str(stage)
    return hashlib.sha256(payload.encode()).hexdigest()


def predictions_complete(path: Path, test_rows: list[dict[str, Any]]) -> bool:
    """True when ``path`` holds one prediction per test row, with the same ids in the same order."""
    if not path.is_file():
        return False
    try:
        ids = [r["id"] for r in read_jsonl(path)]
    except (ValueError, KeyError):
        return False
    return ids == [r["question_id"] for r in test_rows]


def clean_stage_checkpoints(stage_dir: Path) -> None:
    """Drop the in-stage Trainer checkpoints once the stage is saved for good."""
    shutil.rmtree(stage_dir / "trainer", ignore_errors=True)
