"""The sequence YAML: an ordered list of tasks, each with its files, scorer and per-task protocol fields."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer, model_validator

from cvqa_bench.config.base import StrictModel

InstructionRule = Literal["last_line", "last_line_before_colon", "second_line"]
ImageAspect = Literal["pad", "crop"]

# Names become folder names (the data cache, stages/<k>-<task>/): a letter or digit first, then letters,
# digits, '_', '.', '-'; never '..'. Absolute paths, '../' and hidden names are refused.
SAFE_NAME = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SAFE_NAME_HELP = "must be a safe identifier: letters, digits, '_', '.', '-' (a letter or digit first, no '..', at most 64)"
DEFAULT_MAX_IMAGE_PIXELS = 25_000_000  # 5000 x 5000; CoIN's largest images are far below


def check_safe_name(value: str, what: str) -> str:
    """``value`` when it is a safe identifier (:data:`SAFE_NAME`), else ``ValueError`` naming ``what``."""
    import re

    if not isinstance(value, str) or re.fullmatch(SAFE_NAME, value) is None:
        raise ValueError(f"{what} {value!r} {SAFE_NAME_HELP}")
    return value


class GeneratorSpec(StrictModel):
    """A synthetic data generator that materialises a sequence's files on first use."""

    name: Literal["synthetic"] = "synthetic"
    seed: int = 0
    n_train: int = Field(512, gt=0)
    n_test: int = Field(64, gt=0)
    image_size: int = Field(32, ge=16)


class ImageAspectSpec(StrictModel):
    """How a task's images are fitted to the vision tower's square input; ``null`` = ``model.pad_to_square``.

    ``pad``: LLaVA's expand2square with the processor's mean colour, then the processor. ``crop``: the
    processor alone (CLIP's resize of the short side + center crop).
    """

    train: ImageAspect | None = None
    eval: ImageAspect | None = None


class ScheduleStep(StrictModel):
    """One task's row of an official LLaCA schedule, as its training and evaluation scripts hard-code it."""

    ema: bool = Field(description="dynamic EMA on or off (the training script's --dema)")
    start_from: str = Field(description="'base', or the earlier task whose final weights the task starts from "
                            "(the training script's --previous_task_model_path)")
    eval_with: str = Field(description="the task whose final weights evaluate this task (the evaluation "
                           "script's MODELPATH)")


class TaskSpec(StrictModel):
    """One task of a sequence: its CoIN-format files, its scorer and how its instruction is found."""

    name: str
    train: str = Field(description="train conversation JSON, relative to the data root")
    test: str = Field(description="test question/answer JSON, relative to the data root")
    scorer: str
    instruction: InstructionRule = Field(
        "last_line", description="which part of the first human turn is the task's instruction"
    )
    max_new_tokens: int = Field(16, gt=0)
    image_folder: str | None = Field(None, description="overrides the sequence's image folder")
    test_image_folder: str | None = Field(
        None, description="the test split's image folder, relative to the data root, when it is not the train "
        "split's (MLLM-CL: <Task>_test/)")
    image_aspect: ImageAspectSpec = Field(
        default_factory=ImageAspectSpec, description="pad or crop, for train and eval (a string sets both)")
    rows_per_step: int | None = Field(
        None, gt=0, description="rows per optimizer step for this task (grad_accum follows); null = the run's")
    answers_file: str | None = Field(
        None, description="annotation JSON with the official answer lists by question id (e.g. TextVQA_0.5.1_val.json), "
        "relative to the data root; replaces the test file's answers")
    schedule: ScheduleStep | None = Field(
        None, description="the official LLaCA schedule's row for this task (llaca's method.options.schedule: pinned)")

    @model_serializer(mode="wrap")
    def _no_empty_schedule(self, handler: SerializerFunctionWrapHandler) -> dict:
        # a task without a schedule dumps as before the field existed: stage hashes of older runs stay the same
        data = handler(self)
        if data.get("schedule", 0) is None:
            data.pop("schedule")
        return data

    eval_suffix: dict[str, str] = Field(
        default_factory=dict, description="text appended to each test question by its gold answer, '*' for any "
        "other (MLLM-CL model_pvqa.py / model_fin.py add an answer-format instruction at evaluation)")
    score_context: list[str] = Field(
        default_factory=list, description="test-row fields an official scorer reads besides the answers "
        "(e.g. answer_type for OCRBench), kept with each prediction")

    @field_validator("image_aspect", mode="before")
    @classmethod
    def _one_aspect_for_both(cls, value: object) -> object:
        return {"train": value, "eval": value} if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _safe_task_name(cls, name: str) -> str:
        return check_safe_name(name, "task name")

    @field_validator("scorer")
    @classmethod
    def _known_scorer(cls, name: str) -> str:
        from cvqa_bench.scoring import scorers

        scorers.check(name)
        return name


class SequenceSpec(StrictModel):
    """An ordered list of tasks plus where their data lives."""

    name: str
    description: str = ""
    data_root: str | None = Field(None, description="relative to the YAML file; --data-root overrides")
    image_folder: str = Field("images", description="image root, relative to the data root")
    instruction_style: Literal["original", "diverse"] = "original"
    generator: GeneratorSpec | None = None
    allow_outside_root: bool = Field(
        False, description="let train/test/answers files, the image folder and images (symlinks followed) "
        "lie outside the data root; off = such paths are refused")
    max_image_pixels: int = Field(
        DEFAULT_MAX_IMAGE_PIXELS, gt=0, description="width x height above which an image is refused (memory)")
    tasks: list[TaskSpec] = Field(min_length=1)
    metric_names: dict[str, str] = Field(
        default_factory=dict, description="metric (metrics.METRIC_FORMULAS) -> the name this benchmark's papers "
        "print, shown by `cvqa report` (e.g. final_avg: Last)")

    @field_validator("name")
    @classmethod
    def _safe_sequence_name(cls, name: str) -> str:
        return check_safe_name(name, "sequence name")

    @model_validator(mode="after")
    def _unique_task_names(self) -> SequenceSpec:
        names = [t.name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate task names {dupes}; each task needs its own name")
        return self

    @model_validator(mode="after")
    def _whole_schedule(self) -> SequenceSpec:
        pinned = [t.name for t in self.tasks if t.schedule is not None]
        if pinned and len(pinned) != len(self.tasks):
            missing = [t.name for t in self.tasks if t.schedule is None]
            raise ValueError(f"a schedule needs a row for every task; missing for {missing}")
        for index, task in enumerate(self.tasks):
            if task.schedule is None:
                continue
            earlier = [t.name for t in self.tasks[:index]]
            if task.schedule.start_from != "base" and task.schedule.start_from not in earlier:
                raise ValueError(f"task {task.name!r}: schedule start_from {task.schedule.start_from!r} is neither "
                                 f"'base' nor an earlier task ({earlier})")
            if task.schedule.eval_with not in self.task_names():
                raise ValueError(f"task {task.name!r}: schedule eval_with {task.schedule.eval_with!r} is not a task "
                                 f"of the sequence")
        return self

    def task_names(self) -> list[str]:
        """Task names in sequence order."""
        return [t.name for t in self.tasks]
