"""The real CoIN path end to end on CPU: ``tasks/coin8.yaml`` on a CoIN-format stand-in data root.

The data root has all eight task folders in the official layout (``playground/Instructions/<Task>/``,
``cl_dataset/...``, val.json with 10 answers for TextVQA / VizWiz / VQAv2, grounding rows with
``answer_bbox`` and ``size``, a text-only ScienceQA row, multi-turn OCR-VQA rows); the model is the
tiny LLaVA saved as a llava-hf directory with the vicuna_v1 template and passed with ``--model``,
exactly as a real checkpoint would be.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import coin_standins as standins
from cvqa_bench.cli import app

TASKS = list(standins.TASKS)
METRICS = {"final_avg", "mft", "avg_incremental", "bwt", "forgetting", "forgetting_last", "fwt"}
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: the tiny model gains nothing from two, and on a busy 2-core machine two
    threads spin against other processes (a tiny forward measured 420 ms instead of 13 ms)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def coin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return standins.build_coin_root(tmp_path_factory.mktemp("coin") / "CoIN")


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return standins.build_tiny_llava(tmp_path_factory.mktemp("model") / "llava-tiny-hf")


def run_coin8(root: Path, model: Path, out: Path, method: str, *extra: str) -> Any:
    args = ["run", "--sequence", "coin8", "--data-root", str(root), "--model", str(model), "--method", method,
            "--set", "train.max_steps=2", "--set", "train.batch_size=16", "--set", "eval.batch_size=4",
            "--set", "eval.max_new_tokens=8", *extra, "--out", str(out)]
    return runner.invoke(app, args)


def read_matrix(run_dir: Path) -> list[list[str]]:
    with open(run_dir / "matrix.csv", newline="") as fh:
        return list(csv.reader(fh))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_run_outputs(run_dir: Path) -> list[list[float]]:
    """The matrix (9 stages x 8 tasks) and metrics.json of a finished coin8 run; returns the values."""
    rows = read_matrix(run_dir)
    assert rows[0] == ["stage", "trained_task", *TASKS]
    assert [r[:2] for r in rows[1:]] == [["0", "zero-shot"]] + [[str(k), t] for k, t in enumerate(TASKS, 1)]
    values = [[float(v) for v in r[2:]] for r in rows[1:]]
    assert len(values) == 9 and all(len(r) == 8 and all(0.0 <= v <= 100.0 for v in r) for r in values)
    summary = json.loads((run_dir / "metrics.json").read_text())
    metrics = summary["metrics"]
    assert set(metrics) == METRICS
    assert summary["tasks"] == TASKS
    assert summary["scorers"] == {"ScienceQA": "choice", "TextVQA": "vqa_evalai", "ImageNet": "contains",
                                  "GQA": "exact", "VizWiz": "exact", "Grounding": "grounding", "VQAv2": "exact",
                                  "OCRVQA": "exact"}
    # docs/design.md formulas on the matrix as written: final_avg = mean of the last row, mft = mean of A[i][i]
    assert metrics["final_avg"] == pytest.approx(sum(values[8]) / 8)
    assert metrics["mft"] == pytest.approx(sum(values[i + 1][i] for i in range(8)) / 8)
    for stage, stage_task in enumerate(["zero-shot", *TASKS]):
        for task in TASKS:
            records = read_jsonl(run_dir / "predictions" / f"{stage}-{stage_task}" / f"{task}.jsonl")
            assert len(records) == 4
    return values


def test_coin8_validates_and_names_the_file_and_row_of_a_bad_row(coin_root: Path, tmp_path: Path) -> None:
    ok = runner.invoke(app, ["validate", "coin8", "--data-root", str(coin_root)])
    assert ok.exit_code == 0, ok.output
    assert "ok" in ok.output and "Grounding" in ok.output

    broken = tmp_path / "CoIN"
    shutil.copytree(coin_root, broken)
    gqa = broken / "playground" / "Instructions" / "GQA" / "test.json"
    rows = json.loads(gqa.read_text())
    del rows[2]["text"]
    gqa.write_text(json.dumps(rows))
    bad = runner.invoke(app, ["validate", "coin8", "--data-root", str(broken)])
    assert bad.exit_code == 2
    assert f"{gqa} row 2: missing field 'text'" in bad.output


@pytest.mark.parametrize(("sequence", "folder"), [("coin8-diverse", "Instructions_Diverse"),
                                                 ("coin8-10type", "Instructions_10Type")])
def test_instruction_variants_validate_on_their_folders(sequence: str, folder: str, tmp_path: Path) -> None:
    root = standins.build_coin_root(tmp_path / "CoIN", instructions=folder)
    result = runner.invoke(app, ["validate", sequence, "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    # the original-instruction sequence does not find its files there
    wrong = runner.invoke(app, ["validate", "coin8", "--data-root", str(root)])
    assert wrong.exit_code == 2
    assert f"{root}/playground/Instructions/ScienceQA/train.json: file not found" in wrong.output


def test_coin8_runs_end_to_end_with_finetune(coin_root: Path, tiny_llava: Path, tmp_path: Path) -> None:
    out = tmp_path / "coin8-finetune"
    result = run_coin8(coin_root, tiny_llava, out, "finetune")
    assert result.exit_code == 0, result.output
    check_run_outputs(out)
    # the evaluation files are CoIN's: val.json with 10 human answers for VizWiz, box strings for Grounding
    vizwiz = read_jsonl(out / "predictions" / "8-OCRVQA" / "VizWiz.jsonl")
    assert vizwiz[0]["id"] == "VizWiz_val_00000000.jpg" and len(vizwiz[0]["answers"]) == 10
    grounding = read_jsonl(out / "predictions" / "0-zero-shot" / "Grounding.jsonl")
    assert grounding[0]["answers"] == ["[0.05, 0.2, 0.42, 0.88]"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data_root"] == str(coin_root.resolve())


def test_coin8_runs_end_to_end_with_llaca(coin_root: Path, tiny_llava: Path, tmp_path: Path) -> None:
    out = tmp_path / "coin8-llaca"
    result = run_coin8(coin_root, tiny_llava, out, "llaca", "--set", "model.pad_to_square=true")
    assert result.exit_code == 0, result.output
    values = check_run_outputs(out)
    records = {r["task"]: r for r in json.loads((out / "method_records.json").read_text())["tasks"]}
    # the pinned schedule of tasks/coin8.yaml (docs/methods.md, "Instruction grouping", the table of the
    # official scripts): (group, dynamic EMA, the task whose weights it starts from)
    assert {t: (r["group"], r["ema"], r["start_task"] or "base") for t, r in records.items()} == {
        "ScienceQA": (0, False, "base"), "TextVQA": (1, False, "ScienceQA"), "ImageNet": (2, False, "TextVQA"),
        "GQA": (1, True, "TextVQA"), "VizWiz": (1, True, "GQA"), "Grounding": (3, False, "VizWiz"),
        "VQAv2": (1, True, "VizWiz"), "OCRVQA": (1, True, "VQAv2"),
    }
    # evaluation is routed to the task's own group: ScienceQA, ImageNet and Grounding are evaluated
    # with their post-task weights at every later stage, so their predictions (and scores) never change
    for task, trained_at in (("ScienceQA", 1), ("ImageNet", 3), ("Grounding", 6)):
        first = read_jsonl(out / "predictions" / f"{trained_at}-{task}" / f"{task}.jsonl")
        last = read_jsonl(out / "predictions" / "8-OCRVQA" / f"{task}.jsonl")
        assert first == last
        column = TASKS.index(task)
        assert {values[k][column] for k in range(trained_at, 9)} == {values[trained_at][column]}


def test_coin8_grouping_reproduces_the_published_groups(coin_root: Path) -> None:
    """The instruction rules of coin8.yaml (ImageNet: the line after ``<image>``) on CoIN's prompts."""
    from cvqa_bench.config import load_run_config
    from cvqa_bench.run.prepare import prepare

    prepared = prepare(load_run_config(None, {"sequence": "coin8", "data_root": str(coin_root),
                                              "method.name": "llaca"}), check_images=False)
    prepared.method.setup(prepared.task_infos())
    groups = [r["group"] for r in prepared.method.records()["tasks"]]
    # docs/methods.md, "Instruction grouping": {ScienceQA}, {TextVQA, GQA, VizWiz, VQAv2, OCR-VQA}, {ImageNet}, {Grounding}
    assert groups == [0, 1, 2, 1, 1, 3, 1, 1]


