"""Fault injection (issue 14): hostile input and damaged run folders, one test per numbered item of the issue.

Every refusal asserts exit code 2, exactly one ``error:`` line naming the file, no traceback, and that
nothing outside the run folder changed (the tree is hashed before and after). Every repair asserts
the one line naming what was redone and a final matrix equal to the uninterrupted run's.

The world: a two-task CoIN data root (``colors`` then ``hues``, three train and three test rows each,
32x32 PNGs), its sequence YAML and a two-step run config, used from its own folder so a copy of it
(with a finished run) can be resumed anywhere.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import tree_digest

PROMPT = "What color is the square?\nAnswer the question using a single word or phrase."
COLOURS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255)}
TASKS = ("colors", "hues")
RUN_ARGS = ("run", "--sequence", "seq.yaml", "--config", "run.yaml", "--out", "run")


def write_world(root: Path) -> Path:
    """The data root, sequence and run config under ``root`` (see the module docstring)."""
    images = root / "data" / "images"
    images.mkdir(parents=True)
    for name, rgb in COLOURS.items():
        Image.new("RGB", (32, 32), rgb).save(images / f"{name}.png")
    for task in TASKS:
        (root / "data" / task).mkdir()
        train = [{"id": f"t{i}", "image": f"{c}.png", "conversations": [
            {"from": "human", "value": f"<image>\n{PROMPT}"}, {"from": "gpt", "value": c}]}
            for i, c in enumerate(COLOURS)]
        test = [{"question_id": f"q{i}", "image": f"{c}.png", "text": PROMPT, "answer": c} for i, c in enumerate(COLOURS)]
        (root / "data" / task / "train.json").write_text(json.dumps(train))
        (root / "data" / task / "test.json").write_text(json.dumps(test))
    write_sequence(root, sequence_dict())
    (root / "run.yaml").write_text(yaml.safe_dump({
        "seed": 0, "train": {"max_steps": 2, "batch_size": 3, "scheduler": "constant", "warmup_ratio": 0.0},
        "eval": {"batch_size": 4}, "method": {"name": "finetune"}}))
    return root


def sequence_dict() -> dict:
    return {"name": "tinycoin", "data_root": "data", "image_folder": "images", "tasks": [
        {"name": t, "train": f"{t}/train.json", "test": f"{t}/test.json", "scorer": "exact", "max_new_tokens": 4}
        for t in TASKS]}


def write_sequence(root: Path, data: dict) -> None:
    (root / "seq.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def outside(root: Path, run: str = "run") -> dict[str, str]:
    """Digest of every file under ``root`` except the run folder."""
    return {k: v for k, v in tree_digest(root).items() if k != run and not k.startswith(f"{run}/")}


def error_line(result, *fragments: str) -> str:
    """Exit 2, exactly one ``error:`` line holding every fragment, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def lines_with(result, fragment: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if fragment in line]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh world in ``tmp_path``, which is also the working directory."""
    monkeypatch.chdir(tmp_path)
    return write_world(tmp_path / "w")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, cvqa) -> Path:
    """A world with a finished, uninterrupted run in ``run/`` (made once per module)."""
    root = write_world(tmp_path_factory.mktemp("finished") / "w")
    before = Path.cwd()
    os.chdir(root)
    try:
        result = cvqa(*RUN_ARGS)
    finally:
        os.chdir(before)
    assert result.exit_code == 0, result.stderr
    return root


@pytest.fixture
def copy(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the finished world, as the working directory."""
    root = tmp_path / "w"
    shutil.copytree(finished, root, symlinks=True)
    monkeypatch.chdir(root)
    return root


def resume(cvqa, *extra: str):
    return cvqa(*RUN_ARGS, "--resume", *extra)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------- 1. names used as paths


