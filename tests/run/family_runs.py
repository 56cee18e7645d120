"""Shared by the per-family run tests (``test_families_*.py``): each family's tiny preset, a two-task synthetic
sequence, the command line of a very short run, and a run SIGKILLed right after an in-stage checkpoint.

The killed run is a child forked from a ``forkserver`` that imported cvqa once (``set_forkserver_preload``):
a fresh ``python`` would spend several seconds per family importing torch, transformers and peft. The child
stops for good right after it wrote the second stage's first in-stage checkpoint, so the SIGKILL lands
there every time (mid-stage, the stage unfinished) however few steps the stage has.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import yaml
from conftest import SKILLS

TASKS = ("color", "shape")
SECOND_STAGE = "2-shape"


def tiny_preset(family: str) -> str:
    """The tiny preset of a family in configs/models/ (LLaVA-1.5's is the default tiny.yaml)."""
    return "configs/models/tiny.yaml" if family == "llava" else f"configs/models/tiny-{family}.yaml"


def write_sequence(path: Path, n_train: int, n_test: int) -> Path:
    """A color → shape synthetic sequence YAML at ``path`` (answers of at most 3 new tokens)."""
    path.write_text(yaml.safe_dump({
        "name": f"families-{n_train}-{n_test}", "description": "two tiny synthetic tasks for the per-family runs",
        "image_folder": "images",
        "generator": {"name": "synthetic", "seed": 0, "n_train": n_train, "n_test": n_test, "image_size": 32},
        "tasks": [{"name": t, "train": f"{t}/train.json", "test": f"{t}/test.json", "scorer": SKILLS[t][0],
                   "instruction": SKILLS[t][1], "max_new_tokens": 3} for t in TASKS],
    }, sort_keys=False))
    return path


def run_args(sequence: Path, family: str, method: str, *extra: str) -> list[str]:
    """``cvqa run`` arguments of a very short run of ``method`` on ``family``'s tiny preset with its default
    LoRA targets (configs/default.yaml's regex, the language model's q/v projections on every family)."""
    return ["run", "--sequence", str(sequence), "--method", method, "--seed", "0",
            "--set", f"model.tiny={tiny_preset(family)}", "--set", "train.batch_size=2",
            "--set", "eval.batch_size=4", *extra]


def _killable_run(args: list[str], env: dict[str, str]) -> None:
    """The child: ``cvqa ARGS`` in process, stopped for good after the second stage's first in-stage checkpoint."""
    from conftest import invoke

    from cvqa_bench.run.training import train

    os.environ.update(env)
    real = train.mark_complete

    def mark_then_stop(folder: Path, step: int) -> None:
        real(folder, step)
        if SECOND_STAGE in Path(folder).parts:
            time.sleep(3600)  # the parent SIGKILLs it here

    train.mark_complete = mark_then_stop
    try:
        invoke(*args)
    finally:
        os._exit(0)  # never run the parent's (pytest's) exit handlers


_context: Any = None


def _forkserver() -> Any:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["family_runs", "conftest", "cvqa_bench.cli", "cvqa_bench.run.training.train"])
    return _context


def kill_mid_second_stage(args: list[str], out: Path, timeout: float = 300) -> None:
    """Start ``cvqa ARGS --out OUT`` and SIGKILL it right after the second stage's first in-stage checkpoint."""
    env = {k: v for k, v in os.environ.items() if k in ("CVQA_CACHE", "OMP_NUM_THREADS")}
    child = _forkserver().Process(target=_killable_run, args=([*args, "--out", str(out)], env))
    child.start()
    pattern = f"stages/{SECOND_STAGE}/trainer/checkpoint-*/cvqa_complete.json"
    deadline = time.monotonic() + timeout
    try:
        while not list(out.glob(pattern)):
            assert child.is_alive(), f"the run ended (exit {child.exitcode}) before stage 2 checkpointed"
            assert time.monotonic() < deadline, "stage 2 never checkpointed"
            time.sleep(0.01)
    finally:
        child.kill()  # SIGKILL
        child.join()
    assert not (out / "stages" / SECOND_STAGE / "DONE.json").exists(), "killed too late: the stage had finished"