@pytest.mark.parametrize("as_list", [False, True])
def test_grounding_boxes_load_as_strings_or_lists(coin_root: Path, tmp_path: Path, as_list: bool) -> None:
    """CoIN's grounding rows hold ``answer_bbox`` as a string (its eval_grounding.py parses text); a
    list of four numbers is accepted too. Both load as the same numbers; a malformed box names the row."""
    from cvqa_bench.config import load_sequence
    from cvqa_bench.data.sources import load_sequence_data

    root = tmp_path / "CoIN"
    shutil.copytree(coin_root, root)
    grounding = root / "playground" / "Instructions" / "Grounding" / "test.json"
    rows = json.loads(grounding.read_text())
    assert rows[0]["answer_bbox"] == "[0.05, 0.2, 0.42, 0.88]"
    if as_list:
        for row in rows:
            row["answer_bbox"] = json.loads(row["answer_bbox"])
        grounding.write_text(json.dumps(rows))
    sequence, path = load_sequence("coin8")
    tasks = load_sequence_data(sequence, path, str(root), check_images=False)
    loaded = tasks[TASKS.index("Grounding")].test
    assert [r["answer_bbox"] for r in loaded[:2]] == [[0.05, 0.2, 0.42, 0.88], [0.16, 0.28, 0.52, 0.94]]
    assert loaded[0]["size"] == [640, 427]

    rows[1]["answer_bbox"] = "[0.1, 0.2, 0.3]"
    grounding.write_text(json.dumps(rows))
    result = runner.invoke(app, ["validate", "coin8", "--data-root", str(root)])
    assert result.exit_code == 2
    assert f"{grounding} row 1: answer_bbox:" in result.output


