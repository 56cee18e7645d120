"""What the benchmarks share: the model options, the rows they run on and the device they report."""

from __future__ import annotations

import argparse
import itertools
from typing import Any

import torch

from cvqa_bench.config import load_sequence


def load_task_rows(sequence: str, task: str, split: str) -> list[dict[str, Any]]:
    """The ``train`` or ``test`` rows of one task of a sequence (generated sequences are materialised)."""
    from cvqa_bench.data.coin import load_task
    from cvqa_bench.data.sources import image_root, resolve_data_root

    seq, path = load_sequence(sequence)
    specs = {t.name: t for t in seq.tasks}
    if task not in specs:
        raise ValueError(f"sequence {seq.name!r} has no task {task!r}; its tasks are {list(specs)}")
    root = resolve_data_root(seq, path)
    data = load_task(specs[task], root, image_root(seq, root, specs[task]), check_images=False)
    return data.train if split == "train" else data.test


def question_pool(sequence: str, n_questions: int) -> list[dict[str, Any]]:
    """The first ``n_questions`` test rows of the sequence, taken from its tasks in turn."""
    seq, _ = load_sequence(sequence)
    per_task = [load_task_rows(sequence, t.name, "test") for t in seq.tasks]
    interleaved = [row for group in itertools.zip_longest(*per_task) for row in group if row is not None]
    if n_questions < 1 or n_questions > len(interleaved):
        raise ValueError(f"n_questions must be in 1..{len(interleaved)} (the test rows of {sequence!r}), "
                         f"got {n_questions}")
    return interleaved[:n_questions]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that a timer reads the real time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_fields(device: torch.device) -> dict[str, Any]:
    """The device, its name and the torch thread count, as reported with every benchmark."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": str(device), "device_name": name, "torch_threads": torch.get_num_threads()}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tiny`` or ``--path`` (the model to benchmark; neither: the tiny default) and ``--dtype``."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--tiny", default=None, help="tiny/mid model YAML (default configs/models/tiny.yaml)")
    source.add_argument("--path", default=None, help="local llava-hf checkpoint directory")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
