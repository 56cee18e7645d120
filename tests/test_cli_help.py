"""CLI niceties: ``--version``, examples and option types in every command's help, did-you-mean for config keys."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from conftest import invoke

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    import typer

    from cvqa_bench.cli import app

    return sorted(typer.main.get_command(app).commands)  # every command, so a new one needs its examples


COMMANDS = _commands()
TYPE_LABEL = re.compile(r"<(?:str|int|bool|path|float|list\[str\]|int range|float range|choice)>")


def test_version_is_the_package_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert result.stdout.strip() == f"cvqa-bench {version}"


def _help(*command: str) -> str:
    from typer.testing import CliRunner

    from cvqa_bench.cli import app

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_examples_and_a_type_per_option(command: str) -> None:
    """Issue 31 (12): the option types are shown, as lm-eval users expect."""
    text = _help(command)
    assert "Examples:" in text
    assert re.search(rf"\$ cvqa {command}\b", text), text
    options = [line for line in text.splitlines() if re.match(r"\W*--[a-z]", line)]
    assert options and all(TYPE_LABEL.search(line) for line in options), text


def test_run_takes_limit_and_device_as_options() -> None:
    """Issue 31 (12): ``cvqa run --limit N --device D`` as lm-eval spells them, with their types."""
    lines = {line.split()[1]: line for line in _help("run").splitlines() if re.match(r"\W*--[a-z]", line)}
    assert "<int range>" in lines["--limit"] and "<str>" in lines["--device"]
    from cvqa_bench.config import load_run_config

    assert load_run_config(None, {"eval.limit": 3, "model.device": "cpu"}).model.device == "cpu"


@pytest.mark.parametrize(("args", "expected"), [
    (["--limit", "0"], "Invalid value for '--limit'"),
    (["--device", "gpu"], "model.device: String should match pattern"),
])
def test_a_bad_limit_or_device_is_refused_in_one_line(args: list[str], expected: str) -> None:
    result = invoke("run", *args)
    assert result.exit_code == 2 and expected in result.stderr, result.stderr


def test_the_help_examples_name_paths_that_resolve_from_any_folder(tmp_path: Path, monkeypatch) -> None:
    """Every ``configs/...`` or ``tasks/...`` path in an example is a built-in file, also outside a checkout."""
    from cvqa_bench.cli_help import EXAMPLES
    from cvqa_bench.config.base import resolve_path

    monkeypatch.chdir(tmp_path)
    named = {w for lines in EXAMPLES.values() for line in lines for w in line.split()
             if w.startswith(("configs/", "tasks/"))}
    assert named and all(resolve_path(w).is_file() for w in named), named


@pytest.mark.parametrize(("yaml_text", "sets", "expected"), [
    ("train: {max_step: 3}\n", [], "train.max_step: unknown key (did you mean 'max_steps'?)"),
    ("trian: {max_steps: 3}\n", [], "trian: unknown key (did you mean 'train'?)"),
    ("seed: 1\n", ["eval.limt=3"], "eval.limt: unknown key (did you mean 'limit'?)"),
    ("seed: 1\n", ["model.lora.alpah=8"], "model.lora.alpah: unknown key (did you mean 'alpha'?)"),
    ("seed: 1\n", ["train.zzz=1"], "train.zzz: unknown key (check the spelling)"),
])
def test_an_unknown_config_key_gets_a_did_you_mean(tmp_path: Path, yaml_text: str, sets: list[str],
                                                   expected: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    result = invoke("run", "--config", config, *[a for s in sets for a in ("--set", s)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {config}: {expected}"


def test_an_unknown_method_option_gets_a_did_you_mean(small_config: Path) -> None:
    result = invoke("run", "--config", small_config, "--method", "llaca", "--set", "method.options.treshold=0.5")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: method 'llaca' options: treshold: unknown key (did you mean 'threshold'?)"