def test_an_assembled_base_trains_and_evaluates_coin_tasks(coin_root: Path, tmp_path: Path) -> None:
    """The ``cvqa assemble`` output (Llama tokenizer, CLIP tower, mm_projector) through ``cvqa run --model``."""
    from cvqa_bench.models.assemble import assemble_llava

    standins.build_llm_standin(tmp_path / "vicuna", layout="bin")
    standins.build_clip_standin(tmp_path / "clip", full=True, hidden_size=24)
    standins.write_projector(tmp_path / "mm_projector.bin", 24, 32)
    model = assemble_llava(tmp_path / "vicuna", tmp_path / "clip", tmp_path / "mm_projector.bin",
                           tmp_path / "base", dtype="float32")
    coin8 = (Path(__file__).resolve().parents[2] / "tasks" / "coin8.yaml").read_text()
    sequence = yaml.safe_load(coin8)
    tasks = [t for t in sequence["tasks"] if t["name"] in ("ScienceQA", "Grounding")]
    for task in tasks:  # the pinned LLaCA schedule names tasks this two-task sequence drops
        task.pop("schedule")
    sequence.update(name="coin2", tasks=tasks)
    path = tmp_path / "coin2.yaml"
    path.write_text(yaml.safe_dump(sequence, sort_keys=False))
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--sequence", str(path), "--data-root", str(coin_root), "--model", str(model),
                                 "--method", "finetune", "--set", "train.max_steps=2", "--set", "train.batch_size=16",
                                 "--set", "eval.batch_size=4", "--set", "eval.max_new_tokens=8",
                                 "--set", "model.pad_to_square=true", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_matrix(out)
    assert rows[0] == ["stage", "trained_task", "ScienceQA", "Grounding"]
    assert [r[:2] for r in rows[1:]] == [["0", "zero-shot"], ["1", "ScienceQA"], ["2", "Grounding"]]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["source"] == str(model)
    done = json.loads((out / "stages" / "1-ScienceQA" / "DONE.json").read_text())
    assert done["steps"] == 2


