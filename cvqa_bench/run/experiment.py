"""An experiment: one run config crossed with several methods and seeds, then one combined report.

``cvqa experiment configs/reproduce.yaml`` runs every (method, seed) into ``<out>/<method>-seed<N>``
(finished runs are resumed, i.e. skipped) and writes the side-by-side report into ``<out>/report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from cvqa_bench.config import ConfigError, StrictModel, load_run_config, read_yaml, validate_model
from cvqa_bench.config.base import resolve_config_path, resolve_path
from cvqa_bench.config.sequence import check_safe_name


class Variant(StrictModel):
    """A labelled run of a method with its own options and run-config overrides (an ablation row)."""

    method: str
    options: dict[str, Any] = Field(default_factory=dict)
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted run-config overrides")


class ExperimentSpec(StrictModel):
    """Methods × seeds on one base run config."""

    name: str
    description: str = ""
    run_config: str = Field(description="run config YAML, relative to the working directory (configs/... falls "
                            "back to the built-in file)")
    methods: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    method_options: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per-method options")
    variants: dict[str, Variant] = Field(
        default_factory=dict, description="labels usable in methods: a method with its options and overrides"
    )
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted run-config overrides")
    out: str = Field(description="output folder, relative to the working directory")

    @field_validator("methods")
    @classmethod
    def _labels_are_folder_names(cls, labels: list[str]) -> list[str]:
        for label in labels:  # each becomes the folder <out>/<label>-seed<N>
            check_safe_name(label, "method or variant label")
        return labels

    @field_validator("variants")
    @classmethod
    def _variant_labels_are_folder_names(cls, variants: dict[str, Variant]) -> dict[str, Variant]:
        for label in variants:
            check_safe_name(label, "variant label")
        return variants


def load_experiment(path: str | Path) -> ExperimentSpec:
    """Load and validate an experiment YAML, given by path or by built-in name (``reproduce``)."""
    path = resolve_config_path(path)
    return validate_model(ExperimentSpec, read_yaml(path), str(path))


def planned_runs(spec: ExperimentSpec, extra_overrides: dict[str, Any] | None = None) -> list[tuple[Path, Any]]:
    """(run folder, resolved RunConfig) for every method × seed, validated before anything runs."""
    runs = []
    for method in spec.methods:
        variant = spec.variants.get(method) or Variant(method=method, options=spec.method_options.get(method, {}))
        for seed in spec.seeds:
            overrides = {**spec.overrides, **variant.overrides, **(extra_overrides or {}), "method.name": variant.method,
                         "seed": seed, "method.options": variant.options}
            config = load_run_config(resolve_path(spec.run_config), overrides)
            runs.append((resolve_path(spec.out) / f"{method}-seed{seed}", config))
    return runs


def run_experiment(spec: ExperimentSpec, console: Any = None, extra_overrides: dict[str, Any] | None = None,
                   formats: tuple[str, ...] = ("md", "csv", "json", "latex"), jobs: int = 1) -> Any:
    """Run (or resume) every planned run, then build the combined report; returns the report result.

    With ``jobs`` = 1 each run gets ``cvqa run``'s thread count (``run/threads.py``: 1 for the tiny model unless
    CVQA_THREADS or OMP_NUM_THREADS says otherwise). With ``jobs`` > 1 the runs go to that many worker
    processes, each with ``cpu_count // jobs`` torch threads; every run is still one seeded process, so its
    numbers do not depend on ``jobs``.
    """
    from cvqa_bench.run.watching.logs import run_logging
    from cvqa_bench.run.loop import execute
    from cvqa_bench.run.prepare import prepare
    from cvqa_bench.run.threads import ThreadPolicy
    from cvqa_bench.report.build import build_report

    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    plan = planned_runs(spec, extra_overrides)
    # checked before any run (a bad CVQA_THREADS stops the experiment before its first folder)
    threads = {folder: ThreadPolicy.for_run(config.model) for folder, config in plan}
    with run_logging(None):  # the checks may build the tiny model: no loading bars on the console
        prepared = [(folder, prepare(config)) for folder, config in plan]  # validate all inputs first
    if jobs == 1:
        for folder, run in prepared:
            if console is not None:
                console.print(f"[bold]{folder.name}[/bold]")
            execute(run, folder, resume=True, console=console, threads=threads[folder])
    else:
        _run_in_workers(plan, jobs, console)
    return build_report([folder for folder, _ in plan], resolve_path(spec.out) / "report", formats=formats,
                        published=True)


SUMMARY_METRICS = ("final_avg", "mft", "bwt")  # what a worker reports per finished run


def _run_in_workers(plan: list[tuple[Path, Any]], jobs: int, console: Any) -> None:
    """Each planned run in one of ``jobs`` spawned processes; the first failure stops the rest."""
    import multiprocessing
    import os
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        futures = {pool.submit(_run_one, folder, config): folder for folder, config in plan}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                if console is not None:
                    console.print(f"[bold]{futures[future].name}[/bold]: {future.result()}")


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_one(folder: Path, config: Any) -> str:
    """Prepare and run (or resume) one planned run in a worker; a one-line summary for the console."""
    import json

    from cvqa_bench.run.watching.logs import run_logging
    from cvqa_bench.run.loop import execute
    from cvqa_bench.run.prepare import prepare

    with run_logging(None):
        run = prepare(config)
    execute(run, folder, resume=True, console=None)
    metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
    return ", ".join(f"{name} {metrics[name]:.2f}" for name in SUMMARY_METRICS if name in metrics)


REFERENCE_FILES = ("config.yaml", "sequence.yaml", "manifest.json", "matrix.csv", "metrics.json",
                   "method_records.json", "report.md", "heatmap.png")


def export_reference(spec: ExperimentSpec, dest: Path) -> list[Path]:
    """Copy each run's small result files (no weights, no predictions) and the report into ``dest``."""
    import shutil

    written = []
    for folder, _ in planned_runs(spec):
        for name in REFERENCE_FILES:
            if (folder / name).is_file():
                target = dest / folder.name / name
                target.parent.mkdir(parents=True, exist_ok=True)
                written.append(Path(shutil.copyfile(folder / name, target)))
    report = resolve_path(spec.out) / "report"
    for path in sorted(report.glob("*")):
        target = dest / "report" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        written.append(Path(shutil.copyfile(path, target)))
    return written
