"""Pydantic models for sequence, model, training, evaluation, method and run configs; safe YAML loading.

Every model forbids unknown keys, so a typo in a YAML file fails at load time with the file and the
field named, never mid-run. This package must not import torch (``cvqa --help`` stays instant).
"""

from cvqa_bench.config.base import CONFIGS_DIR, PACKAGE_ROOT, PROJECT_ROOT, TASKS_DIR, ConfigError, StrictModel
from cvqa_bench.config.loading import (
    format_validation_error,
    load_run_config,
    load_sequence,
    parse_seed_list,
    read_yaml,
    reorder_tasks,
    resolve_sequence_path,
    sequence_names,
    set_dotted,
    validate_model,
)
from cvqa_bench.config.run import EvalSpec, LoraSpec, MethodSpec, ModelSpec, RunConfig, TrainSpec
from cvqa_bench.config.sequence import GeneratorSpec, InstructionRule, SequenceSpec, TaskSpec

__all__ = [
    "CONFIGS_DIR", "PACKAGE_ROOT", "PROJECT_ROOT", "TASKS_DIR", "ConfigError", "EvalSpec", "GeneratorSpec",
    "InstructionRule", "LoraSpec", "MethodSpec", "ModelSpec", "RunConfig", "SequenceSpec", "StrictModel",
    "TaskSpec", "TrainSpec", "format_validation_error", "load_run_config", "load_sequence", "parse_seed_list", "read_yaml",
    "reorder_tasks", "resolve_sequence_path", "sequence_names", "set_dotted", "validate_model",
]
