"""UCIT, MLLM-DCL, MLLM-ACL and TriGap end to end on stand-in data roots in their official layouts.

Each built-in sequence validates and plans on its stand-in root (tests/benchmark_standins.py) and a short
run (tiny llava-hf model, one step per task, two questions per task, four new tokens) gives the full
(T+1) x T matrix and a report whose metrics carry the benchmark's own names (UCIT "Avg"/"Last",
MCITlib "MFT"/"MFN"/"MAA"/"BWT").
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import benchmark_standins as bench
import coin_standins
from cvqa_bench.cli import app
from cvqa_bench.scoring.cells import score_run

runner = CliRunner()
NAMES = {"ucit": {"avg_incremental": "Avg", "final_avg": "Last"},
         "mllm-dcl": {"mft": "MFT", "final_avg": "MFN", "avg_incremental": "MAA", "bwt": "BWT"},
         "mllm-acl": {"mft": "MFT", "final_avg": "MFN", "avg_incremental": "MAA", "bwt": "BWT"},
         "trigap": {"avg_incremental": "Avg", "final_avg": "Last"}}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return coin_standins.build_tiny_llava(tmp_path_factory.mktemp("model") / "llava-tiny-hf")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_llava: Path) -> dict[str, tuple[Path, Path, str]]:
    """Each sequence's stand-in root, its short run folder and the output of `cvqa run`."""
    out = {}
    for sequence in bench.SEQUENCES:
        base = tmp_path_factory.mktemp(sequence)
        root = bench.build_root(sequence, base / "data")
        result = runner.invoke(app, [
            "run", "--sequence", sequence, "--data-root", str(root), "--model", str(tiny_llava), "--method", "finetune",
            "--set", "train.max_steps=1", "--set", "train.batch_size=16", "--set", "eval.batch_size=4",
            "--set", "eval.limit=2", "--set", "eval.max_new_tokens=4", "--out", str(base / "run")])
        assert result.exit_code == 0, f"{sequence}: {result.output}"
        out[sequence] = (root, base / "run", result.output)
    return out


@pytest.mark.parametrize("sequence", bench.SEQUENCES)
def test_validate_and_plan(sequence: str, runs: dict) -> None:
    root = runs[sequence][0]
    checked = runner.invoke(app, ["validate", sequence, "--data-root", str(root)])
    assert checked.exit_code == 0, checked.output
    assert checked.output.count(" ok") >= len(NAMES[sequence]) and checked.output.rstrip().endswith("ok")
    plan = runner.invoke(app, ["plan", sequence, "--data-root", str(root)])
    assert plan.exit_code == 0, plan.output


@pytest.mark.parametrize("sequence", bench.SEQUENCES)
def test_short_run_gives_the_full_matrix_and_the_benchmark_names(sequence: str, runs: dict) -> None:
    _, run_dir, _ = runs[sequence]
    tasks = json.loads((run_dir / "metrics.json").read_text())["tasks"]
    with open(run_dir / "matrix.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["stage", "trained_task", *tasks]
    assert len(rows) == len(tasks) + 2 and all(len(r) == len(tasks) + 2 for r in rows)
    assert all(v != "" for r in rows[1:] for v in r[2:])
    report = runner.invoke(app, ["report", str(run_dir), "--out", str(run_dir / "report")])
    assert report.exit_code == 0, report.output
    text = (run_dir / "report" / "report.md").read_text()
    assert "| metric | benchmark name | paper name |" in text
    for metric, name in NAMES[sequence].items():
        assert f"| {metric} | {name} |" in text


def test_vizwiz_with_2999_captioned_ids_is_named_by_validate(tmp_path: Path) -> None:
    root = bench.build_root("ucit", tmp_path / "ucit", defect="vizwiz_2999")
    result = runner.invoke(app, ["validate", "ucit", "--data-root", str(root)])
    assert result.exit_code == 2
    assert (f"{root}/VizWiz-caption/val_coco_type_3000.json: captions for 2 of 3 test rows: image_id 3 "
            "(test row 2) has none") in result.output
    assert "HiDe-LLaVA issue 7" in result.output


def test_official_math_needs_a_judge_endpoint_then_caches(runs: dict, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    run_dir = runs["mllm-acl"][1]
    monkeypatch.delenv("CVQA_JUDGE_URL", raising=False)
    missing = runner.invoke(app, ["score", str(run_dir), "--protocol", "official"])
    assert missing.exit_code == 2
    assert "set CVQA_JUDGE_URL" in missing.output and "Traceback" not in missing.output
    assert len([line for line in missing.output.splitlines() if line.strip()]) == 1
    fake = bench.FakeJudge()
    try:
        monkeypatch.setenv("CVQA_JUDGE_URL", fake.url)
        monkeypatch.setenv("CVQA_JUDGE_CACHE", str(tmp_path / "judge"))
        matrix, tasks, scorers = score_run(run_dir, protocol="official", out_dir=run_dir / "protocols" / "official")
        assert scorers["Math"] == "mathvista_judge" and scorers["OCR"] == "ocrbench_official"
        asked = len(fake.bodies)
        assert asked > 0  # four-token answers of a tiny model: the official prefetch cannot read them all
        again, _, _ = score_run(run_dir, protocol="official", out_dir=run_dir / "protocols" / "official")
        assert len(fake.bodies) == asked  # every reply from the cache: zero requests
        assert (again == matrix).all()
    finally:
        fake.server.shutdown()
        fake.server.server_close()
