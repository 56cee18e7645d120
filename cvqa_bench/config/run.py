"""The run config: model, training, evaluation, method, scoring protocol and seed."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cvqa_bench.config.base import StrictModel

# The tiny model's YAML as every config names it: relative, resolved by the path rule (config/base.py), so
# it is the checkout's file or the installed package's.
DEFAULT_TINY = "configs/models/tiny.yaml"


class LoraSpec(StrictModel):
    """LoRA on the language model only (a regex on ``language_model``)."""

    r: int = Field(16, gt=0)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | None = Field(r".*language_model.*\.(q_proj|v_proj)", description="a regex on module "
                                       "names; null = the model family's default: every linear layer of the "
                                       "language model")


class ModelSpec(StrictModel):
    """Which LLaVA to load: a local llava-hf directory (``path``) or the tiny offline one (``tiny``)."""

    path: str | None = Field(None, description="local directory in the llava-hf layout")
    tiny: str | None = Field(None, description="YAML of the tiny offline model, built and cached on use "
                             "(the default when no path is given)")
    dtype: Literal["float32", "float64", "bfloat16", "float16"] = "float32"
    lora: LoraSpec | None = Field(default_factory=LoraSpec, description="null = full-parameter training")
    train_projector: bool = True
    pad_to_square: bool = Field(False, description="LLaVA-1.5 expand2square with the mean colour")
    gradient_checkpointing: bool = False
    device: str | None = Field(None, pattern=r"^(cpu|mps|cuda(:\d+)?)$", description="cpu, cuda, cuda:N or mps "
                               "(`cvqa run --device`); null = CUDA when present (cuda:<local rank> under a "
                               "multi-process launch), else CPU")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if self.path is not None and self.tiny is not None:
            raise ValueError("model needs exactly one of 'path' (local checkpoint) or 'tiny' (tiny model YAML)")
        if self.path is None and self.tiny is None:
            self.tiny = DEFAULT_TINY  # the embedded default, as configs/default.yaml names it
        return self


# The integrations of transformers' TrainingArguments.report_to (INTEGRATION_TO_CALLBACK), plus all / none.
Tracker = Literal["none", "all", "tensorboard", "wandb", "mlflow", "comet_ml", "neptune", "azure_ml", "clearml",
                  "dagshub", "flyte", "dvclive", "codecarbon", "swanlab", "trackio", "kubeflow"]
# Config fields that say where a run reports (and how much it logs), not what it computes: outside the
# stage hash and the resume check.
UNHASHED_FIELDS = ("train.report_to", "train.logging_dir", "eval.log_samples", "model.device")
# Fields added after run folders existed: hashed only when changed from their default, so that a folder
# made before them keeps its stage hashes (and resumes) while a run that changes them is told apart.
HASHED_WHEN_CHANGED: dict[str, Any] = {"train.vision_cache": True, "train.rows_per_step": {}}
# Method options of the same kind, per method: the method writes them resolved into config.yaml
# (``Method.recorded_options``); at these values they are outside the stage hash and the resume check.
OPTIONS_HASHED_WHEN_CHANGED = {"llaca": {"schedule": "pinned", "variant": "icml", "alpha_scale": 2.0,
                                         "fallback": 0.01, "ema_dtype": "float32", "alpha_gradient": "step"},
                               "olora": {"variant": "cvqa"}, "replay": {"memory": "growing"},
                               "cumulative": {"start": "base"}}


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
    report_to: list[Tracker] = Field(
        default_factory=lambda: ["none"], description="HF Trainer trackers (TrainingArguments.report_to), e.g. "
        "[tensorboard]; not part of the stage hash: a tracker never changes the numbers")
    logging_dir: str | None = Field(None, description="where file-based trackers (tensorboard) write; "
                                    "null = <run>/logs/tensorboard")
    vision_cache: bool = Field(True, description="with a frozen vision tower, a stage that shows its images more "
                               "than once trains on each image's vision features computed once (in memory, "
                               "for the stage); same rows, same gradients")
    rows_per_step: dict[str, int] = Field(
        default_factory=dict, description="per task name: rows per optimizer step, instead of the sequence's "
        "rows_per_step (a baseline's own recipe, e.g. CoIN's MoELoRA at grad-accum 8: configs/baselines-official.yaml)")

    @field_validator("rows_per_step")
    @classmethod
    def _positive_rows(cls, rows: dict[str, int]) -> dict[str, int]:
        bad = [name for name, n in rows.items() if n <= 0]
        if bad:
            raise ValueError(f"rows_per_step of task {bad[0]!r} must be > 0, got {rows[bad[0]]}")
        return rows

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_tracker(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class EvalSpec(StrictModel):
    """Batched greedy generation on every task's test split."""

    batch_size: int = Field(32, gt=0)
    limit: int | None = Field(None, gt=0, description="first N test questions per task (smoke runs)")
    max_new_tokens: int | None = Field(
        None, gt=0, description="caps every task's max_new_tokens (smoke runs); null = each task's own")
    log_samples: bool = Field(True, description="predictions also hold each prompt's text and image path")
    reuse_cells: bool = Field(True, description="copy the predictions of an earlier cell evaluated with the same "
                              "weights, test split and settings (byte-identical to computing it again)")
    vision_cache: bool = Field(True, description="with a frozen vision tower, compute each test image's vision "
                               "features once and keep them on disk ($CVQA_CACHE/vision); same predictions")
    sort_by_length: bool = Field(False, description="batch test questions sorted by prompt length (less padding; "
                                 "can change float rounding, so off by default)")


class MethodSpec(StrictModel):
    """A registered method and its options (validated by the method's own Options model)."""

    name: str = Field("llaca", description="the default run is LLaCA, as in configs/default.yaml and `make run`")
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
    protocol: Literal["official", "corrected"] = Field(
        "corrected", description="scoring: the official CoIN scripts bug for bug, or the fixed scorers")
    seed: int = 0

    def stable_hash(self, *, exclude: tuple[str, ...] = ()) -> str:
        """SHA-256 of the canonical JSON of this config (minus top-level ``exclude`` keys)."""
        data = hashed_view(self.model_dump(mode="json", exclude=set(exclude)))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def hashed_view(data: dict[str, Any]) -> dict[str, Any]:
    """A dumped config without what the stage hash leaves out: the unhashed fields, and the fields and
    method options added later while at their default (absent from older configs: hashes stay the same)."""
    if not isinstance(data, dict):
        return data
    data = json.loads(json.dumps(data))
    for path in UNHASHED_FIELDS:
        section, _, key = path.partition(".")
        (data.get(section) or {}).pop(key, None)
    for path, default in HASHED_WHEN_CHANGED.items():
        section, _, key = path.partition(".")
        if (data.get(section) or {}).get(key, default) == default:
            (data.get(section) or {}).pop(key, None)
    method = data.get("method") or {}
    options = method.get("options") or {}
    for key, default in OPTIONS_HASHED_WHEN_CHANGED.get(method.get("name"), {}).items():
        if options.get(key, default) == default:
            options.pop(key, None)
    return data
