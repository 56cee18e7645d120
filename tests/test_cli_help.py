"""CLI niceties: ``--version``, examples in every command's help, no type column, did-you-mean for config keys."""

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
TYPE_LABELS = re.compile(r"<(?:str|int|bool|path|float|list\[str\])>|\b(?:TEXT|INTEGER|BOOLEAN|PATH|FLOAT)\b")


def test_version_is_the_package_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert result.stdout.strip() == f"cvqa-bench {version}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_examples_and_no_type_column(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.stderr
    assert "Examples:" in result.stdout
    assert re.search(rf"\$ cvqa {command}\b", result.stdout), result.stdout
    assert TYPE_LABELS.findall(result.stdout) == [], result.stdout


def test_the_top_level_help_has_no_type_column() -> None:
    result = invoke("--help")
    assert result.exit_code == 0 and "--version" in result.stdout
    assert TYPE_LABELS.findall(result.stdout) == []


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
