"""End-to-end runs through ``cvqa run`` on a small 3-task sequence: the run folder, the matrix, metrics,
re-scoring, resume, refusal to overwrite, seeds and LLaCA's grouping records.

Four trained runs are shared by every test (session fixtures): finetune seed 0, ``--seeds 0,1`` (two
folders) and one ``llaca`` run. Tests that write into a run work on a copy.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import LLACA_TASKS, N_TEST, SKILLS, SMALL_STEPS, SMALL_TASKS

METRIC_NAMES = {"final_avg", "mft", "avg_incremental", "bwt", "forgetting", "forgetting_last", "fwt"}
STAGES = ["0-zero-shot", *(f"{k}-{t}" for k, t in enumerate(SMALL_TASKS, start=1))]
LLACA_STEPS = 10  # only LLaCA's decisions are checked, not its accuracy


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def finetune_run(cvqa, runs_dir, small_config, small_sequence):
    """A finished finetune run (seed 0) on color → shape → position; returns (folder, CLI result)."""
    out = runs_dir / "finetune"
    result = cvqa("run", "--config", small_config, "--sequence", small_sequence, "--method", "finetune",
                  "--out", out)
    return out, result


@pytest.fixture(scope="session")
def seed_runs(cvqa, runs_dir, small_config, small_sequence):
    """``--seeds 0,1 --out <runs>/pair``: the CLI result and the two sibling folders it should write."""
    result = cvqa("run", "--config", small_config, "--sequence", small_sequence, "--seeds", "0,1",
                  "--out", runs_dir / "pair")
    return result, runs_dir / "pair-seed0", runs_dir / "pair-seed1"


@pytest.fixture(scope="session")
def llaca_run(cvqa, runs_dir, small_config, llaca_sequence):
    """A finished llaca run (10 steps per task) on color → count → position; returns (folder, CLI result)."""
    out = runs_dir / "llaca"
    result = cvqa("run", "--config", small_config, "--sequence", llaca_sequence, "--method", "llaca",
                  "--set", f"train.max_steps={LLACA_STEPS}", "--out", out)
    return out, result


@pytest.fixture
def finetune_copy(finetune_run, tmp_path):
    """A private copy of the finetune run (mtimes kept) for tests that write into it."""
    folder, result = finetune_run
    assert result.exit_code == 0, result.stderr
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def read_matrix(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """matrix.csv as (task columns, trained_task column, values)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:2] == ["stage", "trained_task"]
    assert [r[0] for r in rows[1:]] == [str(k) for k in range(len(rows) - 1)]
    return rows[0][2:], [r[1] for r in rows[1:]], np.array([[float(v) for v in r[2:]] for r in rows[1:]])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def data_root(run: Path) -> Path:
    return Path(json.loads((run / "manifest.json").read_text())["data_root"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def exact_match(prediction: str, answers: list[str]) -> float:
    """The ``exact`` rule, written out: lowercase, strip spaces and trailing periods; empty is wrong."""
    def norm(s: str) -> str:
        return s.strip().rstrip(".").strip().lower()

    return float(bool(norm(prediction)) and any(norm(a) == norm(prediction) for a in answers))


# ------------------------------------------------------------------------------------ one finetune run


def test_run_exits_0_and_names_its_folder(finetune_run):
    folder, result = finetune_run
    assert result.exit_code == 0, result.stderr
    assert f"run folder: {folder}" in result.stdout
    assert "final_avg" in result.stdout  # the metrics table was printed
    assert [line.split(":")[0] for line in result.stderr.splitlines() if "training on" in line] == [
        "stage 1/3", "stage 2/3", "stage 3/3"]


def test_run_folder_holds_every_documented_file(finetune_run):
    folder, _ = finetune_run
    for name in ("config.yaml", "sequence.yaml", "manifest.json", "matrix.csv", "metrics.json", "report.md"):
        assert (folder / name).is_file(), name
    assert (folder / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for stage in STAGES[1:]:
        assert (folder / "stages" / stage / "weights.safetensors").stat().st_size > 0
        assert json.loads((folder / "stages" / stage / "DONE.json").read_text())["steps"] == SMALL_STEPS
    assert sorted(p.name for p in (folder / "stages").iterdir()) == STAGES[1:]
    assert sorted(p.name for p in (folder / "predictions").iterdir()) == STAGES
    assert sorted(p.name for p in (folder / "scores").iterdir()) == STAGES


def test_config_yaml_is_the_resolved_config(finetune_run, small_sequence):
    folder, _ = finetune_run
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["sequence"] == str(small_sequence)
    assert config["method"]["name"] == "finetune"
    assert config["train"]["max_steps"] == SMALL_STEPS and config["train"]["batch_size"] == 8
    assert config["eval"]["batch_size"] == 16 and config["seed"] == 0
    sequence = yaml.safe_load((folder / "sequence.yaml").read_text())
    assert [t["name"] for t in sequence["tasks"]] == list(SMALL_TASKS)


def test_manifest_records_seed_commit_versions_data_hashes_and_times(finetune_run):
    folder, _ = finetune_run
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seed"] == 0
    assert "git_commit" in manifest
    assert manifest["packages"]["torch"] == metadata.version("torch")
    root = data_root(folder)
    assert set(manifest["data"]) == set(SMALL_TASKS)
    for task in SMALL_TASKS:
        entry = manifest["data"][task]
        assert entry["train"] == sha256(root / task / "train.json")
        assert entry["test"] == sha256(root / task / "test.json")
    started = dt.datetime.fromisoformat(manifest["started"])
    finished = dt.datetime.fromisoformat(manifest["finished"])
    assert started <= finished


def test_predictions_have_one_line_per_test_row_with_its_id(finetune_run):
    folder, _ = finetune_run
    root = data_root(folder)
    for task in SMALL_TASKS:
        test_rows = json.loads((root / task / "test.json").read_text())
        assert len(test_rows) == N_TEST
        for stage in STAGES:
            records = read_jsonl(folder / "predictions" / stage / f"{task}.jsonl")
            assert [r["id"] for r in records] == [str(row["question_id"]) for row in test_rows], (stage, task)
            assert all(isinstance(r["prediction"], str) for r in records)


def test_matrix_has_the_zero_shot_row_and_one_row_per_stage(finetune_run):
    folder, _ = finetune_run
    tasks, trained, matrix = read_matrix(folder / "matrix.csv")
    assert tasks == list(SMALL_TASKS)
    assert trained == ["zero-shot", *SMALL_TASKS]
    assert matrix.shape == (len(SMALL_TASKS) + 1, len(SMALL_TASKS))
    assert ((matrix >= 0) & (matrix <= 100)).all()


def test_scores_files_match_the_matrix_and_name_each_tasks_scorer(finetune_run):
    folder, _ = finetune_run
    _, _, matrix = read_matrix(folder / "matrix.csv")
    for k, stage in enumerate(STAGES):
        for i, task in enumerate(SMALL_TASKS):
            cell = json.loads((folder / "scores" / stage / f"{task}.json").read_text())
            assert cell["scorer"] == SKILLS[task][0]
            assert cell["n"] == N_TEST
            assert math.isclose(100 * cell["score"], matrix[k, i], abs_tol=1e-9)


def test_colour_is_learned_then_forgotten_under_finetune(finetune_run):
    folder, _ = finetune_run
    _, _, matrix = read_matrix(folder / "matrix.csv")
    colour = SMALL_TASKS.index("color")
    # measured: 0 zero-shot, 75 after its stage, 0 after shape and position (seeds 0-2)
    assert matrix[1, colour] >= matrix[0, colour] + 40
    assert matrix[-1, colour] <= matrix[1, colour] - 40
    metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
    assert metrics["forgetting"] > 0


def test_metrics_json_equals_the_hand_formulas_on_matrix_csv(finetune_run):
    folder, _ = finetune_run
    _, _, A = read_matrix(folder / "matrix.csv")  # A[t][i], t = 0 (zero-shot) .. T, i = 0 .. T-1
    T = A.shape[1]
    metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
    assert set(metrics) == METRIC_NAMES
    final_avg = sum(A[T][i] for i in range(T)) / T
    # task i (0-based) is trained at stage i + 1; forgetting: best of stages i+1..T-1 minus the last
    forgetting = sum(max(A[t][i] for t in range(i + 1, T)) - A[T][i] for i in range(T - 1)) / (T - 1)
    forgetting_last = sum(A[i + 1][i] - A[T][i] for i in range(T - 1)) / (T - 1)
    mft = sum(A[i + 1][i] for i in range(T)) / T
    fwt = sum(A[i][i] - A[0][i] for i in range(1, T)) / (T - 1)
    hand = {"final_avg": final_avg, "forgetting": forgetting, "forgetting_last": forgetting_last,
            "bwt": -forgetting_last, "mft": mft, "fwt": fwt}
    for name, value in hand.items():
        assert math.isclose(metrics[name], value, abs_tol=1e-9), name


# ------------------------------------------------------------------------------------ determinism, seeds


def test_same_seed_twice_gives_an_identical_matrix(finetune_run, seed_runs):
    result, seed0, _ = seed_runs
    assert result.exit_code == 0, result.stderr
    assert (seed0 / "matrix.csv").read_bytes() == (finetune_run[0] / "matrix.csv").read_bytes()


def test_seeds_write_one_sibling_folder_per_seed(seed_runs, runs_dir):
    result, seed0, seed1 = seed_runs
    assert result.exit_code == 0, result.stderr
    assert not (runs_dir / "pair").exists()
    for folder, seed in ((seed0, 0), (seed1, 1)):
        assert yaml.safe_load((folder / "config.yaml").read_text())["seed"] == seed
        assert json.loads((folder / "manifest.json").read_text())["seed"] == seed
        assert (folder / "matrix.csv").is_file()


def test_report_groups_two_seeds_as_mean_and_std(cvqa, seed_runs, tmp_path):
    _, seed0, seed1 = seed_runs
    result = cvqa("report", seed0, seed1, "--out", tmp_path, "--format", "md", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert "±" in result.stdout
    doc = json.loads((tmp_path / "report.json").read_text())
    assert len({run["group"] for run in doc["runs"]}) == 1
    [row] = doc["tables"]["comparison"]["rows"]
    assert row["n"] == 2 and row["seeds"] == "0,1"
    finals = [json.loads((f / "metrics.json").read_text())["metrics"]["final_avg"] for f in (seed0, seed1)]
    mean, std = sum(finals) / 2, abs(finals[0] - finals[1]) / math.sqrt(2)  # sample std of two values
    assert math.isclose(row["final_avg"]["mean"], mean, abs_tol=1e-9)
    assert math.isclose(row["final_avg"]["std"], std, abs_tol=1e-9)
    assert "sample standard deviation" in (tmp_path / "report.md").read_text()


# ------------------------------------------------------------------------------------ score, resume, refuse


def test_score_rewrites_the_same_matrix_without_retraining(cvqa, finetune_copy, digest):
    original = (finetune_copy / "matrix.csv").read_bytes()
    stages_before = digest(finetune_copy / "stages")
    predictions_before = digest(finetune_copy / "predictions")
    (finetune_copy / "matrix.csv").unlink()
    shutil.rmtree(finetune_copy / "scores")
    result = cvqa("score", finetune_copy)
    assert result.exit_code == 0, result.stderr
    assert (finetune_copy / "matrix.csv").read_bytes() == original
    assert digest(finetune_copy / "stages") == stages_before
    assert digest(finetune_copy / "predictions") == predictions_before


def test_score_with_another_scorer_records_it_and_rescores(cvqa, finetune_copy):
    result = cvqa("score", finetune_copy, "--scorer", "exact")
    assert result.exit_code == 0, result.stderr
    _, _, matrix = read_matrix(finetune_copy / "matrix.csv")
    for k, stage in enumerate(STAGES):
        for i, task in enumerate(SMALL_TASKS):
            cell = json.loads((finetune_copy / "scores" / stage / f"{task}.json").read_text())
            assert cell["scorer"] == "exact"
            records = read_jsonl(finetune_copy / "predictions" / stage / f"{task}.jsonl")
            by_hand = 100 * sum(exact_match(r["prediction"], r["answers"]) for r in records) / len(records)
            assert math.isclose(matrix[k, i], by_hand, abs_tol=1e-9), (stage, task)
    assert matrix.max() > 0  # the learned colour answers match exactly, so the check above is not 0 == 0
    metrics = json.loads((finetune_copy / "metrics.json").read_text())
    assert metrics["scorers"] == {t: "exact" for t in SMALL_TASKS}


def test_resume_on_a_finished_run_retrains_nothing(cvqa, finetune_copy, small_config, small_sequence, digest):
    def stamps(sub: str) -> dict[str, int]:
        return {p.relative_to(finetune_copy).as_posix(): p.stat().st_mtime_ns
                for p in (finetune_copy / sub).rglob("*") if p.is_file()}

    matrix = (finetune_copy / "matrix.csv").read_bytes()
    before = {sub: (digest(finetune_copy / sub), stamps(sub)) for sub in ("stages", "predictions")}
    result = cvqa("run", "--config", small_config, "--sequence", small_sequence, "--method", "finetune",
                  "--out", finetune_copy, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "training on" not in result.stderr
    for sub in ("stages", "predictions"):
        assert (digest(finetune_copy / sub), stamps(sub)) == before[sub], sub
    assert (finetune_copy / "matrix.csv").read_bytes() == matrix


def test_run_into_an_existing_folder_without_resume_exits_2_and_changes_nothing(
        cvqa, finetune_copy, small_config, small_sequence, digest):
    before = digest(finetune_copy)
    result = cvqa("run", "--config", small_config, "--sequence", small_sequence, "--method", "finetune",
                  "--out", finetune_copy)
    assert result.exit_code == 2
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert str(finetune_copy) in line and "--resume" in line
    assert digest(finetune_copy) == before


# ------------------------------------------------------------------------------------ llaca


def test_llaca_records_a_group_and_ema_flag_per_task(llaca_run):
    folder, result = llaca_run
    assert result.exit_code == 0, result.stderr
    records = json.loads((folder / "method_records.json").read_text())
    tasks = {r["task"]: r for r in records["tasks"]}
    assert list(tasks) == list(LLACA_TASKS)
    # count shares colour's instruction (TF-IDF similarity 1 >= 0.9): it joins group 0 with EMA on;
    # colour and position open their groups, so EMA is off for them (docs/methods.md, "Instruction grouping").
    assert {t: r["group"] for t, r in tasks.items()} == {"color": 0, "count": 0, "position": 1}
    assert {t: r["ema"] for t, r in tasks.items()} == {"color": False, "count": True, "position": False}
    assert tasks["color"]["group"] != tasks["position"]["group"]
    # n_updates counts tensor updates: 12 trainable tensors (LoRA A and B of q_proj and v_proj in
    # 2 layers = 8, the projector's 2 weights + 2 biases = 4) x 10 steps; none without EMA.
    assert tasks["count"]["alpha"]["n_updates"] == 12 * LLACA_STEPS
    assert tasks["color"]["alpha"]["n_updates"] == tasks["position"]["alpha"]["n_updates"] == 0
    # the first step of a task has no previous gradient, so all 12 of its alphas are the fallback
    assert tasks["count"]["alpha"]["fallback_fraction"] * 12 * LLACA_STEPS >= 12
    assert yaml.safe_load((folder / "config.yaml").read_text())["train"]["max_steps"] == LLACA_STEPS
