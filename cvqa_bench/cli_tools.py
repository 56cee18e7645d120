"""The ``cvqa`` commands that inspect, check, plan or export rather than train: status, export, assemble,
list, plan and validate (registered on the shared app when ``cvqa_bench.cli`` is imported)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from cvqa_bench.cli_common import app, console, err_console, fail, parse_sets, user_errors
from cvqa_bench.config import ConfigError, load_run_config, resolve_sequence_path, sequence_names
from cvqa_bench.errors import describe_user_error


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="a run folder, finished or not")]) -> None:
    """How far a run is: stages and cells done, newest checkpoint, elapsed time and ETA, whether it runs."""
    try:
        from cvqa_bench.run.state.status import run_status, status_lines

        lines = status_lines(run_status(run_dir))
    except user_errors() as exc:
        fail(str(exc))
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    stage: Annotated[int, typer.Option(help="the stage to export (1 = after the first task)")],
    out: Annotated[Path, typer.Option(help="the new model folder (must not exist or be empty)")],
    merge: Annotated[bool, typer.Option(help="merge LoRA into the weights: a plain checkpoint of the base model's class")] = False,
    task: Annotated[str | None, typer.Option(help="export the weights this task was evaluated with; needed when a routed method (llaca, eproj) evaluated the stage's tasks with several")] = None,
) -> None:
    """Write one stage as an HF folder that AutoModelForImageTextToText.from_pretrained loads offline."""
    try:
        from cvqa_bench.run.export import export_stage

        console.print(f"exported stage {stage}: {export_stage(run_dir, stage, out, merge=merge, task=task)}")
    except user_errors() as exc:
        fail(describe_user_error(exc))


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
    except user_errors() as exc:
        fail(describe_user_error(exc))
    console.print(f"assembled llava-hf checkpoint: {path}")


@app.command("list")
def list_(what: Annotated[str, typer.Argument(help="methods, sequences, scorers or models")]) -> None:
    """List the registered methods, shipped sequences, scorers or model families."""
    if what == "models":
        from cvqa_bench.models.families import families

        rows = families.descriptions()
    elif what == "methods":
        from cvqa_bench.methods import methods

        rows = methods.descriptions()
    elif what == "scorers":
        from cvqa_bench.scoring import scorers

        rows = scorers.descriptions()
    elif what == "sequences":
        rows = {name: _sequence_description(name) for name in sequence_names()}
    else:
        fail(f"cannot list {what!r}; choose methods, sequences, scorers or models")
    for name, description in rows.items():
        console.print(f"{name:<16} {description}", markup=False, highlight=False, soft_wrap=True)


def _sequence_description(name: str) -> str:
    try:
        data = yaml.safe_load(resolve_sequence_path(name).read_text()) or {}
    except (OSError, yaml.YAMLError, ConfigError):
        return "(unreadable)"
    tasks = [t.get("name", "?") for t in data.get("tasks", []) if isinstance(t, dict)]
    return f"{data.get('description', '')} [{' → '.join(tasks)}]".strip()


@app.command()
def plan(
    sequence: Annotated[str, typer.Argument(help="sequence name in tasks/ or path to a sequence YAML")],
    config: Annotated[Path | None, typer.Option(help="run config YAML")] = None,
    data_root: Annotated[str | None, typer.Option(help="root folder of the sequence's data")] = None,
    method: Annotated[str | None, typer.Option(help="method name (default: the config's)")] = None,
    throughput: Annotated[Path | None, typer.Option(help="JSON with questions_per_s and step_seconds")] = None,
    devices: Annotated[int, typer.Option(min=1, help="devices of the run, for device-hours")] = 1,
    set_: Annotated[list[str], typer.Option("--set", help="override a config field")] = [],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of the table")] = False,
) -> None:
    """Per task: train rows, test questions, steps and cells to generate after reuse; projected time."""
    overrides = {**parse_sets(set_), **{k: v for k, v in {"sequence": sequence, "method.name": method,
                                                           "data_root": data_root}.items() if v is not None}}
    try:
        from cvqa_bench.run.plan import plan_output

        typer.echo(plan_output(load_run_config(config, overrides), throughput, devices, as_json))
    except user_errors() as exc:
        fail(describe_user_error(exc))


@app.command()
def validate(
    sequence: Annotated[str, typer.Argument(help="sequence name or path")],
    data_root: Annotated[str | None, typer.Option(help="root folder of the sequence's data")] = None,
) -> None:
    """Check a sequence: its YAML, every data file, every row and every image. Exit 2 on any problem."""
    try:
        from cvqa_bench.data.validation import validate_sequence

        problems, summary = validate_sequence(sequence, data_root)
    except user_errors() as exc:
        fail(describe_user_error(exc))
    for line in summary:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if problems:
        for line in problems:
            err_console.print(f"error: {line}", style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)
    console.print("[green]ok[/green]")
