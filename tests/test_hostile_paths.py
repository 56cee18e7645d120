"""Hostile input that used to end in a traceback (issue 31, items 5, 14, 15, 16, 18, 19): each is now one
``error:`` line naming the file, exit code 2, and nothing outside the run folder changes.

The world is ``test_hardening``'s two-task CoIN data root (``colors`` then ``hues``), broken in one place.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_hardening import RUN_ARGS, error_line, outside, sequence_dict, write_sequence, write_world

from conftest import tree_digest

COMMANDS = {"validate": ("validate", "seq.yaml"), "plan": ("plan", "seq.yaml", "--config", "run.yaml"),
            "run": RUN_ARGS}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh world, also the working directory."""
    root = write_world(tmp_path / "w")
    monkeypatch.chdir(root)
    return root


def refused_everywhere(cvqa, root: Path, *fragments: str) -> None:
    """validate, plan and run each stop with one line holding ``fragments``; nothing is written."""
    before = tree_digest(root)
    for command in COMMANDS.values():
        error_line(cvqa(*command), *fragments)
        assert tree_digest(root) == before, command


def test_14_nul_in_a_task_path(cvqa, world):
    data = sequence_dict()
    data["tasks"][0]["train"] = "colors/tr\0ain.json"
    write_sequence(world, data)
    refused_everywhere(cvqa, world, "tr\\x00ain.json", "NUL character")


def test_14_nul_in_an_image_path(cvqa, world):
    test = world / "data" / "hues" / "test.json"
    rows = json.loads(test.read_text())
    rows[1]["image"] = "gr\0een.png"
    test.write_text(json.dumps(rows))
    refused_everywhere(cvqa, world, f"{test} row 1: image", "NUL character")


def test_15_lone_surrogate_in_a_test_question(cvqa, world):
    test = world / "data" / "hues" / "test.json"
    test.write_text(test.read_text().replace("What color", "What \\ud800 color", 1))  # a JSON escape, as found
    refused_everywhere(cvqa, world, f"{test} row 0: text", "lone surrogate")


def test_16_data_file_that_is_a_symlink_loop(cvqa, world):
    train = world / "data" / "colors" / "train.json"
    train.unlink()
    train.symlink_to("train.json")
    error_line(cvqa(*COMMANDS["validate"]), f"{train}: a symlink loop")


def test_16_image_that_is_a_symlink_loop(cvqa, world):
    image = world / "data" / "images" / "red.png"
    image.unlink()
    image.symlink_to("red.png")
    result = cvqa(*COMMANDS["validate"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 4  # row 0 of each of the four files uses red.png: one line each
    assert all(f"row 0: image: {image}: a symlink loop" in line for line in lines)


def test_18_throughput_file_holding_a_json_list(cvqa, world):
    (world / "rates.json").write_text("[1, 2]")
    error_line(cvqa(*COMMANDS["plan"], "--throughput", "rates.json"), "rates.json", "JSON object", "got a JSON list")


def test_05_checkpoint_folder_without_a_chat_template(cvqa, world, tmp_path):
    from cvqa_bench.models.tiny import tiny_model_dir

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir(Path(__file__).parents[1] / "configs" / "models" / "tiny.yaml"), model)
    (model / "chat_template.jinja").unlink()
    before = outside(world)
    error_line(cvqa(*RUN_ARGS, "--model", model), str(model), "no chat template")
    assert outside(world) == before and not (world / "run").exists()


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 3 MB tmpfs (skipped where this process may not mount one)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root and CAP_SYS_ADMIN")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_19_full_disk_while_stage_tensors_are_written(cvqa, world, small_tmpfs):
    """A nearly full file system fails the safetensors write of stage 2 (as safetensors reports it,
    ``SafetensorError``); once space is freed, --resume ends byte-identical to an uninterrupted run."""
    assert cvqa(*RUN_ARGS).exit_code == 0  # the uninterrupted run, on the ordinary disk
    run = small_tmpfs / "run"
    filler = small_tmpfs / "filler"
    filler.write_bytes(bytes(os.statvfs(small_tmpfs).f_bavail * os.statvfs(small_tmpfs).f_frsize - 450 * 1024))
    args = [*RUN_ARGS[:-1], run]
    error_line(cvqa(*args), f"{run}/stages/2-hues/", "No space left on device")
    assert (run / "stages" / "1-colors" / "DONE.json").is_file()  # what was written is kept
    filler.unlink()
    result = cvqa(*args, "--resume")
    assert result.exit_code == 0, result.stderr
    for name in ["matrix.csv", *(f"predictions/2-hues/{t}.jsonl" for t in ("colors", "hues")),
                 "stages/2-hues/weights.safetensors", "stages/2-hues/adapter/adapter_model.safetensors"]:
        assert (run / name).read_bytes() == (world / "run" / name).read_bytes(), name
