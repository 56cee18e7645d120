"""What a run folder already holds, and whether a run may continue in it (``--resume``).

Shared by the run loop and the stage runner: the config check of an existing folder, the hash a
stage's DONE.json must carry to be skipped, and the completeness test of a predictions file.

Resume is content-addressed: a stage hash covers the config, the task specs up to the stage and the
training rows of those tasks (so the method state a stage starts from is covered too); each
predictions file has a ``<task>.inputs.json`` beside it with the hash of the test rows it answered and
of the stage that made it. A cell whose inputs changed is redone, and the run says which and why.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from cvqa_bench.config import ConfigError, RunConfig, SequenceSpec, read_yaml
from cvqa_bench.config.run import hashed_view
from cvqa_bench.io import atomic_write_json, atomic_write_text, read_jsonl, remove_stale_temporaries
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
        old = read_yaml(run.config)  # a damaged config.yaml: one line naming it
        new = yaml.safe_load(config_yaml)
        changed = sorted(_changed_keys(hashed_view(old), hashed_view(new)))  # trackers may change
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


def stage_hash(config: RunConfig, sequence: SequenceSpec, stage: int, train_hashes: list[str] | None = None) -> str:
    """What a stage's result depends on: the whole config, the tasks up to it, their training rows
    (``train_hashes``, one per task in sequence order) and its number."""
    payload = config.stable_hash() + yaml.safe_dump(sequence.model_dump(mode="json")["tasks"][:stage]) + str(stage)
    if train_hashes is not None:
        payload += "".join(train_hashes[:stage])
    return hashlib.sha256(payload.encode()).hexdigest()


def rows_hash(rows: list[dict[str, Any]], image_root: Path | None = None) -> str:
    """SHA-256 of rows as canonical JSON, image paths relative to ``image_root`` (the data may move)."""
    from cvqa_bench.data.coin import test_items_hash  # the same canonical form for train and test rows

    return test_items_hash(rows, image_root)


def cell_inputs_path(predictions: Path) -> Path:
    """The ``<task>.inputs.json`` beside a predictions file."""
    return predictions.with_name(predictions.stem + ".inputs.json")


def write_cell_inputs(predictions: Path, inputs: dict[str, str]) -> None:
    """Record what a predictions file was made from (written after it)."""
    atomic_write_json(cell_inputs_path(predictions), inputs)


def cell_status(path: Path, test_rows: list[dict[str, Any]], inputs: dict[str, str] | None = None) -> str | None:
    """``None`` when ``path`` holds one prediction per test row and was made from ``inputs``; else why not:
    ``"missing"``, ``"incomplete"`` (a killed run's), ``"damaged"`` (not one record per test row in order), or
    which input changed (``"test data changed"``, ``"stage changed"``)."""
    if not path.is_file():
        return "missing"
    try:
        ids = [r["id"] for r in read_jsonl(path)]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "damaged"
    if ids != [r["question_id"] for r in test_rows]:
        return "damaged"  # written whole (atomic): truncated, reordered or edited since
    if inputs is None:
        return None
    try:
        recorded = json.loads(cell_inputs_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return "incomplete"  # killed between the predictions and their inputs record
    if not isinstance(recorded, dict):
        return "incomplete"
    if recorded.get("test_items") != inputs.get("test_items"):
        return "test data changed"
    return None if recorded == inputs else "stage changed"


def stale_cell_message(path: Path, status: str | None, test_file: Path) -> str | None:
    """One line for a predictions file redone because its inputs changed (``None`` for a new or partial one)."""
    if status == "damaged":
        return f"{path}: damaged (truncated, reordered or not JSONL: not one prediction per test row, in order); redoing this cell"
    if status == "test data changed":
        return f"{path}: the test split changed ({test_file}); redoing this cell"
    if status == "stage changed":
        return (f"{path}: the task or the stage that made it changed (sequence YAML or training data); "
                "redoing this cell")
    return None


def write_trainer_inputs(trainer_dir: Path, expected: str) -> None:
    """Record the stage hash the in-stage checkpoints under ``trainer_dir`` are made from."""
    atomic_write_json(Path(trainer_dir) / "INPUTS.json", {"stage_hash": expected})


def trainer_inputs_match(trainer_dir: Path, expected: str) -> bool:
    """Whether the in-stage checkpoints (if any) were made from the stage hash ``expected``."""
    path = Path(trainer_dir) / "INPUTS.json"
    if not Path(trainer_dir).is_dir():
        return True
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("stage_hash") == expected
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return False


def predictions_complete(path: Path, test_rows: list[dict[str, Any]], inputs: dict[str, str] | None = None) -> bool:
    """True when ``path`` holds one prediction per test row, same ids in the same order (and same ``inputs``)."""
    return cell_status(path, test_rows, inputs) is None


def clean_stage_checkpoints(stage_dir: Path) -> None:
    """Drop the in-stage Trainer checkpoints once the stage is saved for good."""
    shutil.rmtree(stage_dir / "trainer", ignore_errors=True)


def clean_debris(run: RunDir) -> list[Path]:
    """What a killed run left behind: temporary files of atomic writes, ``trainer/`` of finished stages."""
    removed = remove_stale_temporaries(run.root)
    for done in (run.root / "stages").glob("*/DONE.json"):
        trainer = done.parent / "trainer"
        if trainer.is_dir() and not trainer.is_symlink():
            clean_stage_checkpoints(done.parent)
            removed.append(trainer)
    return removed


def discard_unstarted(run: RunDir, top: Path | None = None) -> bool:
    """Remove a run folder this run created (from ``top``, the topmost folder it made) when no stage got
    done in it; True if removed."""
    if any((run.root / "stages").glob("*/DONE.json")):
        return False
    shutil.rmtree(top or run.root, ignore_errors=True)
    return True
