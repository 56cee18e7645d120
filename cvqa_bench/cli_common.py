"""What every ``cvqa`` command shares: the Typer app, the consoles, the one-line error and ``--set`` parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console

from cvqa_bench.cli_help import HelpGroup, VersionOption
from cvqa_bench.config import ConfigError
from cvqa_bench.config.loading import UniqueKeyLoader
from cvqa_bench.registry import UnknownNameError


app = typer.Typer(no_args_is_help=True, add_completion=False, cls=HelpGroup,
                  help="Benchmark harness for continual visual instruction tuning (CoIN, LLaCA and baselines).")
console = Console()
err_console = Console(stderr=True)

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, UnknownNameError, FileNotFoundError)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one line to stderr and exit with ``code`` (2: the input is at fault)."""
    err_console.print(f"error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=code)


@app.callback()
def _root(version: VersionOption = False) -> None:
    """Benchmark harness for continual visual instruction tuning (CoIN, LLaCA and baselines)."""


def user_errors() -> tuple[type[Exception], ...]:
    """The exception types that mean bad input or a bad environment: one line, exit 2, no traceback."""
    from cvqa_bench.data.rows import DataError

    # OSError: a read-only folder, a full disk, no permission; the others: hostile input files.
    return (*USER_ERRORS, DataError, OSError, UnicodeDecodeError, RecursionError, yaml.YAMLError)


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs as a dict, each value parsed as YAML (malformed YAML or a key given twice in a
    flow mapping: one line, exit 2)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--set expects KEY=VALUE (e.g. train.max_steps=50), got {pair!r}")
        try:
            overrides[key.strip()] = yaml.load(value, Loader=UniqueKeyLoader)  # safe loading, duplicate keys refused
        except (yaml.YAMLError, RecursionError) as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0] or type(exc).__name__
            fail(f"--set {key.strip()}: the value {value!r} is not valid YAML ({problem})")
    return overrides



def print_run(run_dir: Path, out: Console, brief: bool = False, plots: bool = True) -> None:
    """Print one run's matrix and metrics (and refresh its report.md / heatmap.png); ``brief``: the key columns;
    ``plots=False``: the heatmap is left to the caller."""
    from cvqa_bench.report.build import build_report, print_report

    print_report(build_report([run_dir], run_dir, formats=("md",), plots=plots), out, brief=brief)
