"""Pydantic models for sequence, model, training, evaluation, method and run configs; safe YAML loading.

Every model forbids unknown keys, so a typo in a YAML file fails at load time with the file and the
field named, never mid-run. This module must not import torch (``cvqa --help`` stays instant).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent
TASKS_DIR = PROJECT_ROOT / "tasks"
CONFIGS_DIR = PROJECT_ROOT / "configs"

InstructionRule = Literal["last_line", "last_line_before_colon", "second_line"]


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class GeneratorSpec(StrictModel):
    """A synthetic data generator that materialises a sequence's files on first use."""

    name: Literal["synthetic"] = "synthetic"
    seed: int = 0
    n_train: int = Field(512, gt=0)
    n_test: int = Field(64, gt=0)
    image_size: int = Field(32, ge=16)


class TaskSpec(StrictModel):
    """One task of a sequence: its CoIN-format files, its scorer and how its instruction is found."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    train: str = Field(description="train conversation JSON, relative to the data root")
    test: str = Field(description="test question/answer JSON, relative to the data root")
    scorer: str
    instruction: InstructionRule = Field(
        "last_line", description="which part of the first human turn is the task's instruction"
    )
    max_new_tokens: int = Field(16, gt=0)
    image_folder: str | None = Field(None, description="overrides the sequence's image folder")

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
    tasks: list[TaskSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_task_names(self) -> SequenceSpec:
        names = [t.name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate task names {dupes}; each task needs its own name")
        return self

    def task_names(self) -> list[str]:
        """Task names in sequence order."""
        return [t.name for t in self.tasks]


class LoraSpec(StrictModel):
    """LoRA on the language model only (a regex on ``language_model``)."""

    r: int = Field(16, gt=0)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str = r".*language_model.*\.(q_proj|v_proj)"


class ModelSpec(StrictModel):
    """Which LLaVA to load: a local llava-hf directory (``path``) or the tiny offline one (``tiny``)."""

    path: str | None = Field(None, description="local directory in the llava-hf layout")
    tiny: str | None = Field(None, description="YAML of the tiny offline model, built and cached on use "
                             "(the default when no path is given)")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    lora: LoraSpec | None = Field(default_factory=LoraSpec, description="null = full-parameter training")
    train_projector: bool = True
    pad_to_square: bool = Field(False, description="LLaVA-1.5 expand2square with the mean colour")
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if self.path is not None and self.tiny is not None:
            raise ValueError("model needs exactly one of 'path' (local checkpoint) or 'tiny' (tiny model YAML)")
        if self.path is None and self.tiny is None:
            self.tiny = str(CONFIGS_DIR / "models" / "tiny.yaml")  # the embedded default
        return self


class TrainSpec(StrictModel):
    """Optimisation of one stage (the same for every task of a run)."""

    max_steps: int | None = Field(300, gt=0, description="optimizer steps per task; null = use epochs")
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(16, gt=0)
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(5e-3, gt=0)
    projector_lr: float | None = Field(None, gt=0, description="null = same as lr")
    weight_decay: float = Field(0.0, ge=0)
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, ge=0)
    checkpoint_every: int = Field(0, ge=0, description="in-stage checkpoint every N steps; 0 = off")
    max_length: int = Field(512, gt=0)


class EvalSpec(StrictModel):
    """Batched greedy generation on every task's test split."""

    batch_size: int = Field(32, gt=0)
    limit: int | None = Field(None, gt=0, description="first N test questions per task (smoke runs)")


class MethodSpec(StrictModel):
    """A registered method and its options (validated by the method's own Options model)."""

    name: str = "finetune"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_method(cls, name: str) -> str:
        from cvqa_bench.methods import methods  # lazy entries: no torch import

        methods.check(name)
        return name


class RunConfig(StrictModel):
    """Everything that determines a run's numbers (written to ``config.yaml`` resolved)."""

    sequence: str = "synthetic"
    task_order: str | None = Field(
        None, description="permute the sequence: 'reverse', 'alphabetical' or comma-separated task names"
    )
    data_root: str | None = None
    method: MethodSpec = Field(default_factory=MethodSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    seed: int = 0

    def stable_hash(self, *, exclude: tuple[str, ...] = ()) -> str:
        """SHA-256 of the canonical JSON of this config (minus top-level ``exclude`` keys)."""
        data = self.model_dump(mode="json", exclude=set(exclude))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def read_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` a file; malformed YAML raises :class:`ConfigError` naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from exc


def validate_model(model_cls: type[StrictModel], data: Any, source: str) -> Any:
    """Validate ``data`` against ``model_cls``; errors become one :class:`ConfigError` line per field."""
    if data is None:
        data = {}
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from exc


def format_validation_error(exc: ValidationError) -> str:
    """One line per failing field: ``field.path: message (got value)``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def resolve_sequence_path(name_or_path: str) -> Path:
    """A sequence given by name (``tasks/<name>.yaml``) or by path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.exists():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: sequence file not found")
        return candidate
    path = TASKS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        from cvqa_bench.registry import Registry

        known = Registry("sequence")
        for name in sequence_names():
            known.add_lazy(name, "cvqa_bench.config:SequenceSpec", "")
        known.check(name_or_path)
    return path


def sequence_names() -> list[str]:
    """Names of the sequences shipped in ``tasks/``."""
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def load_sequence(name_or_path: str) -> tuple[SequenceSpec, Path]:
    """Load and validate a sequence YAML; returns the spec and the file it came from."""
    path = resolve_sequence_path(name_or_path)
    return validate_model(SequenceSpec, read_yaml(path), str(path)), path


def reorder_tasks(seq: SequenceSpec, order: str | None) -> SequenceSpec:
    """The sequence with its tasks permuted: ``reverse``, ``alphabetical`` or ``"name,name,..."`` (all tasks once)."""
    if order is None:
        return seq
    by_name = {t.name: t for t in seq.tasks}
    if order == "reverse":
        names = list(reversed(by_name))
    elif order == "alphabetical":
        names = sorted(by_name)
    else:
        names = [n.strip() for n in order.split(",") if n.strip()]
        if sorted(names) != sorted(by_name):
            raise ConfigError(
                f"task_order {order!r} must name every task of {seq.name!r} exactly once: {', '.join(by_name)}"
            )
    return seq.model_copy(update={"tasks": [by_name[n] for n in names]})


def load_run_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a run config YAML (or the defaults) and apply dotted ``overrides`` such as ``train.lr``."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        loaded = read_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a run config must be a mapping, got {type(loaded).__name__}")
        data = loaded or {}
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return validate_model(RunConfig, data, source)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``dotted == "a.b"``, creating mappings on the way."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value
