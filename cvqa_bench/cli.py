"""The ``cvqa`` command line: thin Typer commands over the library (no torch import at start-up).

The commands that train and score live here; the inspecting ones in ``cli_tools``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from cvqa_bench.cli_common import app, console, err_console, fail, parse_sets, print_run, user_errors
from cvqa_bench.config import ConfigError, load_run_config, parse_seed_list, read_yaml
from cvqa_bench.errors import RunStopped, describe_user_error
from cvqa_bench.rundir import default_run_folder
from cvqa_bench.run.threads import short_openmp_waits

short_openmp_waits()  # before anything imports torch: libgomp reads it when it loads (run/threads.py)

@app.command()
def run(
    sequence: Annotated[str | None, typer.Option(help="sequence name in tasks/ or path to a sequence YAML "
                                                  "(default: the config's, else synthetic)")] = None,
    method: Annotated[str | None, typer.Option(help="method name (see `cvqa list methods`)")] = None,
    config: Annotated[Path | None, typer.Option(help="run config YAML (model, train, eval, method options)")] = None,
    seed: Annotated[int | None, typer.Option(help="run seed")] = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds: one sibling run folder per seed")] = None,
    out: Annotated[Path | None, typer.Option(help="run folder (default results/<sequence>-<method>-seed<N>)")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="evaluate only the first N test questions of each "
                                              "task (eval.limit; marks the run shortened)")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or mps (model.device); default: CUDA "
                                               "when present, else CPU")] = None,
    data_root: Annotated[str | None, typer.Option(help="root folder of the sequence's data")] = None,
    order: Annotated[str | None, typer.Option(help="task order: reverse, alphabetical, or 'a,b,c'")] = None,
    model: Annotated[str | None, typer.Option(help="local llava-hf checkpoint directory (overrides the config)")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="override a config field, e.g. train.max_steps=50")] = [],
    resume: Annotated[bool, typer.Option(help="continue the run in --out: skip finished stages and cells")] = False,
    log_samples: Annotated[str | None, typer.Option(help="false: predictions without prompt text and image path "
                                                    "(eval.log_samples)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress lines, only the results and errors")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="also the libraries' messages and every "
                                          "Trainer log line (always in RUN/run.log)")] = False,
) -> None:
    """Train on every task of a sequence in order, evaluating every task after every stage."""
    overrides = parse_sets(set_)
    overrides.update({k: v for k, v in {"sequence": sequence, "method.name": method, "seed": seed, "data_root": data_root,
                                        "task_order": order, "eval.log_samples": log_samples, "eval.limit": limit,
                                        "model.device": device}.items() if v is not None})
    if model is not None:
        overrides.update({"model.path": model, "model.tiny": None})
    try:
        seed_list = parse_seed_list(seeds)
        from cvqa_bench.report.results import invocation_record, shortened_reasons
        from cvqa_bench.run.watching.logs import run_logging
        from cvqa_bench.run.loop import execute
        from cvqa_bench.run.prepare import prepare
        from cvqa_bench.run.threads import ThreadPolicy

        planned = []
        for run_seed in seed_list:  # every seed's run checked before the first one trains
            if run_seed is not None:
                overrides["seed"] = run_seed
            cfg = load_run_config(config, overrides)
            folder = out or default_run_folder(cfg.sequence, cfg.method.name, cfg.seed)
            if run_seed is not None and out is not None:
                folder = out.with_name(f"{out.name}-seed{run_seed}")
            threads = ThreadPolicy.for_run(cfg.model)  # run/threads.py
            with run_logging(None, verbose):  # the checks may build the tiny model: no loading bars
                prepared = prepare(cfg)
            prepared.invocation = invocation_record(config, overrides)  # kept in manifest.json
            planned.append((cfg, folder, prepared, threads))
        for cfg, folder, prepared, threads in planned:
            for reason in shortened_reasons(cfg.model_dump(mode="json"), prepared.invocation):
                err_console.print(f"shortened run: {reason}", style="yellow", markup=False, highlight=False)
            try:
                execute(prepared, folder, resume=resume, console=err_console, quiet=quiet, verbose=verbose,
                        plots=False, threads=threads)  # plots: drawn after the final table
            except RunStopped as exc:
                fail(f"{exc}. What was saved is kept; continue with the same command plus --resume "
                      f"(--out {folder})", code=1)
            from cvqa_bench.run.training import distributed

            if distributed.is_main():  # one report, not one per process
                from cvqa_bench.report.summary import write_run_plots

                print_run(folder, console, brief=True, plots=False)
                console.print(f"run folder: {folder}")
                write_run_plots(folder)  # heatmap.png, alpha.png: after the table, still before the command returns
    except user_errors() as exc:
        fail(describe_user_error(exc))


@app.command()
def experiment(
    spec: Annotated[Path, typer.Argument(help="experiment YAML (methods × seeds on one run config)")],
    set_: Annotated[list[str], typer.Option("--set", help="override a run-config field for every run")] = [],
    reference: Annotated[Path | None, typer.Option(help="also copy the small result files here (no weights)")] = None,
    jobs: Annotated[int, typer.Option(help="runs at once, each in its own process with cores/jobs threads")] = 1,
) -> None:
    """Run every method × seed of an experiment (finished runs are skipped) and write the combined report."""
    try:
        from cvqa_bench.run.experiment import export_reference, load_experiment, run_experiment
        from cvqa_bench.report.build import print_report

        experiment_spec = load_experiment(spec)
        result = run_experiment(experiment_spec, console=err_console, extra_overrides=parse_sets(set_), jobs=jobs)
        print_report(result, console)
        if reference is not None:
            files = export_reference(experiment_spec, reference)
            console.print(f"reference: {len(files)} files written under {reference}")
    except RunStopped as exc:
        fail(f"{exc}. Run the same command again to continue.", code=1)
    except user_errors() as exc:
        fail(describe_user_error(exc))


@app.command()
def score(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    scorer: Annotated[str | None, typer.Option(help="re-score every task with this scorer")] = None,
    protocol: Annotated[str | None, typer.Option(
        help="official (CoIN's scripts, bugs included) or corrected; default: the run's own. "
             "Another protocol than the run's is written to RUN_DIR/protocols/<protocol>/")] = None,
) -> None:
    """Re-score a run's stored predictions (never retrains) and rewrite its matrix and metrics."""
    try:
        from cvqa_bench.rundir import RunDir
        from cvqa_bench.run.loop import summarize
        from cvqa_bench.scoring import scorers
        from cvqa_bench.report.partial import is_partial_run
        from cvqa_bench.scoring.cells import MissingPredictionsError
        from cvqa_bench.scoring.protocol import PROTOCOLS

        if scorer is not None:
            scorers.check(scorer)
        if protocol is not None and protocol not in PROTOCOLS:
            raise ConfigError(f"--protocol: unknown {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"{run_dir / 'config.yaml'}: not found; {run_dir} is not a run folder")
        from cvqa_bench.run.state.integrity import verify_run

        verify_run(run_dir)  # a damaged stage is refused before anything is rewritten
        own = (read_yaml(run_dir / "config.yaml") or {}).get("protocol", "corrected")  # names the file if unreadable
        try:
            summarize(run_dir, scorer_override=scorer, protocol=protocol)
        except MissingPredictionsError:
            if scorer is not None or protocol not in (None, own) or not is_partial_run(run_dir):
                raise
            print_run(run_dir, console)  # unfinished: the partial matrix, its missing cells, the metrics so far
            return
        print_run(run_dir if protocol in (None, own) else RunDir(run_dir).protocol_dir(protocol), console)
    except (*user_errors(), ValueError) as exc:
        fail(describe_user_error(exc))


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="one or more run folders")],
    format: Annotated[list[str], typer.Option("--format", help="md, csv, json, latex (repeatable)")] = ["md"],
    out: Annotated[Path | None, typer.Option(help="output folder (default: the run folder, or results/report)")] = None,
    published: Annotated[bool, typer.Option(help="add the paper's published figures, labelled as such")] = False,
    force_group: Annotated[bool, typer.Option(help="average runs of one config even when their scoring, data or "
                                              "base model differ (the report says so)")] = False,
) -> None:
    """Tables and plots for one run, or several runs side by side (seeds grouped as mean ± std)."""
    try:
        from cvqa_bench.report.build import build_report, print_report

        bad = sorted(set(format) - {"md", "csv", "json", "latex"})
        if bad:
            raise ConfigError(f"--format: unknown {bad}; choose from md, csv, json, latex")
        target = out or (run_dirs[0] if len(run_dirs) == 1 else Path("results") / "report")
        result = build_report(run_dirs, target, formats=format, published=published, force_group=force_group)
        print_report(result, console)
    except (*user_errors(), ValueError) as exc:
        fail(describe_user_error(exc))


from cvqa_bench import cli_tools  # noqa: E402  registers its commands after these, in help order

__all__ = ["app", "cli_tools", "main"]


def main() -> None:
    """Entry point for ``python -m cvqa_bench.cli``."""
    app(prog_name="cvqa")


if __name__ == "__main__":
    sys.exit(main())
