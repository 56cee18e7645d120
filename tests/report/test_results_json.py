"""results.json: Wilson intervals checked against hand-computed values, and a hand-built run folder
scored into a results.json that validates against docs/results.schema.json with the expected numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import invoke, small_sequence_dict

from cvqa_bench.config import RunConfig
from cvqa_bench.report.results import (bootstrap_interval, cell_stats, invocation_record, shortened_reasons,
                                       wilson_interval)
from cvqa_bench.run.loop import summarize
from cvqa_bench.scoring.seals import seal_predictions

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "results.schema.json").read_text())

# Wilson 95% intervals, computed by hand with 40-digit decimals from
# (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.959963984540054.
# 81/263 is Newcombe (1998), Stat. Med. 17:857, example: 0.2553 to 0.3662.
WILSON = {
    (0, 4): (0.0, 0.4898908364545973017),
    (1, 4): (0.0455872608097005664, 0.6993581574175980844),
    (2, 4): (0.1500389891521495142, 0.8499610108478504858),
    (4, 4): (0.5101091635454026983, 1.0),
    (3, 8): (0.1368442858235973726, 0.6942576053973726806),
    (81, 263): (0.2552885198782742317, 0.3662095769828000629),
}


@pytest.mark.parametrize(("k", "n"), sorted(WILSON))
def test_wilson_interval_equals_the_hand_computed_one(k: int, n: int) -> None:
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(WILSON[k, n][0], abs=1e-6)
    assert high == pytest.approx(WILSON[k, n][1], abs=1e-6)


def test_graded_scores_get_the_sample_standard_error_and_a_seeded_bootstrap() -> None:
    stats = cell_stats([1.0, 0.3, 1.0, 1.0], 82.5, seed=[0, 2, 0])
    assert stats["interval"] == "bootstrap" and stats["n"] == 4
    assert stats["se"] == pytest.approx(17.5)  # s = sqrt(0.3675 / 3) = 0.35, s / sqrt(4) = 0.175
    low, high = stats["ci95"]
    assert 30.0 <= low <= 82.5 <= high <= 100.0  # a resample mean lies between 0.3 (all 0.3) and 1
    assert low < 82.5 < high
    assert cell_stats([1.0, 0.3, 1.0, 1.0], 82.5, seed=[0, 2, 0]) == stats
    assert bootstrap_interval([0.3] * 5, seed=1) == pytest.approx((0.3, 0.3))
    binary = cell_stats([1.0, 0.0, 0.0, 0.0], 25.0, seed=0)
    assert binary["interval"] == "wilson" and binary["se"] == pytest.approx(100 * math.sqrt(0.25 * 0.75 / 4))


# The hand-built run: color scored with vqa (9 x "red" + 1 x "blue": "red" scores 1, "blue" 0.3),
# count with exact ("3"). Four questions per cell.
COLOR_PREDICTIONS = [["blue", "x", "x", "x"], ["red", "red", "x", "x"], ["red", "blue", "red", "red"]]
COUNT_PREDICTIONS = [["3", "x", "x", "x"], ["3", "3", "x", "x"], ["3", "3", "3", "3"]]


def build_run(root: Path, config: dict, invocation: dict | None) -> Path:
    root.mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
    sequence = small_sequence_dict("hand", ("color", "count"))
    (root / "sequence.yaml").write_text(yaml.safe_dump(sequence, sort_keys=False))
    manifest = {"seed": 0, "git_commit": "abc+dirty", "packages": {"torch": "2.13.0"}, "device": {"cuda": False},
                "data": {"color": {"n_test": 8}, "count": {"n_test": 8}}, "model": {"source": "/m"}}
    if invocation is not None:
        manifest["invocation"] = invocation
    (root / "manifest.json").write_text(json.dumps(manifest))
    for stage, name in enumerate(["0-zero-shot", "1-color", "2-count"]):
        folder = root / "predictions" / name
        folder.mkdir(parents=True)
        for task, predictions, answers in [("color", COLOR_PREDICTIONS, ["red"] * 9 + ["blue"]),
                                           ("count", COUNT_PREDICTIONS, ["3"])]:
            lines = [json.dumps({"id": f"{task}{i}", "prediction": p, "answers": answers})
                     for i, p in enumerate(predictions[stage])]
            (folder / f"{task}.jsonl").write_text("\n".join(lines) + "\n")
    seal_predictions(root, sorted(root.glob("predictions/*/*.jsonl")))  # as a run seals what it wrote (issue 30)
    return root


def test_a_scored_run_writes_a_results_json_that_validates_and_holds_the_hand_computed_numbers(tmp_path: Path) -> None:
    config = RunConfig.model_validate({"eval": {"limit": 4}, "train": {"max_steps": 40}}).model_dump(mode="json")
    invocation = {"config_file": "my.yaml", "file": {"train.max_steps": 300, "train.epochs": 1.0},
                  "overrides": {"eval.limit": 4}}
    run = build_run(tmp_path / "hand", config, invocation)
    summarize(run)
    results = json.loads((run / "results.json").read_text())
    jsonschema.validate(results, SCHEMA)
    assert results["config_hash"] == RunConfig.model_validate(config).stable_hash()
    assert results["provenance"]["git_commit"] == "abc+dirty" and results["provenance"]["dtype"] == "float32"
    assert results["tasks"] == [
        {"name": "color", "scorer": "vqa", "n_questions": 4, "n_test": 8, "limit": 4},
        {"name": "count", "scorer": "exact", "n_questions": 4, "n_test": 8, "limit": 4},
    ]
    cells = results["matrix"]["cells"]
    assert [c["score"] for row in cells for c in row] == pytest.approx([7.5, 25.0, 50.0, 50.0, 82.5, 100.0])
    assert [[c["interval"] for c in row] for row in cells] == [["bootstrap", "wilson"], ["wilson", "wilson"],
                                                               ["bootstrap", "wilson"]]
    for (row, col), k in {(0, 1): 1, (1, 0): 2, (1, 1): 2, (2, 1): 4}.items():
        assert cells[row][col]["ci95"] == pytest.approx([100 * v for v in WILSON[k, 4]], abs=1e-4)
    assert cells[0][0]["se"] == pytest.approx(7.5)  # [0.3, 0, 0, 0]: s = 0.15
    metrics = {m["name"]: m for m in results["metrics"]}
    assert metrics["final_avg"]["value"] == pytest.approx(91.25) and metrics["final_avg"]["paper_name"] == "Avg.ACC"
    assert metrics["bwt"]["value"] == pytest.approx(32.5) and metrics["bwt"]["formula"] == "mean_{i<T} (A[T][i] - A[i][i])"
    assert metrics["fwt"]["value"] == pytest.approx(25.0) and metrics["mft"]["value"] == pytest.approx(75.0)
    assert results["shortened"] == {"shortened": True, "reasons": [
        "eval.limit=4: only the first 4 test questions of each task",
        "train.max_steps=40: the config file has 300"]}
    assert results["overrides"] == {"eval.limit": 4}
    assert "- shortened: `eval.limit=4: only the first 4 test questions" in (run / "report.md").read_text()
    shown = invoke("report", run)
    assert shown.exit_code == 0 and "warning: hand is a shortened run: eval.limit=4" in shown.stdout
    scored = [json.loads(line) for line in (run / "predictions" / "2-count" / "color.jsonl").read_text().splitlines()]
    assert [r["score"] for r in scored] == pytest.approx([1.0, 0.3, 1.0, 1.0])


def test_a_full_run_is_not_flagged(tmp_path: Path) -> None:
    config = RunConfig().model_dump(mode="json")
    run = build_run(tmp_path / "full", config, {"config_file": None, "file_max_steps": 300, "set": {}})
    summarize(run)
    results = json.loads((run / "results.json").read_text())
    jsonschema.validate(results, SCHEMA)
    assert results["shortened"] == {"shortened": False, "reasons": []}
    assert "shortened" not in (run / "report.md").read_text() and "shortened" not in invoke("report", run).stdout
    assert shortened_reasons({**config, "eval": {"max_new_tokens": 8}}, None) == [
        "eval.max_new_tokens=8: every answer capped at 8 tokens"]


def test_an_override_that_does_not_shorten_is_recorded_apart(tmp_path: Path) -> None:
    """Issue 31: --set train.report_to=[tensorboard] or a method option is an override, not a shortened run."""
    config_file = tmp_path / "my.yaml"
    config_file.write_text(yaml.safe_dump({"train": {"max_steps": 300}}))
    sets = {"train.report_to": ["tensorboard"], "method.options.threshold": 0.3}
    invocation = invocation_record(config_file, sets)
    config = RunConfig.model_validate({"train": {"max_steps": 300, "report_to": ["tensorboard"]}}).model_dump(mode="json")
    assert shortened_reasons(config, invocation) == []
    run = build_run(tmp_path / "sets", config, invocation)
    summarize(run)
    results = json.loads((run / "results.json").read_text())
    jsonschema.validate(results, SCHEMA)
    assert results["shortened"] == {"shortened": False, "reasons": []} and results["overrides"] == sets


@pytest.mark.parametrize(("train", "reasons"), [
    ({"max_steps": 400}, []),  # more steps than the file: not shortened
    ({"max_steps": 299}, ["train.max_steps=299: the config file has 300"]),
    ({"max_steps": None, "epochs": 2.0}, []),
])
def test_only_fewer_steps_than_the_file_shorten_a_run(tmp_path: Path, train: dict, reasons: list) -> None:
    config_file = tmp_path / "my.yaml"
    config_file.write_text(yaml.safe_dump({"train": {"max_steps": 300}}))
    config = RunConfig.model_validate({"train": train}).model_dump(mode="json")
    assert shortened_reasons(config, invocation_record(config_file, {})) == reasons


def test_fewer_epochs_than_the_file_shorten_a_run(tmp_path: Path) -> None:
    config_file = tmp_path / "my.yaml"
    config_file.write_text(yaml.safe_dump({"train": {"max_steps": None, "epochs": 3.0}}))
    config = RunConfig.model_validate({"train": {"max_steps": None, "epochs": 1.5}}).model_dump(mode="json")
    assert shortened_reasons(config, invocation_record(config_file, {})) == [
        "train.epochs=1.5: the config file has 3.0"]
    assert shortened_reasons(config, {"file_max_steps": 300, "set": {}}) == []  # an older manifest still reads


def test_the_schema_rejects_a_cell_without_its_interval_fields(tmp_path: Path) -> None:
    run = build_run(tmp_path / "bad", RunConfig().model_dump(mode="json"), None)
    summarize(run)
    results = json.loads((run / "results.json").read_text())
    del results["matrix"]["cells"][0][0]["ci95"]
    with pytest.raises(jsonschema.ValidationError, match="ci95"):
        jsonschema.validate(results, SCHEMA)
