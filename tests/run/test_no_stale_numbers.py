"""Issue 30: no stale or mixed number. Each of the five ways a wrong number came out silently, redone or refused.

The world: two tasks (``colors`` then ``hues``), three train and three test rows each; the training images
(``images/train/``) and the test images (``images/test/``) are separate files, so replacing the pixels of
one set under the same file names touches only the stages or only the cells that read them. The tiny
model is built from a copy of ``configs/models/tiny.yaml`` in the world (``tiny.yaml``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import tree_digest

PROMPT = "What color is the square?\nAnswer the question using a single word or phrase."
COLOURS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255)}
TASKS = ("colors", "hues")
RUN_ARGS = ("run", "--sequence", "seq.yaml", "--config", "run.yaml", "--out", "run")
ROOT = Path(__file__).resolve().parents[2]


def write_world(root: Path) -> Path:
    """Data, sequence, run config and tiny-model YAML under ``root`` (see the module docstring)."""
    for split in ("train", "test"):
        folder = root / "data" / "images" / split
        folder.mkdir(parents=True)
        for name, rgb in COLOURS.items():
            Image.new("RGB", (32, 32), rgb).save(folder / f"{name}.png")
    for task in TASKS:
        (root / "data" / task).mkdir()
        train = [{"id": f"t{i}", "image": f"train/{c}.png", "conversations": [
            {"from": "human", "value": f"<image>\n{PROMPT}"}, {"from": "gpt", "value": c}]} for i, c in enumerate(COLOURS)]
        test = [{"question_id": f"q{i}", "image": f"test/{c}.png", "text": PROMPT, "answer": c}
                for i, c in enumerate(COLOURS)]
        (root / "data" / task / "train.json").write_text(json.dumps(train))
        (root / "data" / task / "test.json").write_text(json.dumps(test))
    (root / "seq.yaml").write_text(yaml.safe_dump({"name": "twocolors", "data_root": "data", "image_folder": "images",
        "tasks": [{"name": t, "train": f"{t}/train.json", "test": f"{t}/test.json", "scorer": "exact",
                   "max_new_tokens": 4} for t in TASKS]}, sort_keys=False))
    shutil.copyfile(ROOT / "configs" / "models" / "tiny.yaml", root / "tiny.yaml")
    (root / "run.yaml").write_text(yaml.safe_dump({
        "seed": 0, "model": {"tiny": "tiny.yaml"},
        "train": {"max_steps": 2, "batch_size": 3, "scheduler": "constant", "warmup_ratio": 0.0, "lr": 0.05},
        "eval": {"batch_size": 4}, "method": {"name": "finetune"}}))
    return root


def run_in(root: Path, cvqa, *args: str):
    before = Path.cwd()
    os.chdir(root)
    try:
        return cvqa(*args)
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, cvqa) -> Path:
    """A world with a finished run in ``run/`` (made once per module)."""
    root = write_world(tmp_path_factory.mktemp("sealed") / "w")
    result = run_in(root, cvqa, *RUN_ARGS)
    assert result.exit_code == 0, result.stderr
    return root


@pytest.fixture
def copy(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the finished world (new inodes, same bytes), as the working directory."""
    root = tmp_path / "w"
    shutil.copytree(finished, root, symlinks=True)
    monkeypatch.chdir(root)
    return root


