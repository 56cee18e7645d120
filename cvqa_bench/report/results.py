"""``results.json``: the one file a paper table is made from (schema: ``report/results_model.py``).

It holds the resolved config and its hash, where the numbers came from (git commit, package versions,
seed, device, dtype), each task's scorer and number of questions, the matrix with a standard error and a
95% interval per cell, every metric with its paper name and formula, whether the run was shortened, and
the command line's overrides of its config file.

Per-cell uncertainty, in percent like the matrix: for 0/1 per-sample scores the binomial standard error
sqrt(p(1-p)/n) and the Wilson score interval; for graded scores (VQA accuracy, IoU, ANLS) the standard
error s/sqrt(n) (sample standard deviation) and a percentile bootstrap of the mean, seeded per cell.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from cvqa_bench.config import ConfigError, RunConfig, read_yaml, validate_model
from cvqa_bench.io import atomic_write_json
from cvqa_bench.metrics import HIGHER_IS_BETTER, METRIC_FORMULAS, OTHER_NAMES, PAPER_NAMES
from cvqa_bench.report.results_model import SCHEMA, validate_results
from cvqa_bench.rundir import RunDir

RESULTS_FILE = "results.json"
Z95 = 1.959963984540054  # the standard normal quantile at 0.975
BOOTSTRAP_RESAMPLES = 2000


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion ``successes / n``, as fractions in [0, 1]."""
    if n <= 0:
        raise ValueError(f"wilson_interval needs n > 0, got {n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_interval(scores: list[float], seed: Any, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the mean of ``scores`` over seeded bootstrap resamples."""
    values = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def cell_stats(scores: list[float] | None, mean: float, seed: Any) -> dict[str, Any]:
    """One matrix cell: score (percent), n, standard error and 95% interval (percent) with its method."""
    if not scores or not math.isfinite(mean):  # not scored, or scored before per-sample scores were kept
        return {"score": mean if math.isfinite(mean) else None, "n": None, "se": None, "ci95": None, "interval": None}
    n = len(scores)
    p = float(np.mean(scores))
    if all(s in (0.0, 1.0) for s in scores):
        se, (lo, hi), how = math.sqrt(p * (1 - p) / n), wilson_interval(sum(scores), n), "wilson"
    else:
        se = float(np.std(scores, ddof=1)) / math.sqrt(n) if n > 1 else 0.0
        (lo, hi), how = bootstrap_interval(scores, seed), "bootstrap"
    return {"score": mean, "n": n, "se": 100 * se, "ci95": [100 * lo, 100 * hi], "interval": how}


def invocation_record(config_file: str | Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """What the command line changed against the config file (or the defaults): every override (``--set``
    and the options that stand for one) and the file's own training length. Kept in manifest.json as
    ``invocation``."""
    from cvqa_bench.config import load_run_config

    train = load_run_config(config_file).train
    return {"config_file": None if config_file is None else str(config_file),
            "file": {"train.max_steps": train.max_steps, "train.epochs": train.epochs},
            "overrides": json.loads(json.dumps(overrides, default=str))}


def recorded_overrides(invocation: dict[str, Any] | None) -> dict[str, Any]:
    """The overrides an invocation record holds (``set`` in manifests written before issue 31)."""
    invocation = invocation or {}
    return dict(invocation.get("overrides", invocation.get("set")) or {})


def shortened_reasons(config: dict[str, Any], invocation: dict[str, Any] | None) -> list[str]:
    """Why a run evaluates or trains less than its config file says (empty: a full run): eval.limit, a
    capped answer length, fewer train.max_steps or train.epochs than the file's. Other overrides do not
    shorten a run; they are recorded apart (:func:`recorded_overrides`)."""
    reasons = []
    limit = (config.get("eval") or {}).get("limit")
    if limit:
        reasons.append(f"eval.limit={limit}: only the first {limit} test questions of each task")
    cap = (config.get("eval") or {}).get("max_new_tokens")
    if cap:
        reasons.append(f"eval.max_new_tokens={cap}: every answer capped at {cap} tokens")
    invocation = invocation or {}
    in_file = dict(invocation.get("file") or {})
    if "file_max_steps" in invocation:  # a manifest written before issue 31
        in_file["train.max_steps"] = invocation["file_max_steps"]
    train = config.get("train") or {}
    steps, file_steps = train.get("max_steps"), in_file.get("train.max_steps")
    if steps is not None and file_steps is not None and steps < file_steps:
        reasons.append(f"train.max_steps={steps}: the config file has {file_steps}")
    epochs, file_epochs = train.get("epochs"), in_file.get("train.epochs")
    if steps is None and file_steps is None and None not in (epochs, file_epochs) and epochs < file_epochs:
        reasons.append(f"train.epochs={epochs}: the config file has {file_epochs}")
    return reasons


def run_shortened(run_dir: Path) -> list[str]:
    """:func:`shortened_reasons` of a run folder (config.yaml and the manifest's ``invocation``)."""
    run = RunDir(Path(run_dir))
    config = read_yaml(run.config) or {}
    manifest = json.loads(run.manifest.read_text()) if run.manifest.is_file() else {}
    return shortened_reasons(config, manifest.get("invocation"))


def config_hash(config: dict[str, Any]) -> str:
    """``RunConfig.stable_hash`` of a resolved config (the stage hashes start from it); a config this version
    cannot validate (an older run) gets the SHA-256 of its canonical JSON."""
    try:
        return validate_model(RunConfig, config, "config.yaml").stable_hash()
    except ConfigError:
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def build_results(run_dir: Path, scores_dir: Path, matrix: np.ndarray, tasks: list[str], scorers: dict[str, str],
                  metrics: dict[str, float], protocol: str) -> dict[str, Any]:
    """The results.json object of a scored run (``scores_dir``: where the run's cell scores were written)."""
    run, scored = RunDir(Path(run_dir)), RunDir(Path(scores_dir))
    config = read_yaml(run.config) or {}  # the resolved config as written, so an older run still reads
    manifest = json.loads(run.manifest.read_text()) if run.manifest.is_file() else {}
    data, model = manifest.get("data", {}), manifest.get("model", {})
    rows, n_asked = [], {}
    for stage in range(len(tasks) + 1):
        stage_task = tasks[stage - 1] if stage else None
        row = []
        for col, task in enumerate(tasks):
            path = scored.scores(stage, stage_task, task)
            cell = json.loads(path.read_text()) if path.is_file() else {}
            stats = cell_stats(cell.get("scores"), float(matrix[stage, col]), [int(config.get("seed", 0)), stage, col])
            n_asked.setdefault(task, stats["n"] if stats["n"] is not None else cell.get("n"))
            row.append(stats)
        rows.append(row)
    limit = (config.get("eval") or {}).get("limit")
    reasons = shortened_reasons(config, manifest.get("invocation"))
    return {
        "schema": SCHEMA,
        "run": {"name": run.root.name, "sequence": config.get("sequence"),
                "method": (config.get("method") or {}).get("name"), "seed": config.get("seed"), "protocol": protocol},
        "config": config,
        "config_hash": config_hash(config),
        "provenance": {"git_commit": manifest.get("git_commit"), "packages": manifest.get("packages", {}),
                       "device": manifest.get("device", {}), "dtype": (config.get("model") or {}).get("dtype"),
                       "model_source": model.get("source"),
                       "world_size": (manifest.get("distributed") or {}).get("world_size", 1),
                       "started": manifest.get("started"), "finished": manifest.get("finished"),
                       # the method's resolved options, its per-task plan (LLaCA's schedule) and its notes
                       "method": manifest.get("method")},
        "shortened": {"shortened": bool(reasons), "reasons": reasons},
        "overrides": recorded_overrides(manifest.get("invocation")),
        "tasks": [{"name": t, "scorer": scorers[t], "n_questions": n_asked.get(t),
                   "n_test": (data.get(t) or {}).get("n_test"), "limit": limit} for t in tasks],
        "matrix": {"rows": ["zero-shot", *tasks], "columns": list(tasks), "unit": "percent", "confidence": 0.95,
                   "cells": rows},
        "metrics": [{"name": name, "value": metrics[name], "paper_name": PAPER_NAMES.get(name),
                     "other_name": OTHER_NAMES.get(name), "formula": formula,
                     "higher_is_better": HIGHER_IS_BETTER[name]}
                    for name, formula in METRIC_FORMULAS.items() if name in metrics],
    }


def write_results(run_dir: Path, scores_dir: Path, matrix: np.ndarray, tasks: list[str], scorers: dict[str, str],
                  metrics: dict[str, float], protocol: str) -> Path:
    """Write ``results.json`` into ``scores_dir`` (the run folder, or ``protocols/<p>/``), checked against its
    schema first (``report/results_model.py``): a file that breaks the schema is never written."""
    results = build_results(run_dir, scores_dir, matrix, tasks, scorers, metrics, protocol)
    validate_results(results)
    return atomic_write_json(Path(scores_dir) / RESULTS_FILE, results)
