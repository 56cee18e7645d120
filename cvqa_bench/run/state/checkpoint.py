"""Saving and restoring what a stage needs beyond the Trainer's own checkpoint: weights and method state.

A Trainer checkpoint folder counts only once ``cvqa_complete.json`` is in it: that marker is written
last (after the method state), so a kill while saving leaves a folder that resume ignores; it seals
the SHA-256 of the folder's files, and a checkpoint whose files changed is passed over.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cvqa_bench.io import atomic_write, atomic_write_json
from cvqa_bench.methods.base import Method, Trainables

COMPLETE_MARKER = "cvqa_complete.json"
METHOD_TENSORS = "method_state.safetensors"
METHOD_EXTRA = "method_state.json"
TRAINABLES = "trainables.safetensors"


@contextlib.contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """A safetensors write the file system refused (a full disk, a read-only folder) raised as the OSError it
    is, naming ``path``: safetensors reports it as ``SafetensorError("... (os error N)")``."""
    try:
        yield
    except SafetensorError as exc:
        found = re.search(r"\(os error (\d+)\)", str(exc))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from exc


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write tensors to a safetensors file atomically (OSError when the file system refuses it)."""
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with disk_errors(path):
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


def save_trainables(folder: Path, trainables: Trainables) -> None:
    """Write every trainable tensor into an in-stage checkpoint folder.

    The Trainer saves a peft model's adapter only; a method's own modules (O-LoRA's per-task LoRAs,
    MoELoRA's experts) and the tensors it froze for this task would be missing on resume.
    """
    save_tensors(folder / TRAINABLES, trainables.snapshot())


def load_trainables(folder: Path, trainables: Trainables, device: torch.device | str = "cpu") -> None:
    """Restore what :func:`save_trainables` wrote (a checkpoint from before it existed has none)."""
    if (folder / TRAINABLES).is_file():
        trainables.load(load_tensors(folder / TRAINABLES, device))


def mark_complete(folder: Path, step: int) -> None:
    """Declare a Trainer checkpoint folder usable for resume (written last), sealing the SHA-256 of its files."""
    from cvqa_bench.run.state.integrity import stage_files

    files = {k: v for k, v in stage_files(folder).items() if k != COMPLETE_MARKER}
    atomic_write_json(folder / COMPLETE_MARKER, {"step": step, "files": files})


def checkpoint_intact(folder: Path) -> bool:
    """Whether every file the completion marker sealed still has its SHA-256 (a marker without seal: trusted)."""
    from cvqa_bench.run.state.integrity import sha256_file

    try:
        files = json.loads((folder / COMPLETE_MARKER).read_text(encoding="utf-8")).get("files", {})
        return all((folder / rel).is_file() and sha256_file(folder / rel) == digest for rel, digest in files.items())
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return False


def latest_checkpoint(trainer_dir: Path, report: Callable[[str], None] | None = None) -> Path | None:
    """The newest complete ``checkpoint-<step>`` folder under ``trainer_dir``, if any; each damaged one passed
    over is named through ``report``."""
    found = []
    for folder in trainer_dir.glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", folder.name)
        if match and (folder / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), folder))
    for _, folder in sorted(found, reverse=True):  # a damaged checkpoint is passed over for an older one
        if checkpoint_intact(folder):
            return folder
        if report is not None:
            report(f"{folder}: damaged (a file differs from its {COMPLETE_MARKER}); passed over, training resumes "
                   "from an older checkpoint or the start of the stage")
    return None


def all_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first tensor holding NaN/inf, or None when all are finite."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def read_stage(stage_dir: Path, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """A saved stage's weights, method tensors and method JSON state, checked before anything is applied.

    Raises:
        StageDamaged: a file does not parse, or a tensor holds NaN/inf.
    """
    from cvqa_bench.run.state.integrity import StageDamaged

    try:
        weights = load_tensors(stage_dir / "weights.safetensors", device)
        tensors = load_tensors(stage_dir / METHOD_TENSORS, device)
        extra = json.loads((stage_dir / METHOD_EXTRA).read_text(encoding="utf-8"))
    except Exception as exc:  # safetensors raises its own error types on a damaged header
        raise StageDamaged(f"{stage_dir}: cannot be read ({type(exc).__name__}: {str(exc)[:120]})") from exc
    bad = all_finite(weights) or all_finite(tensors)
    if bad is not None:
        raise StageDamaged(f"{stage_dir}: tensor {bad!r} is not finite")
    return weights, tensors, extra
