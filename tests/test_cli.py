"""The ``cvqa`` command line: help, listings, did-you-mean errors and exit codes (no training here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ("run", "score", "report", "list", "validate")
SCORERS = {"vqa", "vqa_evalai", "exact", "choice", "contains", "grounding", "anls"}
OFFICIAL_SCORERS = {"exact_official", "exact_official_gqa", "exact_official_ocrvqa", "grounding_official",
                    "imagenet_official", "scienceqa_official"}  # the `official` protocol
# UCIT, MLLM-DCL / MLLM-ACL and TriGap (docs/benchmarks.md): their scripts' rules and the corrected metrics
BENCHMARK_SCORERS = {"caption_official", "cider", "bleu4", "meteor", "rouge_l", "ai2d_official", "pvqa_official",
                     "finvis_official", "sci_official", "sat_official", "ocrbench_official", "app_official",
                     "anls_prism", "numeric", "mathvista_judge", "mathvista_rule"}
# A word of each method's description that says what it is (docs/design.md, "Methods").
METHOD_WORDS = {"finetune": "sequential", "ema": "0.01", "llaca": "alpha", "replay": "buffer"}


def listed(output: str) -> dict[str, str]:
    """``cvqa list`` output as name → description."""
    rows = {}
    for line in output.splitlines():
        name, _, description = line.strip().partition(" ")
        if name:
            rows[name] = description.strip()
    return rows


def error_lines(result) -> list[str]:
    """The ``error: ...`` lines printed on stderr."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_help_lists_every_command(cvqa):
    result = cvqa("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert f" {command} " in result.stdout, f"{command!r} missing from --help"


def test_no_arguments_shows_help_not_a_traceback(cvqa):
    result = cvqa()
    assert result.exit_code == 2  # click's usage exit code for no_args_is_help
    assert "Usage" in result.output and "Traceback" not in result.output


def test_help_and_list_do_not_import_torch():
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from cvqa_bench.cli import app\n"
        "codes = [CliRunner().invoke(app, args).exit_code for args in\n"
        "         (['--help'], ['list', 'methods'], ['list', 'scorers'], ['list', 'sequences'])]\n"
        "print(json.dumps({'codes': codes, 'heavy': sorted(m for m in ('torch', 'transformers', 'peft')\n"
        "                                                  if m in sys.modules)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"codes": [0, 0, 0, 0], "heavy": []}


def test_list_methods_shows_all_four_with_descriptions(cvqa):
    result = cvqa("list", "methods")
    assert result.exit_code == 0
    rows = listed(result.stdout)
    # a subset: other test modules may register test-only methods in the same process
    assert set(METHOD_WORDS) <= set(rows)
    for name, word in METHOD_WORDS.items():
        assert word in rows[name], f"{name}: description {rows[name]!r} lacks {word!r}"


def test_list_scorers_shows_the_corrected_and_the_official_ones(cvqa):
    result = cvqa("list", "scorers")
    assert result.exit_code == 0
    rows = listed(result.stdout)
    assert set(rows) == SCORERS | OFFICIAL_SCORERS | BENCHMARK_SCORERS
    assert all(len(d.split()) >= 3 for d in rows.values()), rows


def test_list_sequences_shows_synthetic_with_its_tasks(cvqa):
    result = cvqa("list", "sequences")
    assert result.exit_code == 0
    rows = listed(result.stdout)
    assert "synthetic" in rows
    assert "mcq → color → shape → count → position → glyph" in rows["synthetic"]


def test_list_something_else_exits_2(cvqa):
    result = cvqa("list", "datasets")
    assert result.exit_code == 2
    assert error_lines(result) == ["error: cannot list 'datasets'; choose methods, sequences, scorers or models"]


def test_unknown_method_suggests_llaca(cvqa, small_sequence, tmp_path):
    out = tmp_path / "run"
    result = cvqa("run", "--sequence", small_sequence, "--method", "llaac", "--out", out)
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert "unknown method 'llaac'" in line and "Did you mean 'llaca'" in line
    assert not out.exists()


def test_unknown_scorer_in_score_suggests_close_names(cvqa, tmp_path):
    result = cvqa("score", tmp_path, "--scorer", "exactt")
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert "unknown scorer 'exactt'" in line and "Did you mean 'exact'" in line
    assert list(tmp_path.iterdir()) == []


def test_report_with_a_bad_format_exits_2(cvqa, tmp_path):
    result = cvqa("report", tmp_path, "--format", "xml")
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert "--format" in line and "xml" in line and "latex" in line
    assert list(tmp_path.iterdir()) == []


def test_report_on_a_folder_without_a_run_names_the_missing_file(cvqa, tmp_path):
    result = cvqa("report", tmp_path)
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert str(tmp_path / "matrix.csv") in line


def test_bad_set_override_exits_2(cvqa):
    result = cvqa("run", "--set", "train.max_steps")
    assert result.exit_code == 2
    assert error_lines(result) == ["error: --set expects KEY=VALUE (e.g. train.max_steps=50), got 'train.max_steps'"]


@pytest.mark.parametrize("value", ["0", "abc"])
def test_invalid_set_value_names_the_field(cvqa, small_sequence, value):
    result = cvqa("run", "--sequence", small_sequence, "--set", f"train.max_steps={value}")
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert "train.max_steps" in line


def test_validate_synthetic_exits_0(cvqa):
    result = cvqa("validate", "synthetic")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    for task in ("mcq", "color", "shape", "count", "position", "glyph"):
        assert any(line.split()[:1] == [task] and line.rstrip().endswith("ok") for line in lines), task
    assert lines[-1] == "ok"
    assert error_lines(result) == []