def error_line(result, *fragments: str) -> str:
    """Exit 2, exactly one ``error:`` line holding every fragment, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output + result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def predictions(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "run" / "predictions").glob("*/*.jsonl"))}


def matrix(root: Path) -> str:
    return (root / "run" / "matrix.csv").read_text()


def repaint(folder: Path) -> None:
    """New pixels under the same file names: every colour swapped with the next one."""
    names = list(COLOURS)
    for i, name in enumerate(names):
        Image.new("RGB", (32, 32), COLOURS[names[(i + 1) % 3]]).save(folder / f"{name}.png")


def fresh_run(root: Path, cvqa) -> Path:
    """The same world, run from scratch into ``fresh/`` (the reference a resume must equal)."""
    result = run_in(root, cvqa, "run", "--sequence", "seq.yaml", "--config", "run.yaml", "--out", "fresh")
    assert result.exit_code == 0, result.stderr
    return root / "fresh"


# --------------------------------------------------------------------- 1. predictions are sealed


def test_1_an_edited_predictions_file_is_refused_by_score_and_report_and_redone_on_resume(cvqa, copy, finished):
    path = copy / "run" / "predictions" / "2-hues" / "hues.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[0]["prediction"] = "zzz" if records[0]["score"] else records[0]["answers"][0]  # "X" -> "Y" by hand
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    before = tree_digest(copy)
    error_line(cvqa("score", "run"), "run/predictions/2-hues/hues.jsonl", "changed since the run wrote it", "cells.json")
    error_line(cvqa("report", "run"), "run/predictions/2-hues/hues.jsonl", "changed since the run wrote it")
    assert tree_digest(copy) == before  # nothing rescored, nothing rewritten
    result = cvqa(*RUN_ARGS, "--resume")
    assert result.exit_code == 0, result.stderr
    assert [ln for ln in result.stderr.splitlines() if "redoing this cell" in ln] == [
        "run/predictions/2-hues/hues.jsonl: changed since the run wrote it (SHA-256 differs from run/cells.json); "
        "redoing this cell"]
    assert predictions(copy) == predictions(finished) and matrix(copy) == matrix(finished)


def test_1_an_edited_scores_file_is_refused_by_report(cvqa, copy):
    path = copy / "run" / "scores" / "1-colors" / "colors.json"
    cell = json.loads(path.read_text())
    path.write_text(json.dumps({**cell, "score": 1.0}))
    error_line(cvqa("report", "run"), "run/scores/1-colors/colors.json", "changed since it was scored")
    assert cvqa("score", "run").exit_code == 0  # scoring again rewrites and reseals it from the predictions
    assert json.loads(path.read_text()) == cell and cvqa("report", "run").exit_code == 0


def test_1_a_copied_cell_is_never_copied_from_a_changed_file(cvqa, copy, finished):
    from cvqa_bench.run.evaluation.reuse import CellIndex

    run = copy / "run"
    index = CellIndex(run / "cells.json", run)
    key = index.cells["predictions/0-zero-shot/colors.jsonl"]["key"]
    sources = [run / name for name, cell in index.cells.items() if cell.get("key") == key]
    target = run / "predictions" / "9-other" / "colors.jsonl"
    assert index.source_for(key, target) in sources
    for source in sources:  # every cell with that key (the zero-shot cells of both tasks ask the same questions)
        source.write_text(source.read_text().replace('"prediction": "', '"prediction": "x', 1))
    assert index.source_for(key, target) is None


# --------------------------------------------------------------------- 2. image content is hashed


def test_2_replaced_test_images_redo_every_cell_and_no_stage(cvqa, copy):
    stages = {p: p.stat().st_mtime_ns for p in (copy / "run" / "stages").rglob("*") if p.is_file()}
    repaint(copy / "data" / "images" / "test")
    result = cvqa(*RUN_ARGS, "--resume")
    assert result.exit_code == 0, result.stderr
    redone = sorted(ln.split(":")[0] for ln in result.stderr.splitlines() if "the test split changed" in ln)
    assert redone == sorted(f"run/predictions/{s}/{t}.jsonl" for s in ("0-zero-shot", "1-colors", "2-hues") for t in TASKS)
    assert {p: p.stat().st_mtime_ns for p in stages} == stages  # the training images did not change
    assert predictions_of(copy / "run") == predictions_of(fresh_run(copy, cvqa))


def test_2_replaced_training_images_redo_the_stages_and_equal_a_fresh_run(cvqa, copy):
    repaint(copy / "data" / "images" / "train")
    result = cvqa(*RUN_ARGS, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "run/stages/1-colors/DONE.json: made from other inputs (stage hash differs)" in result.stderr
    fresh = fresh_run(copy, cvqa)
    assert predictions_of(copy / "run") == predictions_of(fresh)
    assert matrix(copy) == (fresh / "matrix.csv").read_text()
    # the two runs share config, data and model now, so they are averaged; the finished one is not (other data)
    report = cvqa("report", "run", "fresh", "--format", "json", "--out", "rep")
    assert report.exit_code == 0, report.stderr
    assert len({r["group"] for r in json.loads((copy / "rep" / "report.json").read_text())["runs"]}) == 1


def predictions_of(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted((run / "predictions").glob("*/*.jsonl"))}


# --------------------------------------------------------------------- 3. the base model by content


def test_3_a_changed_tiny_model_yaml_refuses_resume_naming_the_model(cvqa, copy):
    spec = yaml.safe_load((copy / "tiny.yaml").read_text())
    spec["seed"] = spec.get("seed", 0) + 1
    (copy / "tiny.yaml").write_text(yaml.safe_dump(spec))
    before = tree_digest(copy / "run")
    error_line(cvqa(*RUN_ARGS, "--resume"), "run/manifest.json", "the base model changed", "model.tiny tiny.yaml")
    assert tree_digest(copy / "run") == before


def test_3_the_manifest_records_the_model_content_hash(finished):
    from cvqa_bench.models.fingerprint import model_files

    manifest = json.loads((finished / "run" / "manifest.json").read_text())
    folder = Path(manifest["model"]["source"])
    names = [p.name for p in model_files(folder)]
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= set(names)
    import hashlib

    listing = [[p.name, hashlib.sha256(p.read_bytes()).hexdigest()] for p in model_files(folder)]
    assert manifest["model"]["content_sha256"] == hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def test_3_replaced_checkpoint_weights_change_the_model_hash_even_with_the_old_mtime(tmp_path, finished):
    from cvqa_bench.data.file_hashes import FileHashes
    from cvqa_bench.models.fingerprint import model_content_hash

    source = Path(json.loads((finished / "run" / "manifest.json").read_text())["model"]["source"])
    folder = tmp_path / "ckpt"
    shutil.copytree(source, folder)
    files = FileHashes(tmp_path / "hashes.sqlite", racy_seconds=0)
    first = model_content_hash(folder, files)
    weights = folder / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, same inode, mtime set back: only ctime and the bytes tell
    with open(weights, "r+b") as fh:
        fh.write(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert model_content_hash(folder, FileHashes(tmp_path / "hashes.sqlite", racy_seconds=0)) != first


def test_3_an_older_run_without_a_model_hash_is_refused(cvqa, copy):
    manifest = json.loads((copy / "run" / "manifest.json").read_text())
    del manifest["model"]["content_sha256"]
    (copy / "run" / "manifest.json").write_text(json.dumps(manifest))
    error_line(cvqa(*RUN_ARGS, "--resume"), "run/manifest.json", "before the base model was hashed by content", "--out")


# --------------------------------------------------------------------- 4/5. report averages comparable runs only


def report_groups(root: Path, cvqa, *runs: str, force: bool = False) -> tuple[list[str], str]:
    result = cvqa("report", *runs, "--format", "json", "--out", "rep", *(["--force-group"] if force else []))
    assert result.exit_code == 0, result.stderr
    doc = json.loads((root / "rep" / "report.json").read_text())
    return [r["group"] for r in doc["runs"]], result.stdout


def test_4_runs_scored_differently_are_not_averaged(cvqa, copy):
    shutil.copytree(copy / "run", copy / "other")
    assert cvqa("score", "other", "--scorer", "contains").exit_code == 0
    groups, shown = report_groups(copy, cvqa, "run", "other")
    assert len(set(groups)) == 2
    assert "other is not averaged with run: scored differently (colors: contains vs exact, hues: contains vs exact)" \
        in " ".join(shown.split())
    groups, shown = report_groups(copy, cvqa, "run", "other", force=True)
    assert len(set(groups)) == 1 and "--force-group: other is averaged with run: scored differently" in " ".join(shown.split())


def test_5_runs_on_other_data_or_another_base_model_are_not_averaged(cvqa, copy):
    shutil.copytree(copy / "run", copy / "seed1")
    manifest = json.loads((copy / "run" / "manifest.json").read_text())
    other_data = json.loads(json.dumps(manifest))
    other_data["data"]["hues"]["test_items"] = "0" * 64
    (copy / "seed1" / "manifest.json").write_text(json.dumps(other_data))
    groups, shown = report_groups(copy, cvqa, "run", "seed1")
    assert len(set(groups)) == 2 and "seed1 is not averaged with run: made from different data (hues)" in " ".join(shown.split())
    other_model = json.loads(json.dumps(manifest))
    other_model["model"]["content_sha256"] = "1" * 64
    (copy / "seed1" / "manifest.json").write_text(json.dumps(other_model))
    groups, shown = report_groups(copy, cvqa, "run", "seed1")
    assert len(set(groups)) == 2 and "made from a different base model" in shown


# --------------------------------------------------------------------- issue 31.17: damaged run records


def test_31_17_a_damaged_cells_json_is_named_and_every_cell_redone(cvqa, copy, finished):
    path = copy / "run" / "cells.json"
    data = bytearray(path.read_bytes())
    data[0] ^= 0x40  # one flipped byte: "{" becomes ";", no longer JSON
    path.write_bytes(bytes(data))
    result = cvqa(*RUN_ARGS, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr and "run/cells.json: damaged" in result.stderr
    assert predictions(copy) == predictions(finished) and matrix(copy) == matrix(finished)
    assert cvqa("score", "run").exit_code == 0  # sealed again


def test_31_17_a_truncated_manifest_refuses_resume_naming_it(cvqa, copy):
    path = copy / "run" / "manifest.json"
    path.write_bytes(path.read_bytes()[:40])
    before = tree_digest(copy / "run")
    error_line(cvqa(*RUN_ARGS, "--resume"), "run/manifest.json: damaged", "--out")
    assert tree_digest(copy / "run") == before


def test_a_truncated_predictions_file_is_named_and_redone(cvqa, copy, finished):
    path = copy / "run" / "predictions" / "1-colors" / "hues.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    result = cvqa(*RUN_ARGS, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "run/predictions/1-colors/hues.jsonl: damaged (truncated, reordered" in result.stderr
    assert predictions(copy) == predictions(finished)


# --------------------------------------------------------------------- minor findings shown on a run


def test_a_failed_export_leaves_nothing_that_blocks_the_retry(cvqa, copy, tmp_path, monkeypatch):
    """The reported failure: the model's save stops on a full disk after an empty config.json."""
    import errno

    from transformers import PreTrainedModel

    real = PreTrainedModel.save_pretrained

    def full_disk(self, folder, *args, **kwargs):
        Path(folder, "config.json").write_bytes(b"")
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder, "model.safetensors")))

    exports = tmp_path / "exports"
    exports.mkdir()
    out = exports / "exported"
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full_disk)
    error_line(cvqa("export", "run", "--stage", "1", "--out", out), "No space left on device")
    assert list(exports.iterdir()) == []  # neither the folder nor a temporary one is left
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", real)
    retry = cvqa("export", "run", "--stage", "1", "--out", out)
    assert retry.exit_code == 0, retry.stderr
    assert json.loads((out / "config.json").read_text())["model_type"] == "llava"


