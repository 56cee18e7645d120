"""The pydantic models of ``results.json``: the file's one definition.

``results.schema.json`` (shipped beside this module, linked from ``docs/``) is generated from these models
(:func:`results_schema`; rewrite it with ``python -m cvqa_bench.report.results_model``), and
``report/results.py`` validates every results.json against them before writing it. A test checks that the
shipped schema is the generated one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cvqa_bench.metrics import METRIC_FORMULAS

SCHEMA = "cvqa-bench/results/1"
SCHEMA_FILE = Path(__file__).with_name("results.schema.json")


class Strict(BaseModel):
    """A results.json object: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class RunInfo(Strict):
    """Which run these numbers are."""

    name: str = Field(description="the run folder's name")
    sequence: str = Field(description="the sequence name or file the run was given")
    method: str
    seed: int
    protocol: Literal["official", "corrected"] = Field(description="the scoring protocol of these numbers")


class ConfigRecord(BaseModel):
    """The resolved run config (config.yaml); every section of ``RunConfig`` is kept as written."""

    model_config = ConfigDict(extra="allow")
    model: dict[str, Any]
    train: dict[str, Any]
    eval: dict[str, Any]
    method: dict[str, Any]
    seed: int


class Provenance(BaseModel):
    """Where the numbers came from."""

    model_config = ConfigDict(extra="allow")
    git_commit: str | None = Field(description="the checked-out commit, '+dirty' when tracked files changed; "
                                   "null outside a git checkout (an installed wheel)")
    packages: dict[str, str | None] = Field(description="installed versions of the packages that change numbers")
    device: dict[str, Any] = Field(description="platform, CPU count, torch threads, CUDA and GPU name")
    dtype: Literal["float32", "float64", "bfloat16", "float16"] = Field(description="model.dtype of the base model")
    model_source: str | None = Field(None, description="the local llava-hf directory the model was loaded from")
    world_size: int = Field(1, ge=1, description="training processes")
    started: str | None = None
    finished: str | None = None
    method: dict[str, Any] | None = Field(None, description="the method's resolved options (every option config.yaml "
                                          "records), its per-task plan (LLaCA: group, EMA, start and evaluation "
                                          "weights) and its notes (a computed schedule's disagreements)")


class Shortened(Strict):
    """A run that evaluates or trains less than its config file says: eval.limit, eval.max_new_tokens, fewer
    train.max_steps or train.epochs than the file's."""

    shortened: bool
    reasons: list[str]


class TaskRecord(Strict):
    """One task, in sequence order: a matrix column."""

    name: str
    scorer: str = Field(description="the per-answer rule the task was scored with")
    n_questions: int | None = Field(ge=1, description="questions scored per cell")
    n_test: int | None = Field(ge=1, description="questions in the task's test split")
    limit: int | None = Field(ge=1, description="eval.limit: only the first N test questions; null = all")


class Cell(Strict):
    """One matrix cell; n, se, ci95 and interval are null for a cell scored without per-sample scores."""

    score: float | None = Field(ge=0, le=100, description="mean per-sample score, percent")
    n: int | None = Field(ge=1)
    se: float | None = Field(ge=0, description="0/1 scores: sqrt(p(1-p)/n); graded scores: s/sqrt(n), s the "
                             "sample standard deviation")
    ci95: list[float] | None = Field(min_length=2, max_length=2, description="[low, high] of the 95% interval")
    interval: Literal["wilson", "bootstrap"] | None = Field(
        description="wilson: Wilson score interval (all per-sample scores 0 or 1); bootstrap: 2.5/97.5 "
        "percentiles of the mean over 2000 resamples seeded with (run seed, stage, task index)")


class Matrix(Strict):
    """A[k][i]: the score on task i after stage k; row 0 is the zero-shot (untrained) model."""

    rows: list[str] = Field(description="'zero-shot', then the task trained at each stage")
    columns: list[str] = Field(description="the evaluated tasks")
    unit: Literal["percent"]
    confidence: Literal[0.95]
    cells: list[list[Cell]]


class MetricRecord(Strict):
    """One metric of the matrix (docs/design.md, Metrics)."""

    name: Literal[tuple(METRIC_FORMULAS)]  # type: ignore[valid-type]
    value: float
    paper_name: str | None = Field(description="the name the LLaCA paper prints, if it reports the metric")
    other_name: str | None = Field(description="a common name elsewhere (MFN, MAA, ...)")
    formula: str = Field(description="1-based, over the matrix A")
    higher_is_better: bool


class ResultsFile(Strict):
    """One run's results, the file a paper table is made from (written after every ``cvqa run`` and
    ``cvqa score``). Scores, standard errors and intervals are in percent."""

    schema_: Literal["cvqa-bench/results/1"] = Field(alias="schema", description="the version of this format")
    run: RunInfo
    config: ConfigRecord
    config_hash: str = Field(pattern="^[0-9a-f]{64}$", description="SHA-256 of the canonical JSON of the "
                             "resolved config (RunConfig.stable_hash)")
    provenance: Provenance
    shortened: Shortened
    overrides: dict[str, Any] = Field(default_factory=dict, description="every value the command line changed "
                                      "against the config file (--set KEY=VALUE and the options that stand for "
                                      "one), by dotted key")
    tasks: list[TaskRecord] = Field(min_length=1, description="in sequence order; the matrix columns")
    matrix: Matrix
    metrics: list[MetricRecord] = Field(description="every metric defined for this matrix")


def results_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of results.json, generated from :class:`ResultsFile`."""
    schema = ResultsFile.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA,
            **schema, "title": "cvqa-bench results.json"}


def validate_results(results: dict[str, Any]) -> None:
    """Check a results.json object against :class:`ResultsFile`.

    Raises:
        pydantic.ValidationError: a field is missing, unknown or out of range.
    """
    ResultsFile.model_validate(results)


def write_schema(path: Path = SCHEMA_FILE) -> Path:
    """Write :func:`results_schema` to ``path`` (the shipped file by default)."""
    path.write_text(json.dumps(results_schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_schema())