# The official per-task values (docs/protocol.md; scripts/CoIN/Train_CIA/*.sh, scripts/CoIN/Eval/*.sh):
# rows per optimizer step, the evaluation image mode, max_new_tokens, and the official scorer.
OFFICIAL_PROTOCOL = {
    "ScienceQA": (128, "crop", 1024, "scienceqa_official"), "TextVQA": (128, "pad", 128, "vqa_evalai"),
    "ImageNet": (160, "crop", 1024, "imagenet_official"), "GQA": (64, "pad", 128, "exact_official_gqa"),
    "VizWiz": (128, "pad", 128, "exact_official"), "Grounding": (64, "crop", 1024, "grounding_official"),
    "VQAv2": (80, "crop", 1024, "exact_official"), "OCRVQA": (96, "pad", 128, "exact_official_ocrvqa"),
}


def test_the_official_config_resolves_the_official_protocol_per_task(coin_root: Path, tiny_llava: Path,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "official"
    result = runner.invoke(app, [
        "run", "--config", str(Path(__file__).resolve().parents[2] / "configs" / "coin-official.yaml"), "--model", str(tiny_llava), "--data-root", str(coin_root),
        "--set", "model.dtype=float32", "--set", "model.gradient_checkpointing=false", "--set", "train.max_steps=1",
        "--set", "eval.limit=2", "--set", "eval.max_new_tokens=4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    protocol = json.loads((out / "manifest.json").read_text())["protocol"]
    assert protocol["scoring"] == "official"
    got = {t: (p["rows_per_step"], p["image_aspect"]["eval"], p["max_new_tokens"], p["scorer"])
           for t, p in protocol["tasks"].items()}
    assert got == OFFICIAL_PROTOCOL
    assert {p["image_aspect"]["train"] for p in protocol["tasks"].values()} == {"pad"}
    assert {t: p["grad_accum"] for t, p in protocol["tasks"].items()} == {  # rows / batch 16, one process
        "ScienceQA": 8, "TextVQA": 8, "ImageNet": 10, "GQA": 4, "VizWiz": 8, "Grounding": 4, "VQAv2": 5, "OCRVQA": 6}
    assert {p["max_new_tokens_used"] for p in protocol["tasks"].values()} == {4}
    done = json.loads((out / "stages" / "3-ImageNet" / "DONE.json").read_text())
    assert (done["rows_per_step"], done["image_aspect"]) == (160, "pad")
    # TextVQA is scored against the 10 answers of TextVQA_0.5.1_val.json, not val.json's one answer
    textvqa = [json.loads(line) for line in (out / "predictions" / "0-zero-shot" / "TextVQA.jsonl").read_text().splitlines()]
    assert [len(r["answers"]) for r in textvqa] == [10, 10]
    scores = json.loads((out / "metrics.json").read_text())
    assert scores["scorers"] == {t: v[3] for t, v in OFFICIAL_PROTOCOL.items()} and scores["meta"]["protocol"] == "official"
    corrected = runner.invoke(app, ["score", str(out), "--protocol", "corrected"])
    assert corrected.exit_code == 0, corrected.output
    assert json.loads((out / "protocols" / "corrected" / "metrics.json").read_text())["scorers"]["ImageNet"] == "contains"