def test_a_damaged_in_stage_checkpoint_is_named_and_the_stage_redone(cvqa, copy, finished, monkeypatch):
    """Stopped (as by SIGTERM) after step 1 of stage 2, which saves checkpoint-1; one of its files then changes."""
    from cvqa_bench.run.training import train

    shutil.rmtree(copy / "run")
    real = train.MethodCallback.on_step_end

    def stop_in_stage_2(self, args, state, control, **kwargs):
        if self.task.name == "hues":
            self.interrupt.requested = "SIGTERM"
        return real(self, args, state, control, **kwargs)

    monkeypatch.setattr(train.MethodCallback, "on_step_end", stop_in_stage_2)
    stopped = cvqa(*RUN_ARGS)
    assert stopped.exit_code == 1 and "SIGTERM received" in stopped.stderr, stopped.stderr
    monkeypatch.setattr(train.MethodCallback, "on_step_end", real)
    checkpoint = copy / "run" / "stages" / "2-hues" / "trainer" / "checkpoint-1"
    sealed = json.loads((checkpoint / "cvqa_complete.json").read_text())["files"]
    assert "trainables.safetensors" in sealed
    data = bytearray((checkpoint / "trainables.safetensors").read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor: still a valid file, silently another weight
    (checkpoint / "trainables.safetensors").write_bytes(bytes(data))
    resumed = cvqa(*RUN_ARGS, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    said = [line for line in (resumed.stdout + resumed.stderr).splitlines() if "damaged" in line]
    assert said == ["run/stages/2-hues/trainer/checkpoint-1: damaged (a file differs from its cvqa_complete.json); passed over, training "
                    "resumes from an older checkpoint or the start of the stage"], said
    assert predictions(copy) == predictions(finished) and matrix(copy) == matrix(finished)


def test_score_keeps_the_sequence_name_the_run_wrote(cvqa, copy):
    """The run writes its sequence's name (seq.yaml says ``twocolors``); config.yaml holds the path it was given."""
    metrics = copy / "run" / "metrics.json"
    assert json.loads(metrics.read_text())["meta"]["sequence"] == "twocolors"
    assert yaml.safe_load((copy / "run" / "config.yaml").read_text())["sequence"] != "twocolors"
    result = cvqa("score", "run")
    assert result.exit_code == 0, result.stderr
    assert json.loads(metrics.read_text())["meta"]["sequence"] == "twocolors"
