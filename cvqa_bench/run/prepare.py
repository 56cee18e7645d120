"""Everything a run checks before it loads a model: config, sequence, every data file and image, method options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvqa_bench.config import ConfigError, RunConfig, SequenceSpec, TaskSpec, TrainSpec, load_sequence, reorder_tasks, validate_model
from cvqa_bench.methods import methods
from cvqa_bench.methods.base import PROMPT_SAMPLE, Method, TaskInfo
from cvqa_bench.run.training import distributed
from cvqa_bench.run.preflight import check_run, check_seed
from cvqa_bench.scoring import get_scorer
from cvqa_bench.scoring.protocol import scorer_for


@dataclass
class PreparedRun:
    """A run whose inputs all validated: config, sequence, data, method (no model loaded yet)."""

    config: RunConfig
    sequence: SequenceSpec
    tasks: list[Any]  # cvqa_bench.data.coin.TaskData, in sequence order
    method: Method
    data_root: Path
    # what the command line changed against the config file (report/results.py invocation_record)
    invocation: dict[str, Any] = field(default_factory=dict)

    def task_infos(self) -> list[TaskInfo]:
        """What the method may know about each task."""
        return [
            TaskInfo(i, t.spec.name, tuple(t.instructions), tuple(r["id"] for r in t.train),
                     self.sequence.instruction_style, _schedule_row(t.spec),
                     tuple(dict.fromkeys(r["text"] for r in t.test))[:PROMPT_SAMPLE])
            for i, t in enumerate(self.tasks)
        ]


def _schedule_row(spec: TaskSpec) -> tuple[bool, str, str] | None:
    step = spec.schedule
    return None if step is None else (step.ema, step.start_from, step.eval_with)


def prepare(config: RunConfig, check_images: bool = True) -> PreparedRun:
    """Validate the sequence, every data file and image, and the method options; raise on the first problem.

    Under a multi-process launch this joins the process group; the main process validates (and
    generates a synthetic sequence's files) first, the others then load what it checked.
    """
    from cvqa_bench.data.sources import load_sequence_data, resolve_data_root
    from cvqa_bench.run.training.train import has_step_hook
    from cvqa_bench.run.watching.trackers import check_trackers

    sequence, seq_path = load_sequence(config.sequence)
    sequence = reorder_tasks(sequence, config.task_order)
    method_cls = methods.get(config.method.name)
    options = validate_model(method_cls.Options, config.method.options, f"method {config.method.name!r} options")
    method = method_cls(options, seed=config.seed)
    recorded = {**config.method.options, **method.recorded_options()}  # config.yaml names them even at default
    config = config.model_copy(update={"method": config.method.model_copy(update={"options": recorded})})
    distributed.check_deepspeed(config.method.name, has_step_hook(method))
    check_trackers(config.train)  # a missing tracker package stops the run before anything is written
    distributed.init()
    unknown = sorted(set(config.train.rows_per_step) - {t.name for t in sequence.tasks})
    if unknown:
        raise ConfigError(f"train.rows_per_step: no task {unknown[0]!r} in sequence {sequence.name!r}")
    for task in sequence.tasks:  # every task's rows per step must split into whole batches
        task_train_spec(config.train, task, distributed.world_size(), str(seq_path))
        try:
            get_scorer(scorer_for(config.protocol, task.name, task.scorer))  # built: Java, a judge endpoint
        except ValueError as exc:
            raise ConfigError(f"{seq_path}: protocol {config.protocol}: {exc}") from exc
    check_seed(config.seed, len(sequence.tasks))
    with distributed.main_first():
        data_root = resolve_data_root(sequence, seq_path, config.data_root)
        tasks = load_sequence_data(sequence, seq_path, config.data_root,
                                   check_images=check_images and distributed.is_main())
        prepared = PreparedRun(config, sequence, tasks, method, data_root)
        check_run(config, tasks, method_cls, options, prepared.task_infos())  # model, LoRA, lengths, method
    return prepared


def task_train_spec(train: TrainSpec, task: TaskSpec, world_size: int, source: str = "sequence") -> TrainSpec:
    """The run's training spec for one task: ``grad_accum`` set from the task's rows per step when it has them
    (``train.rows_per_step``'s entry for it, else the sequence's ``rows_per_step``).

    Raises:
        ConfigError: the rows per step are not a whole number of batch_size x processes.
    """
    rows = train.rows_per_step.get(task.name, task.rows_per_step)
    if rows is None:
        return train
    per_pass = train.batch_size * world_size
    if rows % per_pass:
        where = "train.rows_per_step" if task.name in train.rows_per_step else source
        raise ConfigError(f"{where}: task {task.name!r}: rows_per_step {rows} is not a multiple of "
                          f"train.batch_size {train.batch_size} x {world_size} process(es); change one of them")
    return train.model_copy(update={"grad_accum": rows // per_pass})


def pads_to_square(config: RunConfig, aspect: str | None) -> bool:
    """Whether a task's images are padded to a square: its ``image_aspect`` (train or eval), else ``model.pad_to_square``."""
    return config.model.pad_to_square if aspect is None else aspect == "pad"


def task_max_new_tokens(config: RunConfig, task: TaskSpec) -> int:
    """The task's generation length, capped by ``eval.max_new_tokens`` when that is set."""
    cap = config.eval.max_new_tokens
    return task.max_new_tokens if cap is None else min(cap, task.max_new_tokens)


def resolved_protocol(config: RunConfig, sequence: SequenceSpec, world_size: int) -> dict[str, Any]:
    """What each task is trained, generated and scored with, after every default and override (for the manifest)."""
    def aspect(value: str | None) -> str:
        return "pad" if pads_to_square(config, value) else "crop"

    tasks = {}
    for task in sequence.tasks:
        train = task_train_spec(config.train, task, world_size)
        tasks[task.name] = {
            "rows_per_step": train.batch_size * train.grad_accum * world_size,
            "batch_size": train.batch_size, "grad_accum": train.grad_accum,
            "image_aspect": {"train": aspect(task.image_aspect.train), "eval": aspect(task.image_aspect.eval)},
            "max_new_tokens": task.max_new_tokens, "max_new_tokens_used": task_max_new_tokens(config, task),
            "scorer": scorer_for(config.protocol, task.name, task.scorer),
            "answers_file": task.answers_file,
        }
    return {"scoring": config.protocol, "tasks": tasks}
