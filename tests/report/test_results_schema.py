"""Issue 31 (8): results.schema.json is generated from the pydantic models that check results.json, ships in
the package (docs/ links to it), and a results.json that breaks it is never written."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from cvqa_bench.report import results as results_module
from cvqa_bench.report.results_model import SCHEMA_FILE, results_schema, validate_results

ROOT = Path(__file__).resolve().parents[2]

# A results.json written by hand: one task, the zero-shot row and one stage.
CELL = {"score": 50.0, "n": 2, "se": 35.35533905932738, "ci95": [9.45, 90.55], "interval": "wilson"}
VALID = {
    "schema": "cvqa-bench/results/1",
    "run": {"name": "r", "sequence": "s", "method": "llaca", "seed": 0, "protocol": "corrected"},
    "config": {"model": {}, "train": {}, "eval": {}, "method": {"name": "llaca"}, "seed": 0},
    "config_hash": "0" * 64,
    "provenance": {"git_commit": None, "packages": {"torch": "2.13.0"}, "device": {}, "dtype": "float32"},
    "shortened": {"shortened": False, "reasons": []},
    "overrides": {"train.report_to": ["tensorboard"]},
    "tasks": [{"name": "color", "scorer": "vqa", "n_questions": 2, "n_test": 2, "limit": None}],
    "matrix": {"rows": ["zero-shot", "color"], "columns": ["color"], "unit": "percent", "confidence": 0.95,
               "cells": [[CELL], [CELL]]},
    "metrics": [{"name": "final_avg", "value": 50.0, "paper_name": "Avg.ACC", "other_name": None,
                 "formula": "mean_i A[T][i]", "higher_is_better": True}],
}


def _broken(path: tuple, value: object) -> dict:
    data = copy.deepcopy(VALID)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


BROKEN = {
    "a score over 100": (("matrix", "cells", 0, 0, "score"), 101.0),
    "an interval of three values": (("matrix", "cells", 1, 0, "ci95"), [1.0, 2.0, 3.0]),
    "an unknown metric": (("metrics", 0, "name"), "accuracy"),
    "an unknown key": (("shortened", "why"), "x"),
    "another format version": (("schema",), "cvqa-bench/results/2"),
    "a short hash": (("config_hash",), "abc"),
    "a config without its sections": (("config",), {"seed": 0}),
}


def test_the_shipped_schema_is_the_one_generated_from_the_models() -> None:
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == results_schema()
    assert (ROOT / "docs" / "results.schema.json").read_bytes() == SCHEMA_FILE.read_bytes()
    assert SCHEMA_FILE.parent == ROOT / "cvqa_bench" / "report"  # inside the package: the wheel carries it
    package_data = (ROOT / "pyproject.toml").read_text()
    assert '"report/results.schema.json"' in package_data


def test_a_hand_written_results_file_is_valid_to_both() -> None:
    schema = results_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validate_results(VALID)
    jsonschema.validate(VALID, schema)


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_the_models_and_the_generated_schema_refuse_the_same_broken_file(what: str) -> None:
    bad = _broken(*BROKEN[what])
    with pytest.raises(ValidationError):
        validate_results(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, results_schema())


def test_a_results_file_that_breaks_the_schema_is_not_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(results_module, "build_results", lambda *a, **k: _broken(("matrix", "unit"), "fraction"))
    with pytest.raises(ValidationError, match="unit"):
        results_module.write_results(tmp_path, tmp_path, None, [], {}, {}, "corrected")
    assert not (tmp_path / results_module.RESULTS_FILE).exists()
