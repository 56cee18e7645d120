"""The paired whole-process benchmark: alternating order, min and median, and the outputs' digests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvqa_bench.bench.whole_run import Variant, outputs_digest, paired_runs


def fake_run(label: str, prediction: str, extra: str = "") -> str:
    """A shell command that appends its label to order.txt and writes a run folder ``out``."""
    record = json.dumps({"id": "q1", "prediction": prediction, **({"prompt": extra} if extra else {})})
    return (f"echo {label} >> order.txt && mkdir -p out/predictions/1-a && echo 'stage,a' > out/matrix.csv && "
            f"echo '{record}' > out/predictions/1-a/a.jsonl")


def test_runs_alternate_and_report_min_median_and_ratios(tmp_path: Path):
    a = Variant("A", fake_run("A", "red"), tmp_path, Path("out"))
    b = Variant("B", fake_run("B", "red"), tmp_path, Path("out"))
    result = paired_runs(a, b, runs=3, warmup=True)
    assert (tmp_path / "order.txt").read_text().split() == ["A", "B", "A", "B", "B", "A", "A", "B"]
    for label in ("A", "B"):
        timing = result["timings"][label]
        assert len(timing["seconds"]) == 3 and timing["min"] == min(timing["seconds"])
        assert timing["median"] == sorted(timing["seconds"])[1]
    assert result["speedup_median"] > 0 and result["speedup_min"] > 0
    assert result["identical"] == {"matrix": True, "answers": True, "prediction_files": True}


def test_answers_compare_across_added_fields_and_differences_are_seen(tmp_path: Path):
    same_answer = paired_runs(Variant("A", fake_run("A", "red"), tmp_path, Path("out")),
                              Variant("B", fake_run("B", "red", extra="USER: ..."), tmp_path, Path("out")),
                              runs=1, warmup=False)
    assert same_answer["identical"] == {"matrix": True, "answers": True, "prediction_files": False}
    other_answer = paired_runs(Variant("A", fake_run("A", "red"), tmp_path, Path("out")),
                               Variant("B", fake_run("B", "blue"), tmp_path, Path("out")), runs=1, warmup=False)
    assert other_answer["identical"]["answers"] is False


def test_a_failing_command_names_the_variant(tmp_path: Path):
    with pytest.raises(RuntimeError, match="B: `exit 3` exited 3"):
        paired_runs(Variant("A", fake_run("A", "x"), tmp_path, Path("out")), Variant("B", "exit 3", tmp_path, Path("out")),
                    runs=1, warmup=False)


def test_digest_reads_matrix_and_predictions(tmp_path: Path):
    (tmp_path / "predictions" / "0-base").mkdir(parents=True)
    (tmp_path / "matrix.csv").write_text("stage,a\n0,1.0\n")
    (tmp_path / "predictions" / "0-base" / "a.jsonl").write_text('{"id": 1, "prediction": "x"}\n')
    first = outputs_digest(tmp_path)
    (tmp_path / "predictions" / "0-base" / "a.jsonl").write_text('{"id": 1, "prediction": "y"}\n')
    assert outputs_digest(tmp_path)["answers"] != first["answers"]
    assert outputs_digest(tmp_path)["matrix"] == first["matrix"]