def test_01_absolute_sequence_name_is_refused_and_deletes_nothing(cvqa, world, tmp_path, monkeypatch):
    from cvqa_bench.config import SequenceSpec
    from cvqa_bench.data.sources import generator_key

    data = {"name": "victim", "generator": {"name": "synthetic", "n_train": 4, "n_test": 2}, "tasks": [
        {"name": "color", "train": "color/train.json", "test": "color/test.json", "scorer": "vqa"}]}
    key = generator_key(SequenceSpec.model_validate(data))
    victim = tmp_path / "elsewhere" / f"victim-{key}"
    victim.mkdir(parents=True)
    (victim / "notes.txt").write_text("mine")
    data["name"] = str(tmp_path / "elsewhere" / "victim")
    write_sequence(world, data)
    before = tree_digest(tmp_path)
    error_line(cvqa("validate", world / "seq.yaml"), "sequence name", "safe identifier")
    assert tree_digest(tmp_path) == before


def test_01_cache_folder_without_marker_is_left_alone(cvqa, world, tmp_path, monkeypatch):
    from cvqa_bench.config import SequenceSpec
    from cvqa_bench.data.sources import generator_key

    monkeypatch.setenv("CVQA_CACHE", str(tmp_path / "cache"))
    data = {"name": "victim", "generator": {"name": "synthetic", "n_train": 4, "n_test": 2}, "tasks": [
        {"name": "color", "train": "color/train.json", "test": "color/test.json", "scorer": "vqa"}]}
    foreign = tmp_path / "cache" / "data" / f"victim-{generator_key(SequenceSpec.model_validate(data))}"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("not the cache's")
    write_sequence(world, data)
    before = tree_digest(tmp_path)
    error_line(cvqa("validate", world / "seq.yaml"), str(foreign), "not made by cvqa-bench")
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("name", ["../colors", "/abs", ".hidden", "a..b"])
def test_01_task_name_must_be_a_safe_identifier(cvqa, world, name):
    data = sequence_dict()
    data["tasks"][0]["name"] = name
    write_sequence(world, data)
    before = tree_digest(world)
    error_line(cvqa("validate", world / "seq.yaml"), "seq.yaml", "task name", "safe identifier")
    assert tree_digest(world) == before


# --------------------------------------------------------------------- 2. resume with changed inputs


def test_02_changed_test_answer_redoes_only_that_tasks_cells(cvqa, copy, finished):
    test_file = copy / "data" / "hues" / "test.json"
    rows = json.loads(test_file.read_text())
    rows[1]["answer"] = "purple"
    test_file.write_text(json.dumps(rows))
    kept = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in copy.glob("run/predictions/*/colors.jsonl")}
    before = outside(copy)
    result = resume(cvqa)
    assert result.exit_code == 0, result.stderr
    redone = lines_with(result, "the test split changed")
    assert sorted(line.split(":")[0] for line in redone) == [f"run/predictions/{s}/hues.jsonl"
                                                              for s in ("0-zero-shot", "1-colors", "2-hues")]
    assert all(str(test_file) in line for line in redone) and "Traceback" not in result.stderr
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in kept} == kept  # not rewritten
    for stage in ("0-zero-shot", "1-colors", "2-hues"):
        answers = [json.loads(line)["answers"] for line in (copy / f"run/predictions/{stage}/hues.jsonl").open()]
        assert answers[1] == ["purple"]
    assert outside(copy) == before


def test_02_edited_sequence_yaml_does_not_keep_stale_predictions(cvqa, copy):
    data = sequence_dict()
    data["tasks"][1]["max_new_tokens"] = 2  # hues only: its cells and its stage change, colors' do not
    write_sequence(copy, data)
    kept = {p: p.stat().st_mtime_ns for p in copy.glob("run/predictions/*/colors.jsonl") if "2-hues" not in str(p)}
    before = outside(copy)
    result = resume(cvqa)
    assert result.exit_code == 0, result.stderr
    assert "stage 1 (colors): done earlier, restored" in result.stderr
    assert len(lines_with(result, "run/stages/2-hues/DONE.json: made from other inputs")) == 1
    redone = sorted(line.split(":")[0] for line in lines_with(result, "redoing this cell"))
    assert redone == ["run/predictions/0-zero-shot/hues.jsonl", "run/predictions/1-colors/hues.jsonl",
                      "run/predictions/2-hues/colors.jsonl", "run/predictions/2-hues/hues.jsonl"]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert outside(copy) == before


