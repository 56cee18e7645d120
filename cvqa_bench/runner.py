"""One continual run: zero-shot row, then train → save → evaluate every task, stage by stage; then score.

Everything a run writes goes through ``cvqa_bench.io`` (atomic). A stage whose DONE.json carries the
same stage hash is not retrained on ``--resume``; a predictions file whose ids match the test split is
not regenerated. Every input is validated before the model is loaded.

Launched as several processes (``torchrun`` / ``accelerate launch``), every process runs the same
stages; the main process alone creates, checks and writes the run folder (``cvqa_bench.distributed``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cvqa_bench import distributed
from cvqa_bench.config import ConfigError, RunConfig, SequenceSpec, load_sequence, reorder_tasks, validate_model
from cvqa_bench.interrupt import InterruptFlag
from cvqa_bench.io import atomic_write_text, read_jsonl
from cvqa_bench.methods import methods
from cvqa_bench.methods.base import Method, TaskInfo
from cvqa_bench.report import write_run_summary
from cvqa_bench.rundir import RunDir
from cvqa_bench.scoring import score_run


@dataclass
class PreparedRun:
    """A run whose inputs all validated: config, sequence, data, method (no model loaded yet)."""

    config: RunConfig
    sequence: SequenceSpec
    tasks: list[Any]  # cvqa_bench.data.coin.TaskData, in sequence order
    method: Method
    data_root: Path

    def task_infos(self) -> list[TaskInfo]:
        """What the method may know about each task."""
        return [
            TaskInfo(i, t.spec.name, tuple(t.instructions), tuple(r["id"] for r in t.train))
            for i, t in enumerate(self.tasks)
        ]


def prepare(config: RunConfig, check_images: bool = True) -> PreparedRun:
    """Validate the sequence, every data file and image, and the method options; raise on the first problem.

    Under a multi-process launch this joins the process group; the main process validates (and
    generates a synthetic sequence's files) first, the others then load what it checked.
    """
    from cvqa_bench.data.sources import load_sequence_data, resolve_data_root
    from cvqa_bench.train import has_step_hook

    sequence, seq_path = load_sequence(config.sequence)
    sequence = reorder_tasks(sequence, config.task_order)
    method_cls = methods.get(config.method.name)
    options = validate_model(method_cls.Options, config.method.options, f"method {config.method.name!r} options")
    method = method_cls(options, seed=config.seed)
    distributed.check_deepspeed(config.method.name, has_step_hook(method))
    distributed.init()
    with distributed.main_first():
        data_root = resolve_data_root(sequence, seq_path, config.data_root)
        tasks = load_sequence_data(sequence, seq_path, config.data_root,
                                   check_images=check_images and distributed.is_main())
    return PreparedRun(config, sequence, tasks, method, data_root)


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
    import hashlib

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


def execute(prepared: PreparedRun, out: Path, *, resume: bool = False, console: Any = None) -> dict[str, float]:
    """Run every stage of ``prepared`` into ``out`` and return the metrics."""
    from cvqa_bench.stages import StageRunner

    distributed.init()
    run = RunDir(Path(out))
    distributed.run_on_main(init_run_dir, run, prepared, resume)
    with InterruptFlag() as interrupt:
        stages = StageRunner(prepared, run, console=console, interrupt=interrupt)
        stages.write_manifest()
        stages.evaluate(0)
        for stage in range(1, len(prepared.tasks) + 1):
            stages.train_or_restore(stage)
            stages.evaluate(stage)
    metrics = distributed.run_on_main(summarize, run.root, meta=_meta(prepared, run))
    stages.finish_manifest()
    return metrics


def _meta(prepared: PreparedRun, run: RunDir) -> dict[str, Any]:
    return {
        "name": run.root.name,
        "sequence": prepared.sequence.name,
        "method": prepared.config.method.name,
        "seed": prepared.config.seed,
    }


def summarize(run_dir: Path, scorer_override: str | None = None, meta: dict[str, Any] | None = None) -> dict[str, float]:
    """Score the stored predictions and write matrix.csv, metrics.json, report.md and the heatmap."""
    matrix, tasks, scorers = score_run(run_dir, scorer_override)
    if meta is None:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        meta = {"name": run_dir.name, "sequence": cfg["sequence"], "method": cfg["method"]["name"], "seed": cfg["seed"]}
    return write_run_summary(run_dir, matrix, tasks, scorers, meta)


def clean_stage_checkpoints(stage_dir: Path) -> None:
    """Drop the in-stage Trainer checkpoints once the stage is saved for good."""
    shutil.rmtree(stage_dir / "trainer", ignore_errors=True)

