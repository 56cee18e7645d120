"""The ``cvqa`` command line: thin Typer commands over the library (no torch import at start-up)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from cvqa_bench.config import ConfigError, load_run_config, resolve_sequence_path, sequence_names
from cvqa_bench.errors import RunStopped
from cvqa_bench.registry import UnknownNameError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Benchmark harness for continual visual instruction tuning (CoIN, LLaCA and baselines).")
console = Console()
err_console = Console(stderr=True)

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, UnknownNameError, FileNotFoundError)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=code)


def _user_errors() -> tuple[type[Exception], ...]:
    from cvqa_bench.data.rows import DataError

    return (*USER_ERRORS, DataError)


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--set expects KEY=VALUE (e.g. train.max_steps=50), got {pair!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


@app.command()
def run(
    sequence: Annotated[str | None, typer.Option(help="sequence name in tasks/ or path to a sequence YAML "
                                                  "(default: the config's, else synthetic)")] = None,
    method: Annotated[str | None, typer.Option(help="method name (see `cvqa list methods`)")] = None,
    config: Annotated[Path | None, typer.Option(help="run config YAML (model, train, eval, method options)")] = None,
    seed: Annotated[int | None, typer.Option(help="run seed")] = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds: one sibling run folder per seed")] = None,
    out: Annotated[Path | None, typer.Option(help="run folder (default results/<sequence>-<method>-seed<N>)")] = None,
    data_root: Annotated[str | None, typer.Option(help="root folder of the sequence's data")] = None,
    order: Annotated[str | None, typer.Option(help="task order: reverse, alphabetical, or 'a,b,c'")] = None,
    model: Annotated[str | None, typer.Option(help="local llava-hf checkpoint directory (overrides the config)")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="override a config field, e.g. train.max_steps=50")] = [],
    resume: Annotated[bool, typer.Option(help="continue the run in --out: skip finished stages and cells")] = False,
) -> None:
    """Train on every task of a sequence in order, evaluating every task after every stage."""
    overrides = _parse_sets(set_)
    overrides.update({k: v for k, v in {"sequence": sequence, "method.name": method, "seed": seed,
                                        "data_root": data_root, "task_order": order}.items() if v is not None})
    if model is not None:
        overrides.update({"model.path": model, "model.tiny": None})
    seed_list = [int(s) for s in seeds.split(",")] if seeds else [None]
    try:
        from cvqa_bench.run.loop import execute
        from cvqa_bench.run.prepare import prepare

        for run_seed in seed_list:
            if run_seed is not None:
                overrides["seed"] = run_seed
            cfg = load_run_config(config, overrides)
            folder = out or Path("results") / f"{Path(cfg.sequence).stem}-{cfg.method.name}-seed{cfg.seed}"
            if run_seed is not None and out is not None:
                folder = out.with_name(f"{out.name}-seed{run_seed}")
            prepared = prepare(cfg)
            try:
                execute(prepared, folder, resume=resume, console=err_console)
            except RunStopped as exc:
                _fail(f"{exc}. What was saved is kept; continue with the same command plus --resume "
                      f"(--out {folder})", code=1)
            from cvqa_bench.run import distributed

            if distributed.is_main():  # one report, not one per process
                print_run(folder, console)
                console.print(f"run folder: {folder}")
    except _user_errors() as exc:
        _fail(str(exc))


@app.command()
def experiment(
    spec: Annotated[Path, typer.Argument(help="experiment YAML (methods × seeds on one run config)")],
    set_: Annotated[list[str], typer.Option("--set", help="override a run-config field for every run")] = [],
    reference: Annotated[Path | None, typer.Option(help="also copy the small result files here (no weights)")] = None,
) -> None:
    """Run every method × seed of an experiment (finished runs are skipped) and write the combined report."""
    try:
        from cvqa_bench.run.experiment import export_reference, load_experiment, run_experiment
        from cvqa_bench.report.build import print_report

        experiment_spec = load_experiment(spec)
        result = run_experiment(experiment_spec, console=err_console, extra_overrides=_parse_sets(set_))
        print_report(result, console)
        if reference is not None:
            files = export_reference(experiment_spec, reference)
            console.print(f"reference: {len(files)} files written under {reference}")
    except RunStopped as exc:
        _fail(f"{exc}. Run the same command again to continue.", code=1)
    except _user_errors() as exc:
        _fail(str(exc))


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
        from cvqa_bench.scoring.protocol import PROTOCOLS

        if scorer is not None:
            scorers.check(scorer)
        if protocol is not None and protocol not in PROTOCOLS:
            raise ConfigError(f"--protocol: unknown {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"{run_dir / 'config.yaml'}: not found; {run_dir} is not a run folder")
        summarize(run_dir, scorer_override=scorer, protocol=protocol)
        own = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("protocol", "corrected")
        print_run(run_dir if protocol in (None, own) else RunDir(run_dir).protocol_dir(protocol), console)
    except (*_user_errors(), ValueError) as exc:
        _fail(str(exc))


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="one or more run folders")],
    format: Annotated[list[str], typer.Option("--format", help="md, csv, json, latex (repeatable)")] = ["md"],
    out: Annotated[Path | None, typer.Option(help="output folder (default: the run folder, or results/report)")] = None,
    published: Annotated[bool, typer.Option(help="add the paper's published figures, labelled as such")] = False,
) -> None:
    """Tables and plots for one run, or several runs side by side (seeds grouped as mean ± std)."""
    try:
        from cvqa_bench.report.build import build_report, print_report

        bad = sorted(set(format) - {"md", "csv", "json", "latex"})
        if bad:
            raise ConfigError(f"--format: unknown {bad}; choose from md, csv, json, latex")
        target = out or (run_dirs[0] if len(run_dirs) == 1 else Path("results") / "report")
        result = build_report(run_dirs, target, formats=format, published=published)
        print_report(result, console)
    except (*_user_errors(), ValueError) as exc:
        _fail(str(exc))


@app.command()
def assemble(
    llm: Annotated[Path, typer.Option(help="local Llama-format LLM directory (e.g. vicuna-7b-v1.5)")],
    vision: Annotated[Path, typer.Option(help="local CLIP directory (e.g. clip-vit-large-patch14-336)")],
    projector: Annotated[Path, typer.Option(help="LLaVA-1.5 stage-1 mm_projector.bin (original key names)")],
    out: Annotated[Path, typer.Option(help="where to write the llava-hf checkpoint directory")],
    dtype: Annotated[str, typer.Option(help="float16, bfloat16 or float32")] = "float16",
    vision_feature_layer: Annotated[int, typer.Option(help="CLIP layer whose patch features feed the projector")] = -2,
) -> None:
    """Build the published starting point (vicuna + CLIP + stage-1 projector) as a llava-hf directory."""
    try:
        from cvqa_bench.models.assemble import assemble_llava

        path = assemble_llava(llm, vision, projector, out, vision_feature_layer=vision_feature_layer, dtype=dtype)
    except _user_errors() as exc:
        _fail(str(exc))
    console.print(f"assembled llava-hf checkpoint: {path}")


@app.command("list")
def list_(what: Annotated[str, typer.Argument(help="methods, sequences or scorers")]) -> None:
    """List the registered methods, shipped sequences or scorers."""
    if what == "methods":
        from cvqa_bench.methods import methods

        rows = methods.descriptions()
    elif what == "scorers":
        from cvqa_bench.scoring import scorers

        rows = scorers.descriptions()
    elif what == "sequences":
        rows = {name: _sequence_description(name) for name in sequence_names()}
    else:
        _fail(f"cannot list {what!r}; choose methods, sequences or scorers")
    for name, description in rows.items():
        console.print(f"{name:<12} {description}", markup=False, highlight=False, soft_wrap=True)


def print_run(run_dir: Path, out: Console) -> None:
    """Print one run's matrix and metrics (and refresh its report.md / heatmap.png)."""
    from cvqa_bench.report.build import build_report, print_report

    print_report(build_report([run_dir], run_dir, formats=("md",)), out)


def _sequence_description(name: str) -> str:
    try:
        data = yaml.safe_load(resolve_sequence_path(name).read_text()) or {}
    except (OSError, yaml.YAMLError, ConfigError):
        return "(unreadable)"
    tasks = [t.get("name", "?") for t in data.get("tasks", []) if isinstance(t, dict)]
    return f"{data.get('description', '')} [{' → '.join(tasks)}]".strip()


@app.command()
def validate(
    sequence: Annotated[str, typer.Argument(help="sequence name or path")],
    data_root: Annotated[str | None, typer.Option(help="root folder of the sequence's data")] = None,
) -> None:
    """Check a sequence: its YAML, every data file, every row and every image. Exit 2 on any problem."""
    try:
        from cvqa_bench.data.validation import validate_sequence

        problems, summary = validate_sequence(sequence, data_root)
    except _user_errors() as exc:
        _fail(str(exc))
    for line in summary:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if problems:
        for line in problems:
            err_console.print(f"error: {line}", style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)
    console.print("[green]ok[/green]")


def main() -> None:
    """Entry point for ``python -m cvqa_bench.cli``."""
    app(prog_name="cvqa")


if __name__ == "__main__":
    sys.exit(main())