# --------------------------------------------------------------------- 3. stage file integrity


@pytest.mark.parametrize("name", ["weights.safetensors", "method_state.safetensors", "method_state.json", "DONE.json"])
def test_03_one_flipped_byte_in_a_stage_file_is_detected_and_redone(cvqa, copy, finished, name):
    target = copy / "run" / "stages" / "1-colors" / name
    flip_byte(target, len(target.read_bytes()) // 2)
    before = outside(copy)
    result = resume(cvqa)
    assert result.exit_code == 0, result.stderr
    found = [line for line in result.stderr.splitlines() if "run/stages/1-colors/" in line and "redoing" in line]
    assert len(found) == 1 and ("damaged" in found[0] or "unreadable" in found[0]), result.stderr
    assert (copy / "run/matrix.csv").read_bytes() == (finished / "run/matrix.csv").read_bytes()
    assert (copy / "run/stages/1-colors/weights.safetensors").read_bytes() == \
        (finished / "run/stages/1-colors/weights.safetensors").read_bytes()
    assert outside(copy) == before


def test_03_non_finite_weights_are_never_restored(cvqa, copy, finished):
    import torch
    from safetensors.torch import load_file, save_file

    from cvqa_bench.run.state.integrity import read_done, write_done

    stage = copy / "run" / "stages" / "1-colors"
    weights = load_file(str(stage / "weights.safetensors"))
    first = sorted(weights)[0]
    weights[first] = torch.full_like(weights[first], float("nan"))
    save_file(weights, str(stage / "weights.safetensors"))
    record = read_done(stage)
    write_done(stage, {k: v for k, v in record.items() if k not in ("files", "checksum")})  # sealed as it is now
    result = resume(cvqa)
    assert result.exit_code == 0, result.stderr
    assert len(lines_with(result, f"tensor {first!r} is not finite; redoing stage 1")) == 1
    assert (copy / "run/matrix.csv").read_bytes() == (finished / "run/matrix.csv").read_bytes()


def test_03_truncated_file_is_refused_by_score_and_repaired_by_resume(cvqa, copy, finished):
    target = copy / "run" / "stages" / "2-hues" / "weights.safetensors"
    target.write_bytes(target.read_bytes()[:100])
    before = tree_digest(copy)
    error_line(cvqa("score", "run"), "run/stages/2-hues/weights.safetensors", "damaged", "--resume")
    assert tree_digest(copy) == before  # score wrote nothing
    result = resume(cvqa)
    assert result.exit_code == 0, result.stderr
    assert (copy / "run/matrix.csv").read_bytes() == (finished / "run/matrix.csv").read_bytes()


def test_03_damaged_in_stage_checkpoint_is_passed_over_for_an_older_one(tmp_path):
    from cvqa_bench.run.state.checkpoint import latest_checkpoint, mark_complete

    for step in (2, 4):
        folder = tmp_path / "trainer" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "optimizer.pt").write_bytes(bytes(range(200)))
        mark_complete(folder, step)
    assert latest_checkpoint(tmp_path / "trainer").name == "checkpoint-4"
    flip_byte(tmp_path / "trainer" / "checkpoint-4" / "optimizer.pt", 7)
    assert latest_checkpoint(tmp_path / "trainer").name == "checkpoint-2"


# --------------------------------------------------------------------- 4. paths that escape


