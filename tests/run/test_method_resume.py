"""Each method runs end to end through ``cvqa run`` and, SIGKILLed in the middle of its second stage
(right after an in-stage checkpoint, where its loss term or schedule is active), resumes to the same
matrix and predictions, byte for byte, as an uninterrupted run (CPU, same seed).

Short on purpose: two tasks, 8 steps of batch 4, 4 test rows each.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from kill_resume import cvqa, fingerprint

SEQUENCE = {
    "name": "method-resume",
    "description": "two small synthetic tasks for the per-method kill/resume check",
    "image_folder": "images",
    "generator": {"name": "synthetic", "seed": 0, "n_train": 32, "n_test": 4, "image_size": 32},
    "tasks": [
        {"name": "color", "train": "color/train.json", "test": "color/test.json", "scorer": "vqa", "max_new_tokens": 4},
        {"name": "shape", "train": "shape/train.json", "test": "shape/test.json", "scorer": "contains",
         "max_new_tokens": 4},
    ],
}
SECOND_STAGE = "2-shape"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("method_resume")
    (folder / "seq.yaml").write_text(yaml.safe_dump(SEQUENCE, sort_keys=False))
    return folder


def run_args(workdir: Path, method: str, *extra: str) -> list[str]:
    return ["--sequence", str(workdir / "seq.yaml"), "--method", method, "--seed", "0",
            "--set", "train.max_steps=8", "--set", "train.batch_size=4", "--set", "train.checkpoint_every=2",
            "--set", "eval.batch_size=8", *extra]


def finish(args: list[str], env: dict[str, str]) -> None:
    proc = cvqa(args, env)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]


def kill_in_second_stage(args: list[str], out: Path, env: dict[str, str]) -> None:
    """Start the run and SIGKILL it as soon as the second stage has a complete in-stage checkpoint."""
    proc = cvqa([*args, "--out", str(out)], env)
    deadline = time.monotonic() + 600
    pattern = f"stages/{SECOND_STAGE}/trainer/checkpoint-*/cvqa_complete.json"
    while not list(out.glob(pattern)):
        assert proc.poll() is None, f"ended before stage 2 checkpointed: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (out / "stages" / SECOND_STAGE / "DONE.json").exists(), "killed too late: the stage had finished"


def check_kill_resume(workdir: Path, method: str, *extra: str) -> Path:
    env = {**os.environ, "CVQA_CACHE": str(workdir / "cache")}
    args = run_args(workdir, method, *extra)
    reference = workdir / f"{method}-reference"
    finish([*args, "--out", str(reference)], env)
    killed = workdir / f"{method}-killed"
    kill_in_second_stage(args, killed, env)
    finish([*args, "--out", str(killed), "--resume"], env)
    assert fingerprint(killed) == fingerprint(reference)
    return reference


@pytest.mark.parametrize("method", ["finetune", "ema", "replay"])
def test_baseline_resumes_bit_identically(workdir: Path, method: str) -> None:
    check_kill_resume(workdir, method)


def test_ewc_resumes_bit_identically(workdir: Path) -> None:
    reference = check_kill_resume(workdir, "ewc", "--set", "method.options.fisher_batches=2")
    records = yaml.safe_load((reference / "method_records.json").read_text())
    assert set(records["penalty_at_task_end"]) == {"shape"}  # the penalty acted in the second task only


def test_lwf_resumes_bit_identically(workdir: Path) -> None:
    check_kill_resume(workdir, "lwf")


def test_joint_resumes_bit_identically_and_trains_once(workdir: Path) -> None:
    reference = check_kill_resume(workdir, "joint")
    done = [yaml.safe_load((reference / "stages" / s / "DONE.json").read_text()) for s in ("1-color", SECOND_STAGE)]
    assert [d["steps"] for d in done] == [0, 8] and [d["rows"] for d in done] == [0, 64]  # 32 + 32 rows
    header, zero_shot, stage1, _ = (reference / "matrix.csv").read_text().splitlines()
    assert stage1.split(",")[2:] == zero_shot.split(",")[2:]  # stage 1 is the base model again


def test_cumulative_resumes_bit_identically_and_retrains_on_every_seen_task(workdir: Path) -> None:
    reference = check_kill_resume(workdir, "cumulative")
    done = [yaml.safe_load((reference / "stages" / s / "DONE.json").read_text()) for s in ("1-color", SECOND_STAGE)]
    assert [d["rows"] for d in done] == [32, 64]  # stage 2 retrains on color's 32 rows + shape's 32


def test_llaca_stable_ema_resumes_bit_identically(workdir: Path) -> None:
    check_kill_resume(workdir, "llaca", "--set", "method.options.ema=stable", "--set", "method.options.grouping=false")


def stage_weights(run: Path, stage: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "stages" / stage / "weights.safetensors"))


def same_stage_files(first: Path, second: Path) -> bool:
    files = sorted(p.relative_to(first) for p in first.glob("stages/*/*.safetensors"))
    return bool(files) and all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


def test_olora_resumes_bit_identically_and_freezes_the_first_lora(workdir: Path) -> None:
    reference = check_kill_resume(workdir, "olora")
    assert same_stage_files(reference, workdir / "olora-killed")
    first, second = stage_weights(reference, "1-color"), stage_weights(reference, SECOND_STAGE)
    task0 = [n for n in first if ".lora_A.0" in n or ".lora_B.0" in n]
    task1_b = [n for n in first if ".lora_B.1" in n]
    assert len(task0) == 8 and len(task1_b) == 4  # 4 LoRA layers (q, v in 2 layers)
    assert all(first[n].equal(second[n]) for n in task0)  # frozen in the second task
    assert all(not first[n].any() and second[n].any() for n in task1_b)  # trained in the second task only
    records = yaml.safe_load((reference / "method_records.json").read_text())
    assert set(records["penalties"]) == {"shape"} and records["penalties"]["shape"]["orthogonality"] > 0
    # peft's adapter would lack the per-task LoRAs: no PEFT folder is written (cvqa export refuses the stage)
    assert not (reference / "stages" / SECOND_STAGE / "adapter").exists()


def test_moelora_resumes_bit_identically(workdir: Path) -> None:
    reference = check_kill_resume(workdir, "moelora")
    assert same_stage_files(reference, workdir / "moelora-killed")
    weights = stage_weights(reference, SECOND_STAGE)
    routers = [n for n in weights if n.endswith("lora_router")]
    assert len(routers) == 4 and all(tuple(weights[n].shape) == (8, 64) for n in routers)  # 8 experts, width 64
    stacked = [tuple(t.shape) for n, t in weights.items() if n.endswith(".lora_A")]
    assert stacked == [(16, 64)] * 4  # per layer 8 experts x rank 2, stacked
    assert yaml.safe_load((reference / "method_records.json").read_text())["rank_per_expert"] == 2


def test_eproj_resumes_bit_identically_with_one_projector_per_task(workdir: Path) -> None:
    reference = check_kill_resume(workdir, "eproj")
    assert same_stage_files(reference, workdir / "eproj-killed")
    records = yaml.safe_load((reference / "method_records.json").read_text())
    assert records["projectors"] == ["color", "shape"]
    assert records["routing"] == {"color": "color", "shape": "shape"}  # the two tasks' instructions differ
