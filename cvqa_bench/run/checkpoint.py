"""Saving and restoring what a stage needs beyond the Trainer's own checkpoint: weights and method state.

A Trainer checkpoint folder counts only once ``cvqa_complete.json`` is in it: that marker is written
last (after the method state), so a kill while saving leaves a folder that resume ignores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cvqa_bench.io import atomic_write, atomic_write_json
from cvqa_bench.methods.base import Method

COMPLETE_MARKER = "cvqa_complete.json"
METHOD_TENSORS = "method_state.safetensors"
METHOD_EXTRA = "method_state.json"


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write tensors to a safetensors file atomically."""
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(clean, str(tmp)))


def load_tensors(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file (safe loading: no pickle)."""
    return load_file(str(path), device=str(device))


def save_method_state(folder: Path, method: Method) -> None:
    """Write the method's tensors and JSON state into ``folder``."""
    save_tensors(folder / METHOD_TENSORS, method.state_dict())
    atomic_write_json(folder / METHOD_EXTRA, method.extra_state())


def load_method_state(folder: Path, method: Method, device: torch.device | str = "cpu") -> None:
    """Restore what :func:`save_method_state` wrote."""
    extra = json.loads((folder / METHOD_EXTRA).read_text())
    method.load_state(load_tensors(folder / METHOD_TENSORS, device), extra)


def mark_complete(folder: Path, step: int) -> None:
    """Declare a Trainer checkpoint folder usable for resume (written last)."""
    atomic_write_json(folder / COMPLETE_MARKER, {"step": step})


def latest_checkpoint(trainer_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-<step>`` folder under ``trainer_dir``, if any."""
    found = []
    for folder in trainer_dir.glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", folder.name)
        if match and (folder / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), folder))
    return max(found)[1] if found else None


def all_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first tensor holding NaN/inf, or None when all are finite."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None