def test_04_symlinked_image_outside_the_image_folder_is_refused(cvqa, world, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(secret / "key.png")
    (world / "data" / "images" / "evil.png").symlink_to(secret / "key.png")
    test_file = world / "data" / "colors" / "test.json"
    rows = json.loads(test_file.read_text())
    rows[2]["image"] = "evil.png"
    test_file.write_text(json.dumps(rows))
    before = tree_digest(tmp_path)
    error_line(cvqa("validate", world / "seq.yaml"), f"{test_file} row 2", "outside the image folder")
    error_line(cvqa("run", "--sequence", world / "seq.yaml", "--config", world / "run.yaml", "--out", "out"),
               f"{test_file} row 2", "allow_outside_root")
    assert tree_digest(tmp_path) == before
    data = sequence_dict()
    data["allow_outside_root"] = True  # documented opt-in
    write_sequence(world, data)
    assert cvqa("validate", world / "seq.yaml").exit_code == 0


@pytest.mark.parametrize("field,value", [("train", "ABS"), ("test", "../outside.json"), ("image_folder", "/")])
def test_04_task_paths_and_image_folder_outside_the_data_root_are_refused(cvqa, world, tmp_path, field, value):
    (tmp_path / "outside.json").write_text(json.dumps([]))
    data = sequence_dict()
    data["tasks"][0][field] = str(tmp_path / "outside.json") if value == "ABS" else value
    write_sequence(world, data)
    before = tree_digest(tmp_path)
    error_line(cvqa("validate", world / "seq.yaml"), "task 'colors'", "outside the data root")
    assert tree_digest(tmp_path) == before


# --------------------------------------------------------------------- 5. one line instead of a traceback


def test_05_non_utf8_yaml(cvqa, world):
    (world / "seq.yaml").write_bytes(b"name: caf\xe9\n")
    before = tree_digest(world)
    error_line(cvqa("validate", world / "seq.yaml"), "seq.yaml", "not UTF-8")
    assert tree_digest(world) == before


def test_05_json_nested_100000_deep(cvqa, world):
    (world / "data" / "colors" / "train.json").write_text("[" * 100000 + "]" * 100000)
    before = tree_digest(world)
    error_line(cvqa("validate", world / "seq.yaml"), "colors/train.json", "nested deeper")
    assert tree_digest(world) == before


def png_with_broken_pixels(path: Path) -> None:
    """A PNG whose chunks (CRCs included) are well formed, so ``verify`` passes, but whose IDAT is not zlib."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"\x00not zlib" * 8)
                     + chunk(b"IEND", b""))


def test_05_png_that_passes_verify_but_does_not_decode(cvqa, world):
    bad = world / "data" / "images" / "broken.png"
    png_with_broken_pixels(bad)
    with Image.open(bad) as image:
        image.verify()  # the repro: Pillow's verify accepts it
    test_file = world / "data" / "hues" / "test.json"
    rows = json.loads(test_file.read_text())
    rows[2]["image"] = "broken.png"
    test_file.write_text(json.dumps(rows))
    before = tree_digest(world)
    error_line(cvqa("validate", world / "seq.yaml"), "hues/test.json row 2", "'broken.png'", "cannot be read")
    assert tree_digest(world) == before


@pytest.mark.parametrize("args,fragments", [
    (("--seeds", "a,b"), ("--seeds", "'a,b'")),
    (("--seed", "5000000"), ("seed 5000000", "out of range")),
    (("--set", "train.max_length=8"), ("train.max_length 8", "task 'colors'", "tokens")),
    (("--method", "llaca", "--set", "method.options={overrides: {nosuch: {ema: true}}}"), ("llaca", "'nosuch'")),
    (("--set", "model.lora.target_modules=nothing_matches"), ("target_modules", "matches no module")),
    (("--model", "/nonexistent"), ("model.path", "/nonexistent")),
])
def test_05_bad_arguments_stop_before_the_run_folder_exists(cvqa, world, tmp_path, args, fragments):
    before = tree_digest(tmp_path)
    result = cvqa("run", "--sequence", world / "seq.yaml", "--config", world / "run.yaml", "--out", "fresh", *args)
    error_line(result, *fragments)
    assert tree_digest(tmp_path) == before  # and no "fresh" stub folder (issue item 6)


def failing_writes(monkeypatch: pytest.MonkeyPatch, code: int, when=lambda path: True) -> None:
    """Make every atomic write whose path satisfies ``when`` fail as the file system would with ``code``."""
    import cvqa_bench.io as io

    real = io.atomic_write

    def atomic_write(path, write):
        if when(Path(path)):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, write)

    monkeypatch.setattr(io, "atomic_write", atomic_write)


def test_05_read_only_output_folder(cvqa, world, tmp_path, monkeypatch):
    failing_writes(monkeypatch, errno.EROFS)
    before = tree_digest(tmp_path)
    result = cvqa("run", "--sequence", world / "seq.yaml", "--config", world / "run.yaml", "--out", "ro")
    error_line(result, "ro/config.yaml", "Read-only file system")
    assert tree_digest(tmp_path) == before


def test_05_full_disk_keeps_what_was_written_and_resume_ends_identical(cvqa, copy, finished, monkeypatch):
    # predictions name their images by absolute path: those of the copy point into the copied world
    uninterrupted = {rel: (copy / "run" / rel).read_bytes().replace(str(finished).encode(), str(copy).encode())
                     for rel in ["matrix.csv", *(f"predictions/2-hues/{t}.jsonl" for t in TASKS)]}
    for path in (copy / "run" / "predictions" / "2-hues").iterdir():
        path.unlink()  # a run stopped before its last cells
    kept = tree_digest(copy / "run")
    failing_writes(monkeypatch, errno.ENOSPC, lambda path: path.suffix == ".jsonl")
    error_line(resume(cvqa), "run/predictions/2-hues/colors.jsonl", "No space left on device")
    after = tree_digest(copy / "run")
    appended = {"manifest.json", "run.log"}  # the resume timestamp and the log: appended to, by design
    assert {k: after.get(k) for k in kept if k not in appended} == {k: v for k, v in kept.items() if k not in appended}
    monkeypatch.undo()  # the failing writes gone, and the working folder back: go into the copy again
    monkeypatch.chdir(copy)  # (not os.chdir: later tests of this process would run in the removed copy)
    result = resume(cvqa)
    assert result.exit_code == 0, result.stderr
    for rel, expected in uninterrupted.items():
        assert (copy / "run" / rel).read_bytes() == expected, rel


# --------------------------------------------------------------------- 6. no stub folder, 7. the lock


def test_06_failed_check_leaves_no_stub_folder(cvqa, world, tmp_path):
    result = cvqa("run", "--sequence", world / "seq.yaml", "--config", world / "run.yaml", "--model", "/nonexistent",
                  "--out", "X")
    error_line(result, "/nonexistent")
    assert not (tmp_path / "X").exists()


def test_07_second_writer_fails_at_once_naming_the_holder(cvqa, copy):
    from cvqa_bench.run.state.lock import RunLock

    lock = RunLock(copy / "run")
    lock.acquire()
    try:
        before = tree_digest(copy)
        error_line(resume(cvqa), "another run is writing here", f"process {os.getpid()}")
        error_line(cvqa("score", "run"), "another run is writing here", f"process {os.getpid()}")
        assert tree_digest(copy) == before
    finally:
        lock.release()
    assert not (copy / "run" / ".lock").exists()


# --------------------------------------------------------------------- 8. bounded image memory


def test_08_image_above_the_pixel_limit_is_refused(cvqa, world):
    data = sequence_dict()
    data["max_image_pixels"] = 1100  # the 32x32 images have 1024, the big one 40x40 = 1600
    write_sequence(world, data)
    Image.new("RGB", (40, 40), (9, 9, 9)).save(world / "data" / "images" / "big.png")
    test_file = world / "data" / "hues" / "test.json"
    rows = json.loads(test_file.read_text())
    rows[0]["image"] = "big.png"
    test_file.write_text(json.dumps(rows))
    before = tree_digest(world)
    error_line(cvqa("validate", world / "seq.yaml"), "hues/test.json row 0", "40x40 = 1600 pixels",
               "max_image_pixels 1100")
    assert tree_digest(world) == before


def test_08_decoded_image_cache_is_bounded_by_bytes(world):
    from cvqa_bench.data.image_cache import ImageCache

    cache = ImageCache(max_bytes=7000)  # one 32x32 RGB image is 3072 bytes: two fit, three do not
    for name in COLOURS:
        cache.get(str(world / "data" / "images" / f"{name}.png"))
    assert cache.bytes == 2 * 3072 and len(cache._items) == 2
    assert ImageCache(max_bytes=3000).get(str(world / "data" / "images" / "red.png")).size == (32, 32)


# --------------------------------------------------------------------- 9. debris


def test_09_orphan_temporaries_and_trainer_folders_are_removed_on_start(cvqa, copy, finished):
    orphan = copy / "run" / ".manifest.json.k1ll3d.tmp"
    orphan.write_text("{")
    trainer = copy / "run" / "stages" / "1-colors" / "trainer" / "checkpoint-1"
    trainer.mkdir(parents=True)
    (trainer / "optimizer.pt").write_bytes(b"x")
    before = outside(copy)
    result = resume(cvqa)
    assert result.exit_code == 0, result.stderr
    assert not orphan.exists() and not trainer.parent.exists()
    assert not list((copy / "run").rglob("*.tmp"))
    assert (copy / "run/matrix.csv").read_bytes() == (finished / "run/matrix.csv").read_bytes()
    assert outside(copy) == before


# --------------------------------------------------------------------- 10. modes, keys, cells, lines


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_10_files_follow_the_umask(tmp_path, umask, mode):
    from cvqa_bench.io import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == mode


def test_10_duplicate_yaml_key_is_an_error(cvqa, world):
    text = (world / "seq.yaml").read_text()
    (world / "seq.yaml").write_text(text.replace("scorer: exact\n", "scorer: exact\n  scorer: vqa\n", 1))
    before = tree_digest(world)
    line = error_line(cvqa("validate", world / "seq.yaml"), "seq.yaml:", "duplicate key 'scorer'")
    number = int(line.split("seq.yaml:")[1].split(":")[0])
    assert (world / "seq.yaml").read_text().splitlines()[number - 1].strip() == "scorer: vqa"
    assert tree_digest(world) == before


def test_10_report_refuses_matrix_cells_outside_0_100(cvqa, copy):
    matrix = copy / "run" / "matrix.csv"
    lines = matrix.read_text().splitlines()
    cells = lines[2].split(",")
    cells[2] = "150.0"
    lines[2] = ",".join(cells)
    matrix.write_text("\n".join(lines) + "\n")
    before = tree_digest(copy)
    error_line(cvqa("report", "run"), "run/matrix.csv:3", "150", "0-100")
    assert tree_digest(copy) == before


@pytest.mark.parametrize("breakage,fragment", [("not json", "not valid JSONL"), ("no prediction", "'prediction'")])
def test_10_predictions_errors_name_the_right_line(cvqa, copy, breakage, fragment):
    path = copy / "run" / "predictions" / "1-colors" / "hues.jsonl"
    lines = path.read_text().splitlines()
    record = json.loads(lines[2])
    del record["prediction"]
    lines[2] = "{not json" if breakage == "not json" else json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    before = tree_digest(copy)
    error_line(cvqa("score", "run"), f"{Path('run/predictions/1-colors/hues.jsonl')}:3:", fragment)
    assert tree_digest(copy) == before  # nothing rewritten before the failure


def test_10_score_writes_nothing_into_a_half_written_run(cvqa, copy):
    (copy / "run" / "predictions" / "2-hues" / "hues.jsonl").unlink()
    before = tree_digest(copy)
    error_line(cvqa("score", "run"), "run/predictions/2-hues/hues.jsonl", "missing")
    assert tree_digest(copy) == before


def test_sha256_in_done_json_matches_the_files(finished):
    """The seal is plain SHA-256 of each file's bytes (checked here with hashlib, not the module)."""
    done = json.loads((finished / "run/stages/1-colors/DONE.json").read_text())
    for rel, digest in done["files"].items():
        assert hashlib.sha256((finished / "run/stages/1-colors" / rel).read_bytes()).hexdigest() == digest
    stage = finished / "run/stages/1-colors"
    on_disk = {p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file() and p.name != "DONE.json"}
    assert set(done["files"]) == on_disk and "weights.safetensors" in on_disk
